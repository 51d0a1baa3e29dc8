package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestEncodeMatchesWALGBytes(t *testing.T) {
	push, err := EncodeMessage(TypeWalPush, "000000010000000000000003")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(push[:3]); got != "46001b" || string(push[3:]) != "000000010000000000000003" {
		t.Fatalf("push frame %x", push)
	}
	fetch, err := EncodeMessage(TypeWalFetch, "000000010000000000000003", "pg_wal/RECOVERYXLOG")
	if err != nil {
		t.Fatal(err)
	}
	want := "660033" + "02" + "0018" + hex.EncodeToString([]byte("000000010000000000000003")) + "0013" + hex.EncodeToString([]byte("pg_wal/RECOVERYXLOG"))
	if hex.EncodeToString(fetch) != want {
		t.Fatalf("fetch frame\n got %x\nwant %s", fetch, want)
	}
	// walg_archive's check: 'C', length 8, body CHECK.
	check, _ := EncodeMessage(TypeCheck, "CHECK")
	if hex.EncodeToString(check) != "430008"+hex.EncodeToString([]byte("CHECK")) {
		t.Fatalf("check frame %x", check)
	}
}

func TestReadMessageRoundTrip(t *testing.T) {
	buf := make([]byte, MaxMessage)
	var stream bytes.Buffer
	for _, args := range [][]string{{}, {"000000010000000000000003"}, {"a", "b/c"}} {
		m, err := EncodeMessage(TypeWalFetch, args...)
		if err != nil {
			t.Fatal(err)
		}
		stream.Write(m)
	}
	for i := 0; i < 3; i++ {
		msg, err := ReadMessage(&stream, buf)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type != TypeWalFetch {
			t.Fatalf("type %c", msg.Type)
		}
		if i == 2 {
			args, err := DecodeArgs(msg.Body)
			if err != nil || strings.Join(args, ",") != "a,b/c" {
				t.Fatalf("args %q %v", args, err)
			}
		}
	}
	if _, err := ReadMessage(&stream, buf); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}

func TestMalformedFrames(t *testing.T) {
	buf := make([]byte, MaxMessage)
	for name, frame := range map[string][]byte{
		"short length":   {'F', 0, 2},
		"truncated body": {'F', 0, 10, 'a'},
		"truncated head": {'F', 0},
		"length zero":    {'C', 0, 0},
	} {
		_, err := ReadMessage(bytes.NewReader(frame), buf)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
	for name, body := range map[string][]byte{
		"empty":    {},
		"trailing": {1, 0, 1, 'a', 'x'},
		"short":    {2, 0, 1, 'a', 0},
		"len past": {1, 0, 9, 'a'},
	} {
		if _, err := DecodeArgs(body); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzReadMessage(f *testing.F) {
	m, _ := EncodeMessage(TypeWalFetch, "000000010000000000000003", "pg_wal/RECOVERYXLOG")
	f.Add(m)
	f.Add([]byte{'F', 0, 3})
	f.Add([]byte{'C', 0, 8, 'C', 'H', 'E', 'C', 'K'})
	buf := make([]byte, MaxMessage)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := ReadMessage(bytes.NewReader(data), buf)
		if err != nil {
			return
		}
		if len(msg.Body)+HeaderSize > len(data) {
			t.Fatalf("body longer than input")
		}
		args, err := DecodeArgs(msg.Body)
		if err != nil {
			return
		}
		again, err := EncodeArgs(args)
		if err != nil || !bytes.Equal(again, msg.Body) {
			t.Fatalf("args do not round-trip: %q", args)
		}
	})
}

package catchup

import (
	"bytes"
	"encoding/gob"
	"io"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"
)

// FuzzReceive feeds untrusted bytes to both readers of the protocol: the
// sender's ReadHello and the receiver's command loop with its content
// reads. Neither may panic, loop without input or accept a name CheckName
// refuses.
func FuzzReceive(f *testing.F) {
	var hello bytes.Buffer
	enc := gob.NewEncoder(&hello)
	_ = enc.Encode(Control{SystemIdentifier: 1, CurrentTimeline: 1, Checkpoint: 99})
	_ = enc.Encode(FileList{"base/1/1259": {MTime: time.Unix(1, 2)}, "global": {}})
	f.Add(hello.Bytes())

	var cmds bytes.Buffer
	enc = gob.NewEncoder(&cmds)
	_ = enc.Encode(Command{IsFull: true, FileName: "base/1/1259", FileSize: 9000})
	_ = enc.Encode(make([]byte, ChunkSize))
	_ = enc.Encode(make([]byte, 9000-ChunkSize))
	_ = enc.Encode(Command{IsIncremental: true, FileName: "base/1/2", FileSize: 3})
	_ = enc.Encode([]byte("wi1"))
	_ = enc.Encode(Command{IsDelete: true, FilesToDelete: []string{"base/7"}})
	_ = enc.Encode(Command{IsBinContents: true, FileName: "backup_label", BinaryContents: []byte("x")})
	_ = enc.Encode(Command{IsDone: true})
	f.Add(cmds.Bytes())
	f.Add([]byte{0xf8, 1, 2, 3, 4, 5, 6, 7, 8})

	f.Fuzz(func(t *testing.T, data []byte) {
		if ctl, list, err := decoderConn(bytes.NewReader(data)).ReadHello(); err == nil {
			_ = ctl
			for name := range list {
				if name != "" && CheckName(name) != nil {
					t.Fatalf("file list name %q accepted", name)
				}
			}
		}
		c := decoderConn(bytes.NewReader(data))
		var cmd Command
		for range 1000 {
			if err := c.ReadCommand(&cmd); err != nil || cmd.IsDone {
				return
			}
			if (cmd.IsFull || cmd.IsIncremental || cmd.IsBinContents) && CheckName(cmd.FileName) != nil {
				t.Fatalf("name %q accepted", cmd.FileName)
			}
			if cmd.IsFull || cmd.IsIncremental {
				r := c.Content(cmd.FileSize)
				var b [100]byte
				if _, err := r.Read(b[:]); err != nil {
					return
				}
				if err := r.Drain(); err != nil {
					return
				}
			}
		}
	})
}

// FuzzFrameReader feeds untrusted bytes to the LZ4 frame reader: it may
// fail but not panic, and returns no more than a block's worth per Read.
func FuzzFrameReader(f *testing.F) {
	for _, body := range [][]byte{[]byte("hello hello hello hello"), bytes.Repeat([]byte{7}, 70000), nil} {
		var b bytes.Buffer
		zw := lz4.NewWriter(&b)
		_ = zw.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.BlockChecksumOption(true))
		zw.Write(body)
		zw.Flush()
		f.Add(b.Bytes()) // unterminated, as the peers leave their frames
		zw.Close()
		f.Add(b.Bytes())
	}
	f.Add([]byte{0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &frameReader{src: bytes.NewReader(data)}
		p := make([]byte, 5<<20)
		for range 100 {
			n, err := r.Read(p)
			if n > 4<<20 {
				t.Fatalf("%d bytes in one read", n)
			}
			if err != nil {
				return
			}
		}
	})
}

// TestFrameReaderStopsAtBlock: a read returns what one block holds and
// does not wait for the next, and concatenated and skippable frames are
// read through.
func TestFrameReaderStopsAtBlock(t *testing.T) {
	pr, pw := io.Pipe()
	zw := lz4.NewWriter(pw)
	flushed := make(chan struct{})
	go func() {
		zw.Write([]byte("first message"))
		zw.Flush() // then nothing more until the test has read it
		close(flushed)
	}()
	r := &frameReader{src: pr}
	p := make([]byte, 4096)
	n, err := r.Read(p)
	if err != nil || string(p[:n]) != "first message" {
		t.Fatalf("%q %v", p[:n], err)
	}
	<-flushed
	go func() {
		zw.Write([]byte("second"))
		zw.Close()
		pw.Write([]byte{0x5f, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'x', 'y', 'z'})
		zw2 := lz4.NewWriter(pw)
		zw2.Write([]byte(" and third"))
		zw2.Close()
		pw.Close()
	}()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "second and third" {
		t.Fatalf("%q %v", rest, err)
	}
}

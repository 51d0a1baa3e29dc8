package backup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// handIncrement builds a wi1 payload byte by byte from the spec, without
// WriteIncrementHeader.
func handIncrement(fileSize uint64, blocks []uint32, fill func(b uint32) byte) []byte {
	var buf bytes.Buffer
	buf.WriteString("wi1\x55")
	binary.Write(&buf, binary.LittleEndian, fileSize)
	binary.Write(&buf, binary.LittleEndian, uint32(len(blocks)))
	for _, b := range blocks {
		binary.Write(&buf, binary.LittleEndian, b)
	}
	for _, b := range blocks {
		buf.Write(bytes.Repeat([]byte{fill(b)}, IncrementBlockSize))
	}
	return buf.Bytes()
}

func TestIncrementHeaderRoundTrip(t *testing.T) {
	blocks := []uint32{0, 3, 7, 300}
	want := handIncrement(301*IncrementBlockSize, blocks, func(uint32) byte { return 0 })
	var got bytes.Buffer
	if err := WriteIncrementHeader(&got, 301*IncrementBlockSize, blocks); err != nil {
		t.Fatal(err)
	}
	hdrLen := IncrementHeaderSize + 4*len(blocks)
	if !bytes.Equal(got.Bytes(), want[:hdrLen]) {
		t.Fatalf("header\n got % x\nwant % x", got.Bytes(), want[:hdrLen])
	}
	if int64(len(want)) != IncrementSize(len(blocks)) {
		t.Fatalf("IncrementSize(%d) = %d, payload is %d", len(blocks), IncrementSize(len(blocks)), len(want))
	}
	h, err := ReadIncrementHeader(bytes.NewReader(want), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.FileSize != 301*IncrementBlockSize || len(h.Blocks) != 4 || h.Blocks[3] != 300 {
		t.Fatalf("decoded %+v", h)
	}
	// More than one 1 KiB chunk of block numbers.
	many := make([]uint32, 1000)
	for i := range many {
		many[i] = uint32(i * 2)
	}
	got.Reset()
	if err := WriteIncrementHeader(&got, 2000*IncrementBlockSize, many); err != nil {
		t.Fatal(err)
	}
	h, err = ReadIncrementHeader(&got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Blocks) != 1000 || h.Blocks[999] != 1998 {
		t.Fatalf("decoded %d blocks, last %d", len(h.Blocks), h.Blocks[len(h.Blocks)-1])
	}
}

func TestApplyIncrement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "16384")
	// The base: 4 pages of 'a'.
	if err := os.WriteFile(path, bytes.Repeat([]byte{'a'}, 4*IncrementBlockSize), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The file grew to 6 pages; pages 1 and 5 changed.
	inc := handIncrement(6*IncrementBlockSize, []uint32{1, 5}, func(b uint32) byte { return byte('0' + b) })
	page := make([]byte, 64<<10)
	if _, err := ApplyIncrement(f, bytes.NewReader(inc), page, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := bytes.Join([][]byte{
		bytes.Repeat([]byte{'a'}, IncrementBlockSize),
		bytes.Repeat([]byte{'1'}, IncrementBlockSize),
		bytes.Repeat([]byte{'a'}, 2*IncrementBlockSize),
		make([]byte, IncrementBlockSize), // extended: zeros
		bytes.Repeat([]byte{'5'}, IncrementBlockSize),
	}, nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("file after increment differs (len %d, want %d)", len(got), len(want))
	}
	// Shrinking: the file is cut to the recorded size.
	if _, err := ApplyIncrement(f, bytes.NewReader(handIncrement(2*IncrementBlockSize, nil, nil)), page, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 2*IncrementBlockSize {
		t.Fatalf("size %d after shrinking increment", fi.Size())
	}
}

func TestIncrementErrors(t *testing.T) {
	good := handIncrement(4*IncrementBlockSize, []uint32{1, 2}, func(uint32) byte { return 7 })
	set := func(off int, v []byte) []byte {
		b := bytes.Clone(good)
		copy(b[off:], v)
		return b
	}
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"bad magic", "invalid increment file header", set(0, []byte("xi1"))},
		{"bad last magic byte", "invalid increment file header", set(3, []byte{0x56})},
		{"unknown version", "unknown increment file header", set(2, []byte("2"))},
		{"short header", "header", good[:10]},
		{"truncated block map", "block list", good[:IncrementHeaderSize+5]},
		{"block beyond file size", "beyond the file size", set(IncrementHeaderSize+4, le32(4))},
		{"not ascending", "not ascending", set(IncrementHeaderSize, le32(2))},
		{"huge count", "more than", set(12, le32(0xffffffff))},
		{"count beyond file size", "blocks in a file", set(12, le32(5))},
		{"truncated page", "page 2 of 2", good[:len(good)-1]},
		{"trailing data", "after the last page", append(bytes.Clone(good), 0)},
	}
	page := make([]byte, IncrementBlockSize)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = ApplyIncrement(f, bytes.NewReader(c.data), page, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if !errors.Is(err, ErrInvalidIncrement) {
				t.Fatalf("error %v does not wrap ErrInvalidIncrement", err)
			}
		})
	}
}

// memTarget is an in-memory IncrementTarget that refuses sizes beyond a
// limit, so fuzzing cannot fill memory through Truncate.
type memTarget struct{ size int64 }

func (m *memTarget) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > m.size {
		return 0, errors.New("write beyond the size")
	}
	return len(p), nil
}

func (m *memTarget) Truncate(size int64) error { m.size = size; return nil }

func FuzzIncrement(f *testing.F) {
	f.Add(handIncrement(4*IncrementBlockSize, []uint32{1, 2}, func(uint32) byte { return 1 }))
	f.Add(handIncrement(0, nil, nil))
	f.Add([]byte("wi1\x55\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Add([]byte("wi1\x55\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"))
	page := make([]byte, IncrementBlockSize)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &memTarget{}
		blocks, err := ApplyIncrement(m, bytes.NewReader(data), page, nil)
		if len(blocks) > len(data)/4 {
			t.Fatalf("%d blocks decoded from %d bytes", len(blocks), len(data))
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidIncrement) {
				t.Fatalf("error %v does not wrap ErrInvalidIncrement", err)
			}
			return
		}
		if int64(len(data)) != IncrementSize(len(blocks)) {
			t.Fatalf("accepted %d bytes holding %d blocks", len(data), len(blocks))
		}
		for _, b := range blocks {
			if int64(b+1)*IncrementBlockSize > m.size {
				t.Fatalf("block %d beyond size %d", b, m.size)
			}
		}
	})
}

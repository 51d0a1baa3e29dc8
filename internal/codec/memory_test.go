package codec

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/adler32"
	"io"
	"math"
	"runtime"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// allocated returns the bytes allocated while f runs, after two GCs empty
// the sync.Pools the libraries keep block buffers in.
func allocated(f func()) int64 {
	runtime.GC()
	runtime.GC()
	return allocatedNoGC(f)
}

// allocatedNoGC is allocated without emptying the pools first.
func allocatedNoGC(f func()) int64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return int64(b.TotalAlloc - a.TotalAlloc)
}

// memInput is 16 MiB, a WAL segment: a random quarter and a WAL-like rest.
func memInput() []byte {
	return append(randomBytes(4<<20, 21), walLike(12<<20)...)
}

// lzopBlock is one block of a hand-built lzop file: raw holds the
// decompressed bytes, comp the LZO1X encoding or nil to store raw.
type lzopBlock struct{ raw, comp []byte }

// lzopBuild writes an lzop file (Adler-32 of decompressed and compressed
// data) around the given blocks.
func lzopBuild(blocks []lzopBlock) []byte {
	var b bytes.Buffer
	b.Write(lzopMagic[:])
	hdr := []byte{0x10, 0x40, 0x20, 0xa0, 0x09, 0x40, 1, 5}
	hdr = binary.BigEndian.AppendUint32(hdr, 0x0300000f) // unix, adler32 d+c, stdin, stdout
	hdr = binary.BigEndian.AppendUint32(hdr, 0)          // mode
	hdr = binary.BigEndian.AppendUint32(hdr, 0)          // mtime low
	hdr = binary.BigEndian.AppendUint32(hdr, 0)          // mtime high
	hdr = append(hdr, 0)                                 // name length
	b.Write(hdr)
	b.Write(binary.BigEndian.AppendUint32(nil, adler32.Checksum(hdr)))
	for _, blk := range blocks {
		data := blk.comp
		if data == nil {
			data = blk.raw
		}
		h := binary.BigEndian.AppendUint32(nil, uint32(len(blk.raw)))
		h = binary.BigEndian.AppendUint32(h, uint32(len(data)))
		h = binary.BigEndian.AppendUint32(h, adler32.Checksum(blk.raw))
		if blk.comp != nil {
			h = binary.BigEndian.AppendUint32(h, adler32.Checksum(data))
		}
		b.Write(h)
		b.Write(data)
	}
	b.Write([]byte{0, 0, 0, 0})
	return b.Bytes()
}

// lzo1xLiteralsAndRun encodes, in LZO1X, a literal run of lit (at least 19
// bytes) followed by a run of run (at least 34) copies of its last byte:
// a block whose compressed size is close to its decompressed size, built
// from the long-length forms of both instructions.
func lzo1xLiteralsAndRun(lit []byte, run int) (comp, raw []byte) {
	long := func(out []byte, rem int) []byte {
		for ; rem > 255; rem -= 255 {
			out = append(out, 0)
		}
		return append(out, byte(rem))
	}
	comp = long([]byte{0x00}, len(lit)-18) // literal run: 18 + extension
	comp = append(comp, lit...)
	comp = long(append(comp, 0x20), run-33) // match within 16 KiB: 33 + extension
	comp = append(comp, 0x00, 0x00)         // distance 1, no trailing literals
	comp = append(comp, 0x11, 0x00, 0x00)   // end marker
	raw = append(bytes.Clone(lit), bytes.Repeat(lit[len(lit)-1:], run)...)
	return comp, raw
}

// lzopWorst builds an lzop file of full-size compressed blocks, so the
// reader needs both of its buffers at the largest accepted size. It
// returns the file and its decompressed length.
func lzopWorst(data []byte) ([]byte, int) {
	var blocks []lzopBlock
	const run = 4096
	total := 0
	for len(data) > 0 {
		n := min(lzoMaxBlock-run, len(data))
		comp, raw := lzo1xLiteralsAndRun(data[:max(n, 19)], run)
		blocks = append(blocks, lzopBlock{raw: raw, comp: comp})
		total += len(raw)
		data = data[n:]
	}
	return lzopBuild(blocks), total
}

// worstStream returns a stream that makes m's reader allocate the most it
// ever does (the largest block or window the reader accepts), and the
// length it decodes to.
func worstStream(t *testing.T, m Method, data []byte) ([]byte, int) {
	t.Helper()
	var b bytes.Buffer
	switch m.Name() {
	case LZ4:
		w := lz4.NewWriter(&b)
		if err := w.Apply(lz4.BlockSizeOption(lz4.Block4Mb)); err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case Zstd:
		w, _ := zstd.NewWriter(&b, zstd.WithWindowSize(zstdMaxWindow), zstd.WithEncoderConcurrency(1))
		w.Write(data)
		w.Close()
	case Brotli:
		w := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 1, LGWin: brotliMaxLGWin})
		w.Write(data)
		w.Close()
	case Gzip:
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	case LZO:
		return lzopWorst(data)
	default:
		// lzma: tusk's header declares 8 MiB, the largest accepted.
		return compress(t, m, data), len(data)
	}
	return b.Bytes(), len(data)
}

func TestMemoryEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 16 MiB streams")
	}
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	data := memInput()
	methods := writableMethods(t)
	for _, l := range []ZstdLevel{ZstdFastest, ZstdBetter, ZstdBest} {
		methods = append(methods, NewZstd(l))
	}
	for _, ext := range []string{"gz", "lzo"} {
		m, _ := ByExt(ext)
		methods = append(methods, m)
	}
	buf := make([]byte, 32<<10)
	for _, m := range methods {
		name := m.Name()
		if z, ok := m.(zstdMethod); ok {
			name += "/" + z.level.String()
		}
		estW, estR := MemoryEstimate(m)
		in := data
		if m.Name() == LZMA {
			in = data[4<<20 : 8<<20] // skip random data: slow, and allocation is per dictionary
		}
		if _, err := m.NewWriter(io.Discard); err == nil {
			var w io.WriteCloser
			got := allocated(func() {
				w, _ = m.NewWriter(io.Discard)
				for off := 0; off < len(in); off += len(buf) {
					w.Write(in[off:min(off+len(buf), len(in))])
				}
				w.Close()
			})
			// No GC forced in between: lz4 gets its block buffers back
			// from the library's pool, as a busy worker does. A GC the
			// runtime starts on its own may empty that pool once, so the
			// least of three streams is what counts.
			again := int64(math.MaxInt64)
			for range 3 {
				again = min(again, allocatedNoGC(func() {
					w.(Resetter).Reset(io.Discard)
					for off := 0; off < len(in); off += len(buf) {
						w.Write(in[off:min(off+len(buf), len(in))])
					}
					w.Close()
				}))
			}
			t.Logf("%-14s writer %6.2f MiB (estimate %6.2f), after Reset %6.2f MiB", name, mib(got), mib(estW), mib(again))
			if got > estW {
				t.Errorf("%s: writer allocated %d bytes, estimate %d", name, got, estW)
			}
			if got < estW/2 && estW > 64<<10 {
				t.Errorf("%s: writer allocated %d bytes, estimate %d is too loose", name, got, estW)
			}
			if m.Name() != LZMA && again > 256<<10 {
				t.Errorf("%s: writer allocated %d bytes for a second stream after Reset", name, again)
			}
		}
		if z, ok := m.(zstdMethod); ok && z.level != ZstdDefault {
			continue // the reader does not depend on the level
		}
		stream, want := worstStream(t, m, in)
		got := allocated(func() {
			r, err := m.NewReader(bytes.NewReader(stream))
			if err != nil {
				t.Fatal(err)
			}
			var n int
			for {
				k, err := r.Read(buf)
				n += k
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			r.Close()
			if n != want {
				t.Fatalf("%s: read %d bytes, want %d", name, n, want)
			}
		})
		t.Logf("%-14s reader %6.2f MiB (estimate %6.2f) for a %d-byte stream", name, mib(got), mib(estR), len(stream))
		if got > estR {
			t.Errorf("%s: reader allocated %d bytes, estimate %d", name, got, estR)
		}
		if got < estR/2 && estR > 64<<10 {
			t.Errorf("%s: reader allocated %d bytes, estimate %d is too loose", name, got, estR)
		}
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

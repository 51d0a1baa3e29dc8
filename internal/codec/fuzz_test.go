package codec

import (
	"bytes"
	"encoding/hex"
	"io"
	"runtime/metrics"
	"testing"
)

// fuzzLimit bounds how much output a fuzz input may produce; decoders
// stream, so more output would only cost time.
const fuzzLimit = 8 << 20

// fuzzDecode feeds data to m's reader and checks that it does not panic
// and allocates no more than MemoryEstimate allows, whatever sizes a
// hostile header declares. The allocation counter is process-wide and the
// fuzzing engine allocates too, so a run over the limit is repeated: only
// a decoder that exceeds it every time fails.
func fuzzDecode(t *testing.T, m Method, data []byte) {
	_, limit := MemoryEstimate(m)
	// Slack for the copy buffer.
	limit += 1 << 20
	var got int64
	for range 3 {
		if got = decodeOnce(t, m, data); got <= limit {
			return
		}
	}
	t.Fatalf("%s reader allocated %d bytes for a %d-byte input, limit %d", m.Name(), got, len(data), limit)
}

func decodeOnce(t *testing.T, m Method, data []byte) int64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()

	r, err := m.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r, fuzzLimit))
	r.Close()

	metrics.Read(sample)
	return int64(sample[0].Value.Uint64() - before)
}

func seedValid(f *testing.F, m Method) {
	f.Add(compress(f, m, nil))
	f.Add(compress(f, m, []byte("a")))
	f.Add(compress(f, m, walLike(5000)))
	f.Add(compress(f, m, randomBytes(3000, 9)))
}

func FuzzLZ4Reader(f *testing.F) {
	m, _ := ByName(LZ4)
	seedValid(f, m)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, m, data) })
}

func FuzzZstdReader(f *testing.F) {
	m, _ := ByName(Zstd)
	seedValid(f, m)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, m, data) })
}

func FuzzLZMAReader(f *testing.F) {
	m, _ := ByName(LZMA)
	seedValid(f, m)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, m, data) })
}

func FuzzBrotliReader(f *testing.F) {
	m, _ := ByName(Brotli)
	seedValid(f, m)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, m, data) })
}

func FuzzGzipReader(f *testing.F) {
	m, _ := ByExt("gz")
	// gzip -c of "hello hello hello\n".
	seed, _ := hex.DecodeString("1f8b0800000000000003cb48cdc9c957c840905c003b7c8adf12000000")
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, m, data) })
}

func FuzzLZOReader(f *testing.F) {
	m, _ := ByExt("lzo")
	seed, _ := hex.DecodeString(lzopSample)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, m, data) })
}

// FuzzLZO1X exercises the block decompressor alone, for every output size
// up to a small limit, so malformed instruction streams get past the
// container's checksums.
func FuzzLZO1X(f *testing.F) {
	seed, _ := hex.DecodeString(lzopSample)
	// The sample's single block: 0x36 bytes out, compressed data after the
	// block header and its checksum.
	f.Add(seed[0x32:len(seed)-4], uint16(0x36))
	f.Add([]byte{0x11, 0, 0}, uint16(0))
	f.Fuzz(func(t *testing.T, src []byte, n uint16) {
		dst := make([]byte, int(n))
		_ = lzo1xDecompress(src, dst)
	})
}

package crypt

import (
	"bytes"
	"io"
	"runtime/metrics"
	"testing"
)

// fuzzDecrypt decrypts data to the end, closes the reader, and checks that
// the reader allocated no more than limit bytes. The allocation counter is
// process-wide and the fuzzing engine allocates too, so a run over the
// limit is repeated: only a decoder that exceeds it every time fails.
func fuzzDecrypt(t *testing.T, c Crypter, data []byte, limit int64) {
	var got int64
	for range 3 {
		if got = decryptOnce(t, c, data); got <= limit {
			return
		}
	}
	t.Fatalf("%s reader allocated %d bytes for a %d-byte input, limit %d", c.Name(), got, len(data), limit)
}

func decryptOnce(t *testing.T, c Crypter, data []byte) int64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()

	r, err := c.Decrypt(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	cerr := r.Close()
	if err == nil && cerr != nil {
		t.Fatalf("Read reached EOF but Close failed: %v", cerr)
	}
	if n > int64(len(data)) {
		t.Fatalf("%d plaintext bytes from %d input bytes", n, len(data))
	}

	metrics.Read(sample)
	return int64(sample[0].Value.Uint64() - before)
}

func FuzzLibsodiumReader(f *testing.F) {
	c, _ := NewLibsodium(testKey())
	for _, n := range []int{0, 1, 100, 8192, 8193} {
		f.Add(seal(f, c, randomBytes(n, uint64(n)), 1000))
	}
	var zero secretStream
	empty := make([]byte, ssOverhead)
	zero.seal(empty, nil, tagFinal)
	f.Add(empty)
	_, limit := MemoryEstimate(c)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Slack for io.Copy's buffer and the fuzzing engine.
		fuzzDecrypt(t, c, data, limit+128<<10)
	})
}

func FuzzOpenPGPDecrypt(f *testing.F) {
	priv, pub := newTestKey(f, "")
	enc, err := NewOpenPGP(pub, "")
	if err != nil {
		f.Fatal(err)
	}
	dec, err := NewOpenPGP(priv, "")
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{0, 10, 5000} {
		f.Add(seal(f, enc, randomBytes(n, uint64(n)), 1000))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Packet parsing may hold a packet's body, so allow for the input
		// size on top of the streaming bound.
		_, limit := MemoryEstimate(dec)
		fuzzDecrypt(t, dec, data, limit+1<<20+4*int64(len(data)))
	})
}

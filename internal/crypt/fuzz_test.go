package crypt

import (
	"bytes"
	"context"
	"errors"
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

// fuzzKeys stands in for KMS in the fuzz target only (a fuzzer cannot make
// thousands of requests a second to a server): it "wraps" the n-th data
// key to a fixed 184-byte blob whose first byte is n, and unwraps only
// those, so inputs reach the DARE stream parser with the right key.
type fuzzKeys struct {
	keys [][]byte
}

func fuzzBlob(n int) []byte {
	b := bytes.Repeat([]byte{0xb1}, kmsEncryptedKeySize)
	b[0] = byte(n)
	return b
}

func (f *fuzzKeys) encryptKey(_ context.Context, plaintext []byte) ([]byte, error) {
	f.keys = append(f.keys, bytes.Clone(plaintext))
	return fuzzBlob(len(f.keys) - 1), nil
}

func (f *fuzzKeys) decryptKey(_ context.Context, blob []byte) ([]byte, error) {
	n := int(blob[0])
	if n >= len(f.keys) || !bytes.Equal(blob, fuzzBlob(n)) {
		return nil, errors.New("InvalidCiphertextException")
	}
	return bytes.Clone(f.keys[n]), nil
}

// FuzzKMSReader feeds objects to the KMS crypter's reader: the 184-byte
// wrapped key, then the DARE stream. Whatever the bytes, it must end in an
// error or the plaintext, allocating no more than its package buffer and ciphers.
func FuzzKMSReader(f *testing.F) {
	c := &kmsCrypter{ctx: context.Background(), keys: &fuzzKeys{}}
	for _, n := range []int{0, 1, 100, 1 << 16, 1<<16 + 1} {
		f.Add(seal(f, c, randomBytes(n, uint64(n)), 1000))
	}
	f.Add(fuzzBlob(0)[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		// One 64 KiB package buffer, the wrapped key, both AEADs sio
		// keys for a stream, the stand-in's copies: about 88 KiB, however
		// long the input.
		fuzzDecrypt(t, c, data, 96<<10)
	})
}

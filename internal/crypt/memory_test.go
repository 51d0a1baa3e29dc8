package crypt

import (
	"bytes"
	"io"
	"runtime"
	"testing"
)

// heapTracker records the live heap above a baseline: HeapAlloc right after
// a GC, so garbage does not count.
type heapTracker struct {
	base, peak int64
	total      uint64 // TotalAlloc at start
}

func startHeap() *heapTracker {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return &heapTracker{base: int64(m.HeapAlloc), total: m.TotalAlloc}
}

func (h *heapTracker) sample() {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, int64(m.HeapAlloc)-h.base)
}

func (h *heapTracker) allocated() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.TotalAlloc - h.total)
}

// TestMemoryEstimate streams 16 MiB through each crypter (writes of 1 MiB,
// as a pipeline may make) and checks the live heap of the writer and the
// reader, sampled after every MiB, against MemoryEstimate. libsodium must
// also allocate nothing beyond it, and neither reader (TestKMSMemoryEstimate
// covers AWS KMS, whose requests make garbage).
func TestMemoryEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 16 MiB streams")
	}
	sodium, _ := NewLibsodium(testKey())
	priv, pub := newTestKey(t, "")
	enc, dec := mustPGP(t, pub, ""), mustPGP(t, priv, "")
	data := randomBytes(16<<20, 3)
	for _, c := range []struct {
		name     string
		enc, dec Crypter
	}{{"libsodium", sodium, sodium}, {"openpgp", enc, dec}} {
		estW, estR := MemoryEstimate(c.dec)
		m := measureStreams(t, c.enc, c.dec, data)
		if m.writerLive > estW || (c.name == "libsodium" && m.writerTotal > estW) {
			t.Errorf("%s: writer live %d, allocated %d bytes; estimate %d", c.name, m.writerLive, m.writerTotal, estW)
		}
		if m.readerLive > estR || m.readerTotal > estR {
			t.Errorf("%s: reader live %d, allocated %d bytes; estimate %d", c.name, m.readerLive, m.readerTotal, estR)
		}
	}
}

type streamMemory struct {
	writerLive, writerTotal, readerLive, readerTotal int64
}

// measureStreams encrypts data with enc in writes of 1 MiB and decrypts it
// with dec in reads of 32 KiB, and returns the peak live heap of each
// (sampled after every MiB) and what each allocated in all.
func measureStreams(t *testing.T, enc, dec Crypter, data []byte) streamMemory {
	t.Helper()
	estW, estR := MemoryEstimate(dec)
	var m streamMemory
	var out bytes.Buffer
	out.Grow(len(data) + 1<<20)

	h := startHeap()
	w, _ := enc.Encrypt(&out)
	for off := 0; off < len(data); off += 1 << 20 {
		w.Write(data[off : off+1<<20])
		h.sample()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m.writerLive, m.writerTotal = h.peak, h.allocated()
	t.Logf("%-9s writer: live %6.1f KiB, allocated %8.1f KiB (estimate %d KiB)", enc.Name(), kib(m.writerLive), kib(m.writerTotal), estW>>10)

	buf := make([]byte, 32<<10)
	h = startHeap()
	r, err := dec.Decrypt(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		k, err := r.Read(buf)
		n += k
		if n%(1<<20) < k {
			h.sample()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil || n != len(data) {
		t.Fatalf("%d bytes, %v", n, err)
	}
	m.readerLive, m.readerTotal = h.peak, h.allocated()
	t.Logf("%-9s reader: live %6.1f KiB, allocated %8.1f KiB (estimate %d KiB)", dec.Name(), kib(m.readerLive), kib(m.readerTotal), estR>>10)
	return m
}

func kib(n int64) float64 { return float64(n) / 1024 }

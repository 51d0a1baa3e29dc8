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
// also allocate nothing beyond it.
func TestMemoryEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 16 MiB streams")
	}
	sodium, _ := NewLibsodium(testKey())
	priv, pub := newTestKey(t, "")
	enc, dec := mustPGP(t, pub, ""), mustPGP(t, priv, "")
	data := randomBytes(16<<20, 3)
	buf := make([]byte, 32<<10)
	for _, c := range []struct {
		name     string
		enc, dec Crypter
	}{{"libsodium", sodium, sodium}, {"openpgp", enc, dec}} {
		estW, estR := MemoryEstimate(c.dec)
		var out bytes.Buffer
		out.Grow(len(data) + 1<<20)

		h := startHeap()
		w, _ := c.enc.Encrypt(&out)
		for off := 0; off < len(data); off += 1 << 20 {
			w.Write(data[off : off+1<<20])
			h.sample()
		}
		w.Close()
		total := h.allocated()
		t.Logf("%-9s writer: live %6.1f KiB, allocated %8.1f KiB (estimate %d KiB)", c.name, kib(h.peak), kib(total), estW>>10)
		if h.peak > estW || (c.name == "libsodium" && total > estW) {
			t.Errorf("%s: writer live %d, allocated %d bytes; estimate %d", c.name, h.peak, total, estW)
		}

		z := out.Bytes()
		h = startHeap()
		r, err := c.dec.Decrypt(bytes.NewReader(z))
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
		total = h.allocated()
		t.Logf("%-9s reader: live %6.1f KiB, allocated %8.1f KiB (estimate %d KiB)", c.name, kib(h.peak), kib(total), estR>>10)
		if h.peak > estR || total > estR {
			t.Errorf("%s: reader live %d, allocated %d bytes; estimate %d", c.name, h.peak, total, estR)
		}
	}
}

func kib(n int64) float64 { return float64(n) / 1024 }

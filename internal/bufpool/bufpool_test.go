package bufpool

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

func TestSpoolRoundTripAndReuse(t *testing.T) {
	pool := New(1000)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 999, 1000, 1001, 5432} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		s := NewSpool(pool, 0)
		// Uneven writes cross chunk boundaries.
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(700))
			if _, err := s.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if s.Size() != int64(size) {
			t.Fatalf("size %d, want %d", s.Size(), size)
		}
		for pass := 0; pass < 2; pass++ { // a retry re-reads from the start
			r := s.Reader()
			if r.Len() != size {
				t.Fatalf("Len %d, want %d", r.Len(), size)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("size %d pass %d: content differs", size, pass)
			}
		}
		r := s.Reader()
		if _, err := r.Seek(int64(size/2), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		tail, _ := io.ReadAll(r)
		if !bytes.Equal(tail, data[size/2:]) {
			t.Fatalf("size %d: seek+read differs", size)
		}
		s.Reset()
	}
	// Spools used one after another share chunks: the largest one (5432
	// bytes = 6 chunks) sets the high-water mark.
	if got := pool.Allocated(); got != 6 {
		t.Fatalf("allocated %d chunks, want 6 (reuse broken)", got)
	}
}

func TestSpoolLimit(t *testing.T) {
	s := NewSpool(New(16), 20)
	if _, err := s.Write(make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte{1}); err != ErrSpoolFull {
		t.Fatalf("got %v, want ErrSpoolFull", err)
	}
}

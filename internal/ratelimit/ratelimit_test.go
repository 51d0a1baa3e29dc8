package ratelimit

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// fakeClock advances only when the limiter sleeps.
type fakeClock struct{ now time.Time }

func (c *fakeClock) limiter(rate int64) *Limiter {
	l := New(rate)
	l.now = func() time.Time { return c.now }
	l.sleep = func(_ context.Context, d time.Duration) error {
		c.now = c.now.Add(d)
		return nil
	}
	return l
}

func TestRateLimiter(t *testing.T) {
	if New(0) != nil || New(-1) != nil {
		t.Fatal("no limit must be nil")
	}
	var nilLimiter *Limiter
	if err := nilLimiter.Take(context.Background(), 1<<30); err != nil {
		t.Fatal(err)
	}
	const rate = 10 << 20 // 10 MiB/s
	clock := &fakeClock{now: time.Unix(1000, 0)}
	l := clock.limiter(rate)
	start := clock.now
	src := bytes.NewReader(make([]byte, 100<<20))
	n, err := io.CopyBuffer(io.Discard, l.Reader(context.Background(), src), make([]byte, minBurst))
	if err != nil || n != 100<<20 {
		t.Fatal(n, err)
	}
	// 100 MiB at 10 MiB/s: about 10 s, less the initial burst.
	if took := clock.now.Sub(start); took < 9500*time.Millisecond || took > 10100*time.Millisecond {
		t.Errorf("100 MiB took %v of limiter time, want ~10s", took)
	}
	// Writes larger than the bucket pass and are paid for afterwards.
	start = clock.now
	w := l.Writer(context.Background(), io.Discard)
	if _, err := w.Write(make([]byte, 50<<20)); err != nil {
		t.Fatal(err)
	}
	if took := clock.now.Sub(start); took < 4*time.Second || took > 5100*time.Millisecond {
		t.Errorf("50 MiB write took %v, want ~5s", took)
	}
	// A cancelled context stops the wait.
	real := New(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := real.Take(ctx, 1<<20); err == nil {
		t.Error("take ignored a cancelled context")
	}
}

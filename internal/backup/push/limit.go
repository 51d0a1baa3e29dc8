package push

import (
	"context"
	"io"
	"sync"
	"time"
)

// rateLimiter is a token bucket in bytes per second shared by every reader
// or writer it wraps (WALG_DISK_RATE_LIMIT, WALG_NETWORK_RATE_LIMIT are
// process-wide budgets in WAL-G). A request larger than the bucket is let
// through at once and paid for by waiting afterwards, so callers need not
// split their buffers. A nil limiter passes everything through.
type rateLimiter struct {
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
}

// newRateLimiter returns nil (no limit) for bytesPerSecond <= 0.
func newRateLimiter(bytesPerSecond int64) *rateLimiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	r := float64(bytesPerSecond)
	// A tenth of a second of budget, at least one read buffer, smooths
	// the flow without letting a long idle period become a large burst.
	burst := max(r/10, float64(readBufferSize))
	return &rateLimiter{rate: r, burst: burst, tokens: burst, now: time.Now, sleep: sleepCtx}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// take charges n bytes and waits until the bucket is no longer in debt.
func (l *rateLimiter) take(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return nil
	}
	l.mu.Lock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	l.tokens -= float64(n)
	var wait time.Duration
	if l.tokens < 0 {
		wait = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if wait > 0 {
		return l.sleep(ctx, wait)
	}
	return nil
}

type limitedReader struct {
	ctx context.Context
	l   *rateLimiter
	r   io.Reader
}

func (r limitedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if werr := r.l.take(r.ctx, n); werr != nil && err == nil {
		err = werr
	}
	return n, err
}

// reader limits reads from r.
func (l *rateLimiter) reader(ctx context.Context, r io.Reader) io.Reader {
	if l == nil {
		return r
	}
	return limitedReader{ctx, l, r}
}

type limitedWriter struct {
	ctx context.Context
	l   *rateLimiter
	w   io.Writer
}

func (w limitedWriter) Write(p []byte) (int, error) {
	if err := w.l.take(w.ctx, len(p)); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}

// writer limits writes to w.
func (l *rateLimiter) writer(ctx context.Context, w io.Writer) io.Writer {
	if l == nil {
		return w
	}
	return limitedWriter{ctx, l, w}
}

// Package ratelimit is the byte-rate budget behind WALG_DISK_RATE_LIMIT
// (reads of the data directory) and WALG_NETWORK_RATE_LIMIT (every byte
// to and from storage): a token bucket shared by every reader or writer
// it wraps, as WAL-G's limiters are process-wide. It holds no buffer.
package ratelimit

import (
	"context"
	"io"
	"sync"
	"time"
)

// minBurst is the least the bucket holds: one read buffer of the backup's
// file reader, so a single read never waits twice.
const minBurst = 256 << 10

// Limiter is a token bucket in bytes per second. A request larger than the
// bucket is let through at once and paid for by waiting afterwards, so
// callers need not split their buffers. A nil Limiter passes everything
// through.
type Limiter struct {
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
}

// New returns nil (no limit) for bytesPerSecond <= 0.
func New(bytesPerSecond int64) *Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	r := float64(bytesPerSecond)
	// A tenth of a second of budget, at least one read buffer, smooths
	// the flow without letting a long idle period become a large burst.
	burst := max(r/10, float64(minBurst))
	return &Limiter{rate: r, burst: burst, tokens: burst, now: time.Now, sleep: Sleep}
}

// Sleep waits d, or returns ctx's cause once it is done first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Take charges n bytes and waits until the bucket is no longer in debt.
func (l *Limiter) Take(ctx context.Context, n int) error {
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
	l   *Limiter
	r   io.Reader
}

func (r limitedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if werr := r.l.Take(r.ctx, n); werr != nil && err == nil {
		err = werr
	}
	return n, err
}

// limitedReadSeeker keeps a seekable body seekable: backends rewind one
// to retry a request or to learn its length.
type limitedReadSeeker struct {
	limitedReader
	s io.Seeker
}

func (r limitedReadSeeker) Seek(off int64, whence int) (int64, error) {
	return r.s.Seek(off, whence)
}

// Reader limits reads from r; an io.Seeker stays one.
func (l *Limiter) Reader(ctx context.Context, r io.Reader) io.Reader {
	if l == nil {
		return r
	}
	lr := limitedReader{ctx, l, r}
	if s, ok := r.(io.Seeker); ok {
		return limitedReadSeeker{lr, s}
	}
	return lr
}

type limitedWriter struct {
	ctx context.Context
	l   *Limiter
	w   io.Writer
}

func (w limitedWriter) Write(p []byte) (int, error) {
	if err := w.l.Take(w.ctx, len(p)); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}

// Writer limits writes to w.
func (l *Limiter) Writer(ctx context.Context, w io.Writer) io.Writer {
	if l == nil {
		return w
	}
	return limitedWriter{ctx, l, w}
}

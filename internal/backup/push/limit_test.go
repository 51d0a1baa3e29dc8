package push

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
)

// fakeClock advances only when the limiter sleeps.
type fakeClock struct{ now time.Time }

func (c *fakeClock) limiter(rate int64) *rateLimiter {
	l := newRateLimiter(rate)
	l.now = func() time.Time { return c.now }
	l.sleep = func(_ context.Context, d time.Duration) error {
		c.now = c.now.Add(d)
		return nil
	}
	return l
}

func TestRateLimiter(t *testing.T) {
	if newRateLimiter(0) != nil || newRateLimiter(-1) != nil {
		t.Fatal("no limit must be nil")
	}
	var nilLimiter *rateLimiter
	if err := nilLimiter.take(context.Background(), 1<<30); err != nil {
		t.Fatal(err)
	}
	const rate = 10 << 20 // 10 MiB/s
	clock := &fakeClock{now: time.Unix(1000, 0)}
	l := clock.limiter(rate)
	start := clock.now
	src := bytes.NewReader(make([]byte, 100<<20))
	n, err := io.CopyBuffer(io.Discard, l.reader(context.Background(), src), make([]byte, readBufferSize))
	if err != nil || n != 100<<20 {
		t.Fatal(n, err)
	}
	// 100 MiB at 10 MiB/s: about 10 s, less the initial burst.
	if took := clock.now.Sub(start); took < 9500*time.Millisecond || took > 10100*time.Millisecond {
		t.Errorf("100 MiB took %v of limiter time, want ~10s", took)
	}
	// Writes larger than the bucket pass and are paid for afterwards.
	start = clock.now
	w := l.writer(context.Background(), io.Discard)
	if _, err := w.Write(make([]byte, 50<<20)); err != nil {
		t.Fatal(err)
	}
	if took := clock.now.Sub(start); took < 4*time.Second || took > 5100*time.Millisecond {
		t.Errorf("50 MiB write took %v, want ~5s", took)
	}
	// A cancelled context stops the wait.
	real := newRateLimiter(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := real.take(ctx, 1<<20); err == nil {
		t.Error("take ignored a cancelled context")
	}
}

func TestMemoryPlan(t *testing.T) {
	lz4, _ := codec.ByName("lz4")
	cr, err := crypt.NewLibsodium(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Method: lz4, Crypter: cr, DiskConcurrency: 4, UploadConcurrency: 2, Verify: true, TempDir: "/var/tmp"}
	w, _ := codec.MemoryEstimate(lz4)
	ew, _ := crypt.MemoryEstimate(cr)
	facts := memplan.Facts{
		Codec:   memplan.Codec{Name: "lz4", Writer: w},
		Crypter: memplan.Crypter{Name: cr.Name(), Writer: ew},
		Storage: memplan.Storage{Name: "S3", Upload: 256 << 10, UnknownSize: 40 << 20, UnknownSizeTotal: 60 << 20, Note: "S3"},
	}
	plan := MemoryPlan(o, facts)
	// Two builders (min of 4 and 2): two read buffers, two lz4 writers,
	// two S3 requests, the 60 MiB S3 pool (less than 2 × 40).
	min := int64(2*readBufferSize + 2*w + 2*256<<10 + 60<<20)
	if live := plan.Live(); live < min || live > min+2<<20 {
		t.Errorf("live %d, want about %d", live, min)
	}
	var out strings.Builder
	if err := plan.Table(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"file read buffer", "compressor (lz4)", "encryption (libsodium)", "upload buffers (shared pool)", "GOMEMLIMIT", "committed"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("plan lacks %q:\n%s", s, out.String())
		}
	}
	// The spools and the verifier only when used; no pool cap: per upload.
	o.WithoutFilesMetadata, o.Verify = true, false
	out.Reset()
	facts.Storage = memplan.Storage{Name: "file", Upload: 128 << 10}
	MemoryPlan(o, facts).Table(&out)
	if strings.Contains(out.String(), "spool") || strings.Contains(out.String(), "verify") || strings.Contains(out.String(), "shared pool") {
		t.Errorf("plan:\n%s", out.String())
	}
}

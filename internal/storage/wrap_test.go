package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
)

func newFile(t *testing.T) storage.Storage {
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var fast = storage.RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: 2 * time.Millisecond}

// The wrappers keep the contract, Create included.
func TestWrappersContract(t *testing.T) {
	t.Run("Retry", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.Retry(newFile(t), fast, nil) })
	})
	t.Run("RateLimit", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.RateLimit(newFile(t), 1<<30) })
	})
	t.Run("Remap", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage {
			return storage.Remap(newFile(t), "basebackups_005/", "catchup_005/")
		})
	})
}

// Remap stores the mapped folder under its new name and leaves the rest.
func TestRemap(t *testing.T) {
	ctx := context.Background()
	base := newFile(t)
	s := storage.Remap(base, "basebackups_005/", "catchup_005/")
	for _, k := range []string{"basebackups_005/b/x", "wal_005/w"} {
		if err := s.Put(ctx, k, strings.NewReader("v"), 1); err != nil {
			t.Fatal(err)
		}
	}
	for k, want := range map[string]bool{"catchup_005/b/x": true, "basebackups_005/b/x": false, "wal_005/w": true} {
		if ok, err := storage.Exists(ctx, base, k); err != nil || ok != want {
			t.Errorf("%s exists: %v, %v; want %v", k, ok, err, want)
		}
	}
	var keys []string
	if err := s.List(ctx, "basebackups_005/", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "basebackups_005/b/x" {
		t.Errorf("listing through the remap: %v", keys)
	}
}

// flaky fails the first fails calls of every operation with err, then
// passes them to the real storage underneath.
type flaky struct {
	storage.Storage
	fails int32
	err   error
	calls atomic.Int32
}

func (f *flaky) fail() error {
	if f.calls.Add(1) <= f.fails {
		return f.err
	}
	return nil
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := f.fail(); err != nil {
		io.CopyN(io.Discard, r, 3) // a failed upload has read part of its body
		return err
	}
	return f.Storage.Put(ctx, key, r, size)
}

func (f *flaky) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Storage.Get(ctx, key)
}

func (f *flaky) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := f.fail(); err != nil {
		return storage.ObjectInfo{}, err
	}
	return f.Storage.Stat(ctx, key)
}

func (f *flaky) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	n := f.calls.Add(1)
	err := f.Storage.List(ctx, prefix, fn)
	if n <= f.fails {
		return f.err // fails after fn saw the objects
	}
	return err
}

var errReset = errors.New("connection reset by peer")

func TestRetryTransient(t *testing.T) {
	ctx := context.Background()
	base := newFile(t)
	if err := base.Put(ctx, "a/obj", strings.NewReader("payload"), 7); err != nil {
		t.Fatal(err)
	}
	f := &flaky{Storage: base, fails: 2, err: errReset}
	s := storage.Retry(f, fast, nil)

	if info, err := s.Stat(ctx, "a/obj"); err != nil || info.Size != 7 {
		t.Fatalf("Stat after two resets: %+v, %v", info, err)
	}
	if f.calls.Load() != 3 {
		t.Errorf("Stat: %d calls, want 3", f.calls.Load())
	}

	f.calls.Store(0)
	rc, err := s.Get(ctx, "a/obj")
	if err != nil {
		t.Fatalf("Get after two resets: %v", err)
	}
	rc.Close()

	// A seekable body is rewound and sent whole.
	f.calls.Store(0)
	if err := s.Put(ctx, "a/new", bytes.NewReader([]byte("0123456789")), 10); err != nil {
		t.Fatalf("Put after two resets: %v", err)
	}
	if got := storagetest.ReadAll(t, base, "a/new"); string(got) != "0123456789" {
		t.Errorf("retried Put stored %q", got)
	}

	// A stream cannot be sent twice: the first error stands.
	f.calls.Store(0)
	err = s.Put(ctx, "a/stream", storagetest.OnlyReader{R: strings.NewReader("stream")}, 6)
	if !errors.Is(err, errReset) || f.calls.Load() != 1 {
		t.Errorf("Put of a stream: %v after %d calls, want the reset after 1", err, f.calls.Load())
	}

	// A listing that has shown objects is not repeated.
	f.calls.Store(0)
	seen := 0
	err = s.List(ctx, "a/", func(storage.ObjectInfo) error { seen++; return nil })
	if !errors.Is(err, errReset) || f.calls.Load() != 1 || seen != 2 {
		t.Errorf("List: %v, %d calls, %d objects; want the reset, 1 call, 2 objects", err, f.calls.Load(), seen)
	}

	// Attempts bound the tries.
	f.calls.Store(0)
	f.fails = 100
	if _, err := s.Stat(ctx, "a/obj"); !errors.Is(err, errReset) || f.calls.Load() != int32(fast.Attempts) {
		t.Errorf("Stat against a dead server: %v after %d calls, want %d", err, f.calls.Load(), fast.Attempts)
	}
}

// What IsTransient calls permanent is tried once.
func TestRetryPermanent(t *testing.T) {
	ctx := context.Background()
	for _, perm := range []error{
		storage.Permanent(errors.New("access denied")),
		fmt.Errorf("x: %w", storage.ErrNotFound),
		context.Canceled,
	} {
		f := &flaky{Storage: newFile(t), fails: 5, err: perm}
		if _, err := storage.Retry(f, fast, nil).Stat(ctx, "k"); !errors.Is(err, perm) || f.calls.Load() != 1 {
			t.Errorf("%v: %v after %d calls, want it after 1", perm, err, f.calls.Load())
		}
	}
	// Create's ErrExists is an answer, not a failure.
	s := storage.Retry(newFile(t), fast, nil)
	c, ok := s.(storage.Creator)
	if !ok {
		t.Fatal("Retry lost the file backend's Create")
	}
	if err := c.Create(ctx, "k", strings.NewReader("1"), 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, "k", strings.NewReader("2"), 1); !errors.Is(err, storage.ErrExists) {
		t.Errorf("second Create: %v", err)
	}
}

// A backend without Create stays without it once wrapped, so callers do
// not take a check-then-put for an atomic create.
func TestWrappersKeepCreatorAbsent(t *testing.T) {
	plain := struct{ storage.Storage }{newFile(t)}
	for name, s := range map[string]storage.Storage{
		"Retry":     storage.Retry(plain, fast, nil),
		"RateLimit": storage.RateLimit(plain, 1<<20),
	} {
		if _, ok := s.(storage.Creator); ok {
			t.Errorf("%s invented a Create", name)
		}
	}
}

// Cancelling the context stops the wait between attempts.
func TestRetryCancelled(t *testing.T) {
	f := &flaky{Storage: newFile(t), fails: 100, err: errReset}
	s := storage.Retry(f, storage.RetryPolicy{Attempts: 100, Base: time.Hour, Max: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for f.calls.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, context.Canceled) || !errors.Is(err, errReset) {
		t.Errorf("cancelled retry: %v, want the reset and the cancellation", err)
	}
}

// WALG_NETWORK_RATE_LIMIT applies to uploads and downloads alike.
func TestRateLimitPaces(t *testing.T) {
	ctx := context.Background()
	const rate = 4 << 20
	s := storage.RateLimit(newFile(t), rate)
	data := bytes.Repeat([]byte{7}, 3<<20) // beyond the bucket: ~0.7 s of debt
	start := time.Now()
	if err := s.Put(ctx, "k", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Errorf("3 MiB put at 4 MiB/s took %v", took)
	}
	start = time.Now()
	if got := storagetest.ReadAll(t, s, "k"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Errorf("3 MiB get at 4 MiB/s took %v", took)
	}
}

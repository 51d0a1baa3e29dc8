package wal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

// hookStore wraps a Storage and lets a test replace Get and Put.
type hookStore struct {
	storage.Storage
	gets atomic.Int32
	get  func(ctx context.Context, key string) (io.ReadCloser, error)
	put  func(ctx context.Context, key string, r io.Reader, size int64) error
}

func (h *hookStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	h.gets.Add(1)
	if h.get != nil {
		return h.get(ctx, key)
	}
	return h.Storage.Get(ctx, key)
}

func (h *hookStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if h.put != nil {
		return h.put(ctx, key, r, size)
	}
	return h.Storage.Put(ctx, key, r, size)
}

// within runs f and fails the test when it has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s still running after %v", what, d)
		return nil
	}
}

func encoded(t *testing.T, method string, src io.Reader) []byte {
	t.Helper()
	m, err := codec.ByName(method)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := pipe.NewEncoder(m, nil).Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("%s left in %s", e.Name(), dir)
		}
	}
}

// A storage that hangs (as the S3 client does while it retries an
// unreachable endpoint) must not hold the fetch past RetryTimeout.
func TestFetchEndsWithinRetryTimeout(t *testing.T) {
	_, _, r := setup(t, "lz4")
	hs := &hookStore{Storage: r.Store, get: func(ctx context.Context, key string) (io.ReadCloser, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	r.Store, r.Retries, r.RetryTimeout = hs, 15, 300*time.Millisecond
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	err := within(t, 5*time.Second, "fetch from a hanging storage", func() error {
		return r.Fetch(context.Background(), "000000010000000000000001", dest)
	})
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("got %v, want a failure that is not 'not found'", err)
	}
	if !strings.Contains(err.Error(), "TUSK_FETCH_RETRY_TIMEOUT") {
		t.Errorf("error %q does not name TUSK_FETCH_RETRY_TIMEOUT", err)
	}
}

// WALG_DOWNLOAD_FILE_RETRIES is a count: retries after the first attempt.
func TestFetchRetriesIsACount(t *testing.T) {
	for _, retries := range []int{0, 1, 3} {
		st, _, r := setup(t, "lz4")
		st.failGets = 100
		hs := &hookStore{Storage: st}
		r.Store, r.Retries = hs, retries
		err := r.Fetch(context.Background(), "000000010000000000000001", filepath.Join(t.TempDir(), "x"))
		if !errors.Is(err, ErrStorage) {
			t.Fatalf("retries %d: %v", retries, err)
		}
		if got := hs.gets.Load(); got != int32(retries+1) {
			t.Errorf("retries %d: %d attempts, want %d", retries, got, retries+1)
		}
	}
}

// An invalid name is the caller's mistake: one attempt, no retry, and not
// "not found".
func TestFetchInvalidNameIsNotRetried(t *testing.T) {
	fs, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs := &hookStore{Storage: fs}
	r := &Restorer{Store: hs, SegmentSize: testSegSize, Retries: 15, RetryTimeout: time.Minute}
	err = within(t, 5*time.Second, "fetch of ../x", func() error {
		return r.Fetch(context.Background(), "../x", filepath.Join(t.TempDir(), "out"))
	})
	if !errors.Is(err, storage.ErrInvalidKey) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, ErrStorage) {
		t.Fatalf("got %v, want a permanent invalid key error", err)
	}
	if n := hs.gets.Load(); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

// zeros yields n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), z.n)]
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// countingBody counts the raw bytes a fetch consumed.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// A segment object must decode to exactly the segment size; anything else
// is refused while streaming, naming the object, and leaves nothing at the
// destination or in the prefetch folder.
func TestFetchSegmentSizeRule(t *testing.T) {
	bomb := encoded(t, "zstd", &zeros{256 << 20})
	cases := map[string][]byte{
		"bomb":   bomb,
		"double": encoded(t, "zstd", &zeros{2 * testSegSize}),
		"plus1":  encoded(t, "zstd", &zeros{testSegSize + 1}),
		"short":  encoded(t, "zstd", &zeros{testSegSize - 1}),
		"1byte":  encoded(t, "zstd", &zeros{1}),
		"empty":  encoded(t, "zstd", &zeros{0}),
	}
	for label, obj := range cases {
		t.Run(label, func(t *testing.T) {
			st, _, r := setup(t, "zstd")
			var consumed atomic.Int64
			r.Store = &hookStore{Storage: st, get: func(ctx context.Context, key string) (io.ReadCloser, error) {
				rc, err := st.Get(ctx, key)
				if err != nil {
					return nil, err
				}
				return countingBody{rc, &consumed}, nil
			}}
			name := "000000010000000000000007"
			key := Folder + name + ".zst"
			st.objects[key] = obj
			dir := t.TempDir()
			dest := filepath.Join(dir, "RECOVERYXLOG")
			err := r.Fetch(context.Background(), name, dest)
			if err == nil || !strings.Contains(err.Error(), key) || errors.Is(err, ErrStorage) {
				t.Fatalf("got %v, want an error naming %s, not retried", err, key)
			}
			assertEmptyDir(t, dir)
			if label == "bomb" && consumed.Load() >= int64(len(bomb))/2 {
				t.Errorf("read %d of the bomb's %d bytes: not stopped at the segment size", consumed.Load(), len(bomb))
			}

			// Prefetch of the same object leaves nothing either.
			prev := "000000010000000000000006"
			pdir := PrefetchDir("", dest)
			if err := r.Prefetch(context.Background(), prev, pdir, 2); err != nil {
				t.Fatal(err)
			}
			assertEmptyDir(t, pdir)
			assertEmptyDir(t, filepath.Join(pdir, "running"))
		})
	}
	// Files that are not segments keep their own rules.
	st, _, r := setup(t, "zstd")
	dir := t.TempDir()
	for name, size := range map[string]int64{
		"000000010000000000000007.partial":         100,
		"00000002.history":                         60,
		"000000010000000000000002.00000028.backup": 200,
	} {
		st.objects[Folder+name+".zst"] = encoded(t, "zstd", &zeros{size})
		if err := r.Fetch(context.Background(), name, filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	st.objects[Folder+"00000003.history.zst"] = bomb
	if err := r.Fetch(context.Background(), "00000003.history", filepath.Join(dir, "h")); err == nil {
		t.Error("a history file larger than a segment was written")
	}
}

// wal-push refuses a segment-named file of any size but the segment size,
// storing nothing; partial segments and history files are not segments.
func TestPushRefusesWrongSizedSegment(t *testing.T) {
	for _, buffering := range []string{BufferStream, BufferRecompress, BufferMemory} {
		st, a, _ := setup(t, "lz4")
		a.Buffering = buffering
		dir := t.TempDir()
		for _, size := range []int{0, 1, testSegSize - 1} {
			name := "000000010000000000000009"
			p := filepath.Join(dir, name)
			writeFile(t, p, make([]byte, size))
			err := a.Push(context.Background(), p, PushOptions{})
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "WALG_PG_WAL_SIZE") {
				t.Errorf("%s: push of a %d-byte segment: %v", buffering, size, err)
			}
		}
		if keys := st.keys(); len(keys) != 0 {
			t.Fatalf("%s: stored %v", buffering, keys)
		}
		for name, data := range map[string][]byte{
			"00000001000000000000000A.partial": []byte("x"),
			"00000002.history":                 []byte("1\t0/3000000\tno recovery target specified\n"),
		} {
			writeFile(t, filepath.Join(dir, name), data)
			if err := a.Push(context.Background(), filepath.Join(dir, name), PushOptions{}); err != nil {
				t.Errorf("%s: %s: %v", buffering, name, err)
			}
		}
	}
}

// slowCreateStore delays every store operation that publishes an object,
// so every concurrent pusher checks before any stores.
type slowCreateStore struct {
	*file.Storage
	delay time.Duration
}

func (s slowCreateStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	time.Sleep(s.delay)
	return s.Storage.Put(ctx, key, r, size)
}

func (s slowCreateStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	time.Sleep(s.delay)
	return s.Storage.Create(ctx, key, r, size)
}

// Of concurrent pushes of one name with different contents exactly one
// succeeds; the others report that the contents differ.
func TestConcurrentPushesOneWins(t *testing.T) {
	fs, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := slowCreateStore{fs, 200 * time.Millisecond}
	m, _ := codec.ByName("lz4")
	name := "00000001000000000000000B"
	const n = 4
	errs := make([]error, n)
	datas := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		dir := t.TempDir()
		datas[i] = segmentBytes(uint64(1000 + i))
		writeFile(t, filepath.Join(dir, name), datas[i])
		r := &Restorer{Store: store, SegmentSize: testSegSize}
		a := &Archiver{Store: store, Buffering: BufferStream, SegmentSize: testSegSize, PreventOverwrite: true, Restorer: r,
			NewEncoder: func() *pipe.Encoder { return pipe.NewEncoder(m, nil) }}
		wg.Go(func() { errs[i] = a.Push(context.Background(), filepath.Join(dir, name), PushOptions{}) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("pushes %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !strings.Contains(err.Error(), "contents differ"):
			t.Errorf("push %d: %v, want 'contents differ'", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no push succeeded: %v", errs)
	}
	r := &Restorer{Store: fs, SegmentSize: testSegSize}
	dest := filepath.Join(t.TempDir(), "x")
	if err := r.Fetch(context.Background(), name, dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, datas[winner]) {
		t.Fatal("stored content is not the winner's")
	}
	// The same content again is accepted.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, name), datas[winner])
	a := &Archiver{Store: fs, Buffering: BufferStream, SegmentSize: testSegSize, PreventOverwrite: true, Restorer: r,
		NewEncoder: func() *pipe.Encoder { return pipe.NewEncoder(m, nil) }}
	if err := a.Push(context.Background(), filepath.Join(dir, name), PushOptions{}); err != nil {
		t.Fatalf("push of equal content: %v", err)
	}
}

// In stream mode a Put that fails mid-stream must not return while the
// encoder still runs, so the encoder the next upload takes from the pool is
// idle. Run with -race.
func TestStreamPutFailureStopsEncoder(t *testing.T) {
	st, a, _ := setup(t, "zstd")
	a.Buffering = BufferStream
	var fail atomic.Bool
	a.Store = &hookStore{Storage: st, put: func(ctx context.Context, key string, r io.Reader, size int64) error {
		if fail.Load() {
			io.CopyN(io.Discard, r, 1000)
			return errors.New("503 Service Unavailable")
		}
		return st.Put(ctx, key, r, size)
	}}
	dir := t.TempDir()
	for i := range 20 {
		name := Segment{1, uint64(0x50 + i)}.Name(testSegSize)
		p := filepath.Join(dir, name)
		writeFile(t, p, segmentBytes(uint64(i)))
		fail.Store(i%2 == 0)
		err := a.PushFile(context.Background(), p)
		if (err != nil) != (i%2 == 0) {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if n := len(st.keys()); n != 10 {
		t.Fatalf("%d objects stored, want 10", n)
	}
}

// slowBody yields its bytes one at a time with a pause, ignoring any
// context, as a read from a huge local file does.
type slowBody struct{ r io.Reader }

func (s slowBody) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.r.Read(p[:1])
}
func (s slowBody) Close() error { return nil }

// Cancelling (SIGTERM) stops a fetch that is copying, and nothing is left.
func TestFetchCancelStopsCopy(t *testing.T) {
	st, a, r := setup(t, "none")
	dir := t.TempDir()
	name := "00000001000000000000000C"
	writeFile(t, filepath.Join(dir, name), segmentBytes(12))
	if err := a.PushFile(context.Background(), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	r.Store = &hookStore{Storage: st, get: func(ctx context.Context, key string) (io.ReadCloser, error) {
		rc, err := st.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		return slowBody{rc}, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	out := t.TempDir()
	err := within(t, 5*time.Second, "cancelled fetch", func() error {
		return r.Fetch(ctx, name, filepath.Join(out, "RECOVERYXLOG"))
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	assertEmptyDir(t, out)
}

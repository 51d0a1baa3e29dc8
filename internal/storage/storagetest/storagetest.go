// Package storagetest is the behavioural contract every storage.Storage
// backend must pass. A backend's tests call Run with a constructor that
// returns an empty storage (a fresh directory, a fresh bucket prefix, ...).
//
// The contract does not fix List order: object stores list in key order,
// the file backend in directory order; callers that need an order sort.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
)

// Run runs the contract subtests; newStorage is called once per subtest and
// must return a storage with no objects in it.
func Run(t *testing.T, newStorage func(t *testing.T) storage.Storage) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Storage)
	}{
		{"PutGetKnownSize", testPutGetKnownSize},
		{"PutGetUnknownSize", testPutGetUnknownSize},
		{"EmptyObject", testEmptyObject},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"Stat", testStat},
		{"List", testList},
		{"ListStopsOnCallbackError", testListStop},
		{"Delete", testDelete},
		{"FailingReaderLeavesNothing", testFailingReader},
		{"CancelledPutLeavesNothing", testCancelledPut},
		{"CancelledContextBeforePut", testCancelledBefore},
		{"SizeMismatch", testSizeMismatch},
		{"SpecialKeys", testSpecialKeys},
		{"LeadingSlash", testLeadingSlash},
		{"ConcurrentPuts", testConcurrentPuts},
		{"InvalidKeys", testInvalidKeys},
		{"CreateIfAbsent", testCreate},
		{"ConcurrentCreates", testConcurrentCreates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStorage(t))
		})
	}
}

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// OnlyReader hides every method but Read (no Seek, no WriterTo), so a backend
// takes its unknown-size / unseekable path.
type OnlyReader struct{ R io.Reader }

func (o OnlyReader) Read(p []byte) (int, error) { return o.R.Read(p) }

// ReadAll returns the content of key, failing the test on error.
func ReadAll(t testing.TB, s storage.Storage, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return b
}

// Keys lists prefix and returns the sorted keys.
func Keys(t testing.TB, s storage.Storage, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(context.Background(), prefix, func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	slices.Sort(keys)
	return keys
}

func put(t *testing.T, s storage.Storage, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func wantContent(t *testing.T, s storage.Storage, key string, want []byte) {
	t.Helper()
	got := ReadAll(t, s, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("%q: got %d bytes, want %d bytes (content differs: %v)", key, len(got), len(want), len(got) == len(want))
	}
}

func wantAbsent(t *testing.T, s storage.Storage, key string) {
	t.Helper()
	ok, err := storage.Exists(context.Background(), s, key)
	if err != nil {
		t.Fatalf("Exists(%q): %v", key, err)
	}
	if ok {
		t.Fatalf("%q exists, want absent", key)
	}
}

func testPutGetKnownSize(t *testing.T, s storage.Storage) {
	data := RandomBytes(t, 300<<10)
	put(t, s, "wal_005/000000010000000000000001.lz4", data)
	wantContent(t, s, "wal_005/000000010000000000000001.lz4", data)
}

func testPutGetUnknownSize(t *testing.T, s storage.Storage) {
	data := RandomBytes(t, 200<<10+17)
	ctx := context.Background()
	if err := s.Put(ctx, "x/unknown", OnlyReader{bytes.NewReader(data)}, -1); err != nil {
		t.Fatal(err)
	}
	wantContent(t, s, "x/unknown", data)
	// Known size but not seekable.
	if err := s.Put(ctx, "x/unseekable", OnlyReader{bytes.NewReader(data)}, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	wantContent(t, s, "x/unseekable", data)
}

func testEmptyObject(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	if err := s.Put(ctx, "e/known", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "e/unknown", OnlyReader{strings.NewReader("")}, -1); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"e/known", "e/unknown"} {
		if got := ReadAll(t, s, k); len(got) != 0 {
			t.Fatalf("%s: got %d bytes, want 0", k, len(got))
		}
		oi, err := s.Stat(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if oi.Size != 0 {
			t.Fatalf("%s: Stat size %d, want 0", k, oi.Size)
		}
	}
}

func testOverwrite(t *testing.T, s storage.Storage) {
	put(t, s, "k", []byte("first version, longer"))
	put(t, s, "k", []byte("second"))
	wantContent(t, s, "k", []byte("second"))
	if keys := Keys(t, s, ""); !slices.Equal(keys, []string{"k"}) {
		t.Fatalf("keys after overwrite: %q", keys)
	}
}

func testNotFound(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	put(t, s, "present/a", []byte("a"))
	for _, key := range []string{"missing", "present/missing", "present", "present/a/below"} {
		_, err := s.Get(ctx, key)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q): error %v, want ErrNotFound", key, err)
		} else if !strings.Contains(err.Error(), key) {
			t.Errorf("Get(%q): error %q does not name the key", key, err)
		}
		_, err = s.Stat(ctx, key)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q): error %v, want ErrNotFound", key, err)
		}
		if ok, err := storage.Exists(ctx, s, key); ok || err != nil {
			t.Errorf("Exists(%q) = %v, %v; want false, nil", key, ok, err)
		}
	}
}

func testStat(t *testing.T, s storage.Storage) {
	before := time.Now()
	data := RandomBytes(t, 12345)
	put(t, s, "dir/obj", data)
	after := time.Now()
	oi, err := s.Stat(context.Background(), "dir/obj")
	if err != nil {
		t.Fatal(err)
	}
	if oi.Key != "dir/obj" || oi.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, want key dir/obj size %d", oi, len(data))
	}
	// Object stores keep second precision and their own clock.
	if oi.ModTime.Before(before.Add(-time.Minute)) || oi.ModTime.After(after.Add(time.Minute)) {
		t.Fatalf("ModTime %v not within a minute of [%v, %v]", oi.ModTime, before, after)
	}
}

func testList(t *testing.T, s storage.Storage) {
	objs := map[string]int{
		"a/1":   1,
		"a/2":   22,
		"a/b/3": 333,
		"ab":    4,
		"b/4":   5,
		"basebackups_005/base_000000010000000000000002_backup_stop_sentinel.json":       6,
		"basebackups_005/base_000000010000000000000002/tar_partitions/part_001.tar.lz4": 7,
	}
	for k, n := range objs {
		put(t, s, k, bytes.Repeat([]byte{'x'}, n))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", sortedKeys(objs)},
		{"a/", []string{"a/1", "a/2", "a/b/3"}},
		{"a", []string{"a/1", "a/2", "a/b/3", "ab"}},
		{"a/b", []string{"a/b/3"}},
		{"a/b/", []string{"a/b/3"}},
		{"basebackups_005/base_", []string{
			"basebackups_005/base_000000010000000000000002/tar_partitions/part_001.tar.lz4",
			"basebackups_005/base_000000010000000000000002_backup_stop_sentinel.json",
		}},
		{"zzz", nil},
		{"nodir/", nil},
	}
	for _, c := range cases {
		if got := Keys(t, s, c.prefix); !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	// Sizes reported by List match what was stored.
	err := s.List(context.Background(), "", func(oi storage.ObjectInfo) error {
		if want := int64(objs[oi.Key]); oi.Size != want {
			return fmt.Errorf("%s: listed size %d, want %d", oi.Key, oi.Size, want)
		}
		if oi.ModTime.IsZero() {
			return fmt.Errorf("%s: zero ModTime", oi.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func testListStop(t *testing.T, s storage.Storage) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("stop/%d", i), []byte("x"))
	}
	stop := errors.New("enough")
	calls := 0
	err := s.List(context.Background(), "stop/", func(storage.ObjectInfo) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List error %v, want the callback's error", err)
	}
	if calls != 2 {
		t.Fatalf("callback called %d times after returning an error at call 2", calls)
	}
}

func testDelete(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	for _, k := range []string{"d/1", "d/2", "d/sub/3", "keep"} {
		put(t, s, k, []byte(k))
	}
	if err := s.Delete(ctx); err != nil {
		t.Fatalf("Delete with no keys: %v", err)
	}
	if err := s.Delete(ctx, "d/1", "d/sub/3", "never-existed", "d/sub/never"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, s, "d/1")
	wantAbsent(t, s, "d/sub/3")
	if got := Keys(t, s, ""); !slices.Equal(got, []string{"d/2", "keep"}) {
		t.Fatalf("after delete: %q", got)
	}
	// Deleting again is fine.
	if err := s.Delete(ctx, "d/1"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	// A Put into a directory emptied by Delete works.
	put(t, s, "d/sub/again", []byte("again"))
	wantContent(t, s, "d/sub/again", []byte("again"))
}

// failingReader yields n bytes and then fails.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	m := min(len(p), f.n)
	for i := range p[:m] {
		p[i] = byte(i)
	}
	f.n -= m
	return m, nil
}

func testFailingReader(t *testing.T, s storage.Storage) {
	boom := errors.New("disk on fire")
	for _, size := range []int64{-1, 100 << 10} {
		err := s.Put(context.Background(), "f/obj", &failingReader{n: 64 << 10, err: boom}, size)
		if !errors.Is(err, boom) {
			t.Fatalf("size %d: Put error %v, want it to wrap the reader's error", size, err)
		}
		wantAbsent(t, s, "f/obj")
		if keys := Keys(t, s, ""); len(keys) != 0 {
			t.Fatalf("size %d: objects left after a failed Put: %q", size, keys)
		}
	}
}

// cancellingReader cancels its context after the first chunk and keeps
// producing data until limit.
type cancellingReader struct {
	cancel context.CancelFunc
	n      int
	limit  int
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		return 0, io.EOF
	}
	if c.n > 0 {
		c.cancel()
	}
	m := min(len(p), c.limit-c.n, 32<<10)
	c.n += m
	return m, nil
}

func testCancelledPut(t *testing.T, s storage.Storage) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := s.Put(ctx, "c/obj", &cancellingReader{cancel: cancel, limit: 1 << 20}, -1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put error %v, want context.Canceled", err)
	}
	wantAbsent(t, s, "c/obj")
	if keys := Keys(t, s, ""); len(keys) != 0 {
		t.Fatalf("objects left after a cancelled Put: %q", keys)
	}
}

func testCancelledBefore(t *testing.T, s storage.Storage) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Put(ctx, "cb/obj", strings.NewReader("data"), 4)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put error %v, want context.Canceled", err)
	}
	wantAbsent(t, s, "cb/obj")
	if _, err := s.Get(ctx, "cb/obj"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get with a cancelled context: %v, want a cancellation error", err)
	}
}

func testSizeMismatch(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	if err := s.Put(ctx, "m/short", OnlyReader{strings.NewReader("12345")}, 10); err == nil {
		t.Fatal("Put of 5 bytes declared as 10 succeeded")
	}
	wantAbsent(t, s, "m/short")
	if err := s.Put(ctx, "m/long", OnlyReader{strings.NewReader("1234567890")}, 5); err == nil {
		t.Fatal("Put of 10 bytes declared as 5 succeeded")
	}
	wantAbsent(t, s, "m/long")
}

func testSpecialKeys(t *testing.T, s storage.Storage) {
	keys := []string{"sp ace/f i le", "plus+eq=amp&", "ünï/çødé", "q?x#y%20z", "dots.in.name/..x"}
	for _, k := range keys {
		put(t, s, k, []byte(k))
	}
	for _, k := range keys {
		wantContent(t, s, k, []byte(k))
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if got := Keys(t, s, ""); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
}

func testLeadingSlash(t *testing.T, s storage.Storage) {
	put(t, s, "/lead/obj", []byte("x"))
	wantContent(t, s, "lead/obj", []byte("x"))
	if got := Keys(t, s, "/lead/"); !slices.Equal(got, []string{"lead/obj"}) {
		t.Fatalf("List(/lead/) = %q", got)
	}
}

func testConcurrentPuts(t *testing.T, s storage.Storage) {
	const n = 8
	data := make([][]byte, n)
	for i := range data {
		data[i] = RandomBytes(t, 50<<10+i)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("conc/%d", i)
			if i%2 == 0 {
				errs[i] = s.Put(context.Background(), key, bytes.NewReader(data[i]), int64(len(data[i])))
			} else {
				errs[i] = s.Put(context.Background(), key, OnlyReader{bytes.NewReader(data[i])}, -1)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Put %d: %v", i, errs[i])
		}
		wantContent(t, s, fmt.Sprintf("conc/%d", i), data[i])
	}
}

// testInvalidKeys: keys that could leave the prefix are refused before any
// request, as permanent errors (never retried, never "not found").
func testInvalidKeys(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	for _, key := range []string{"", "/", "../x", "wal_005/../x", "a/./b", "a\x00b"} {
		for op, err := range map[string]error{
			"Put":  s.Put(ctx, key, strings.NewReader("x"), 1),
			"Get":  func() error { _, err := s.Get(ctx, key); return err }(),
			"Stat": func() error { _, err := s.Stat(ctx, key); return err }(),
		} {
			if !errors.Is(err, storage.ErrInvalidKey) || storage.IsTransient(err) {
				t.Errorf("%s(%q): %v, want a permanent invalid key error", op, key, err)
			}
		}
	}
	if keys := Keys(t, s, ""); len(keys) != 0 {
		t.Fatalf("invalid keys stored objects: %q", keys)
	}
}

func creator(t *testing.T, s storage.Storage) storage.Creator {
	c, ok := s.(storage.Creator)
	if !ok {
		t.Skipf("%T does not implement storage.Creator", s)
	}
	return c
}

func testCreate(t *testing.T, s storage.Storage) {
	c := creator(t, s)
	ctx := context.Background()
	if err := c.Create(ctx, "c/k", strings.NewReader("first"), 5); err != nil {
		t.Fatalf("Create on a free key: %v", err)
	}
	for _, r := range []io.Reader{strings.NewReader("second"), OnlyReader{strings.NewReader("second")}} {
		err := c.Create(ctx, "c/k", r, -1)
		if !errors.Is(err, storage.ErrExists) || storage.IsTransient(err) {
			t.Fatalf("Create on a taken key: %v, want ErrExists", err)
		}
		if !strings.Contains(err.Error(), "c/k") {
			t.Errorf("error %q does not name the key", err)
		}
	}
	wantContent(t, s, "c/k", []byte("first"))
	if err := c.Create(ctx, "c/fail", &failingReader{n: 1000, err: errors.New("source broke")}, -1); err == nil {
		t.Fatal("Create from a failing reader succeeded")
	}
	wantAbsent(t, s, "c/fail")
	if keys := Keys(t, s, ""); !slices.Equal(keys, []string{"c/k"}) {
		t.Fatalf("keys: %q", keys)
	}
}

// testConcurrentCreates races creators of one key with different contents:
// exactly one wins, every other one gets ErrExists, and the object holds the
// winner's bytes.
func testConcurrentCreates(t *testing.T, s storage.Storage) {
	c := creator(t, s)
	const n = 6
	for round := range 3 {
		key := fmt.Sprintf("race/%d", round)
		data := make([][]byte, n)
		for i := range data {
			data[i] = RandomBytes(t, 64<<10)
		}
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = c.Create(context.Background(), key, bytes.NewReader(data[i]), int64(len(data[i])))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: creators %d and %d both succeeded", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, storage.ErrExists):
				t.Fatalf("round %d: creator %d: %v, want ErrExists", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no creator succeeded", round)
		}
		wantContent(t, s, key, data[winner])
	}
}

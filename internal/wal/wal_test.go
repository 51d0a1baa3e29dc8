package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/bufpool"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
)

// memStore is an in-memory Storage with fault injection, for the rules
// that real servers make hard to provoke on demand.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	gets    []string
	// failGets makes the next n Gets fail with a storage error.
	failGets int
	// failBodyAfter cuts every body after that many bytes with an error.
	failBodyAfter int
	// slowKeys delays the Put of those keys (a slow foreground upload).
	slowKeys map[string]time.Duration
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func (m *memStore) Put(_ context.Context, key string, r io.Reader, size int64) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if d := m.slowKeys[key]; d > 0 {
		time.Sleep(d)
	}
	if size >= 0 && int64(len(b)) != size {
		return fmt.Errorf("size %d, body %d", size, len(b))
	}
	m.mu.Lock()
	m.objects[key] = b
	m.mu.Unlock()
	return nil
}

type failingReader struct {
	r    io.Reader
	left int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}

func (m *memStore) Get(_ context.Context, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets = append(m.gets, key)
	if m.failGets > 0 {
		m.failGets--
		return nil, errors.New("503 Service Unavailable")
	}
	b, ok := m.objects[key]
	if !ok {
		return nil, storage.NotFoundError("mem://", key)
	}
	var r io.Reader = bytes.NewReader(b)
	if m.failBodyAfter > 0 {
		r = &failingReader{r: r, left: m.failBodyAfter}
	}
	return io.NopCloser(r), nil
}

func (m *memStore) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[key]
	if !ok {
		return storage.ObjectInfo{}, storage.NotFoundError("mem://", key)
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(b))}, nil
}

func (m *memStore) List(_ context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	m.mu.Lock()
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(storage.ObjectInfo{Key: k}); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Delete(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.objects, k)
	}
	return nil
}

func (m *memStore) String() string { return "mem://" }

func (m *memStore) keys() []string {
	var ks []string
	m.List(context.Background(), "", func(o storage.ObjectInfo) error { ks = append(ks, o.Key); return nil })
	return ks
}

const testSegSize = 1 << 20

func setup(t *testing.T, method string) (*memStore, *Archiver, *Restorer) {
	t.Helper()
	m, err := codec.ByName(method)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	r := &Restorer{Store: st, SegmentSize: testSegSize, Retries: 3, RetryTimeout: 10 * time.Second}
	a := &Archiver{
		Store:       st,
		NewEncoder:  func() *pipe.Encoder { return pipe.NewEncoder(m, nil) },
		Pool:        bufpool.New(64 << 10),
		SegmentSize: testSegSize,
		Restorer:    r,
	}
	return st, a, r
}

func segmentBytes(seed uint64) []byte {
	b := make([]byte, testSegSize)
	rng := rand.New(rand.NewPCG(seed, 7))
	// WAL-like: a page magic, then half random, half zeros.
	for i := 4; i < len(b)/2; i++ {
		b[i] = byte(rng.IntN(256))
	}
	b[0], b[1] = 0x10, 0xD1
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPushFetchRoundTrip(t *testing.T) {
	for _, c := range []struct{ method, buffering string }{
		{"lz4", BufferMemory}, {"lz4", BufferRecompress}, {"lz4", BufferStream},
		{"zstd", BufferRecompress}, {"lzma", BufferMemory}, {"brotli", BufferRecompress},
		{"none", BufferMemory}, {"none", BufferStream},
	} {
		method := c.method
		t.Run(method+"/"+c.buffering, func(t *testing.T) {
			st, a, r := setup(t, method)
			a.Buffering = c.buffering
			dir := t.TempDir()
			name := "000000010000000000000003"
			data := segmentBytes(3)
			writeFile(t, filepath.Join(dir, name), data)
			if err := a.Push(context.Background(), filepath.Join(dir, name), PushOptions{}); err != nil {
				t.Fatal(err)
			}
			keys := st.keys()
			if len(keys) != 1 {
				t.Fatalf("keys %v", keys)
			}
			// WAL-G names an uncompressed object without extension or dot.
			m, _ := codec.ByName(method)
			want := Folder + name
			if m.Ext() != "" {
				want += "." + m.Ext()
			}
			if keys[0] != want {
				t.Fatalf("stored %q, want %q", keys[0], want)
			}
			dest := filepath.Join(dir, "RECOVERYXLOG")
			if err := r.Fetch(context.Background(), name, dest); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(dest)
			if !bytes.Equal(got, data) {
				t.Fatal("fetched content differs")
			}
			assertNoTemp(t, dir)
		})
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestFetchNotFoundProbesEveryExtension(t *testing.T) {
	st, _, r := setup(t, "lz4")
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	err := r.Fetch(context.Background(), "000000010000000000000009", dest)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("got %v, want not found", err)
	}
	var probed []string
	for _, k := range st.gets {
		probed = append(probed, strings.TrimPrefix(k, Folder+"000000010000000000000009"))
	}
	// WAL-G's order for a release build, then the bare name.
	want := []string{".lz4", ".lzma", ".gz", ".", ".br", ".lzo", ".zst", ""}
	if strings.Join(probed, " ") != strings.Join(want, " ") {
		t.Fatalf("probed %q, want %q", probed, want)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("a failed fetch left a file at the destination")
	}
}

func TestFetchStorageErrorStopsProbingAndRetries(t *testing.T) {
	st, a, r := setup(t, "zstd")
	dir := t.TempDir()
	name := "000000010000000000000004"
	data := segmentBytes(4)
	writeFile(t, filepath.Join(dir, name), data)
	if err := a.PushFile(context.Background(), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	st.gets = nil
	st.failGets = 2 // the first two attempts fail at their first probe
	dest := filepath.Join(dir, "RECOVERYXLOG")
	if err := r.Fetch(context.Background(), name, dest); err != nil {
		t.Fatal(err)
	}
	// Each failed attempt stopped at the first probe: an outage must not be
	// mistaken for "not archived".
	if st.gets[0] != st.gets[1] || !strings.HasSuffix(st.gets[0], ".lz4") {
		t.Fatalf("probes %v", st.gets)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}

	// A storage that keeps failing: an error that is not "not found".
	st.failGets = 100
	r.Retries = 2
	os.Remove(dest)
	err := r.Fetch(context.Background(), name, dest)
	if err == nil || errors.Is(err, storage.ErrNotFound) || !errors.Is(err, ErrStorage) {
		t.Fatalf("got %v, want a storage error", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("failed fetch left a file")
	}
}

func TestFetchBodyCutMidwayLeavesNothing(t *testing.T) {
	st, a, r := setup(t, "lz4")
	dir := t.TempDir()
	name := "000000010000000000000005"
	writeFile(t, filepath.Join(dir, name), segmentBytes(5))
	if err := a.PushFile(context.Background(), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	st.failBodyAfter = 1000
	r.Retries = 1
	dest := filepath.Join(dir, "RECOVERYXLOG")
	err := r.Fetch(context.Background(), name, dest)
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("got %v, want storage error (retryable)", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("partial file left at destination")
	}
	assertNoTemp(t, dir)
}

func TestFetchCorruptObjectIsNotRetriedAndNotWritten(t *testing.T) {
	st, a, r := setup(t, "lz4")
	dir := t.TempDir()
	name := "000000010000000000000006"
	writeFile(t, filepath.Join(dir, name), segmentBytes(6))
	if err := a.PushFile(context.Background(), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	key := Folder + name + ".lz4"
	obj := st.objects[key]
	obj[len(obj)/2] ^= 0xFF
	st.gets = nil
	dest := filepath.Join(dir, "RECOVERYXLOG")
	err := r.Fetch(context.Background(), name, dest)
	if err == nil || errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), key) {
		t.Fatalf("got %v, want a decode error naming %s", err, key)
	}
	if len(st.gets) != 1 {
		t.Fatalf("corrupt object fetched %d times; decode errors must not be retried", len(st.gets))
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("corrupt data written to destination")
	}
}

func TestOverwritePrevention(t *testing.T) {
	_, a, _ := setup(t, "lz4")
	dir := t.TempDir()
	hist := filepath.Join(dir, "00000002.history")
	writeFile(t, hist, []byte("1\t0/3000000\tno recovery target specified\n"))
	ctx := context.Background()
	if err := a.Push(ctx, hist, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	// Same content: success without upload.
	if err := a.Push(ctx, hist, PushOptions{}); err != nil {
		t.Fatalf("same content: %v", err)
	}
	// Different content: refused, for .history even without the setting.
	writeFile(t, hist, []byte("1\t0/4000000\tother\n"))
	err := a.Push(ctx, hist, PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "contents differ") {
		t.Fatalf("got %v, want contents differ", err)
	}
	// Segments are overwritten unless WALG_PREVENT_WAL_OVERWRITE.
	seg := filepath.Join(dir, "000000010000000000000001")
	writeFile(t, seg, segmentBytes(1))
	if err := a.Push(ctx, seg, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, seg, segmentBytes(2))
	if err := a.Push(ctx, seg, PushOptions{}); err != nil {
		t.Fatalf("overwrite without prevention: %v", err)
	}
	a.PreventOverwrite = true
	if err := a.Push(ctx, seg, PushOptions{}); err != nil {
		t.Fatalf("same content with prevention: %v", err)
	}
	writeFile(t, seg, segmentBytes(3))
	if err := a.Push(ctx, seg, PushOptions{}); err == nil {
		t.Fatal("different content accepted with WALG_PREVENT_WAL_OVERWRITE")
	}
}

func TestBackgroundLookAhead(t *testing.T) {
	st, a, _ := setup(t, "lz4")
	pgwal := t.TempDir()
	status := filepath.Join(pgwal, "archive_status")
	os.Mkdir(status, 0o700)
	names := []string{"000000010000000000000010", "000000010000000000000011", "000000010000000000000012", "000000010000000000000013", "00000002.history"}
	for i, n := range names {
		writeFile(t, filepath.Join(pgwal, n), segmentBytes(uint64(i)))
		writeFile(t, filepath.Join(status, n+".ready"), nil)
	}
	markers := MarkerDir("", filepath.Join(pgwal, names[0]))
	opts := PushOptions{Concurrency: 3, BackgroundLimit: 32, MarkerDir: markers, ReadyRename: false}
	// Background workers only take files while the foreground upload runs:
	// make it last long enough for them to take every .ready file.
	st.slowKeys = map[string]time.Duration{Folder + names[0] + ".lz4": 700 * time.Millisecond}
	ctx := context.Background()
	if err := a.Push(ctx, filepath.Join(pgwal, names[0]), opts); err != nil {
		t.Fatal(err)
	}
	// The sequence after the pushed segment was taken by phase 1, the
	// history file by phase 2.
	for _, n := range names[1:] {
		if _, err := os.Stat(filepath.Join(markers, MarkerName(n))); err != nil {
			t.Fatalf("no marker for %s: %v (keys %v)", n, err, st.keys())
		}
		if _, ok := st.objects[Folder+n+".lz4"]; !ok {
			t.Fatalf("%s marked but not stored", n)
		}
	}
	// PostgreSQL's later call for a marked file returns at once and
	// consumes the marker.
	before := len(st.gets)
	if err := a.Push(ctx, filepath.Join(pgwal, names[1]), opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(markers, names[1])); !os.IsNotExist(err) {
		t.Fatal("marker not consumed")
	}
	_ = before
}

func TestBackgroundUploadFailureLeavesNoMarker(t *testing.T) {
	_, a, _ := setup(t, "lz4")
	pgwal := t.TempDir()
	status := filepath.Join(pgwal, "archive_status")
	os.Mkdir(status, 0o700)
	first, second := "000000010000000000000020", "000000010000000000000021"
	writeFile(t, filepath.Join(pgwal, first), segmentBytes(1))
	// .ready for the next one, but its file is unreadable (missing).
	writeFile(t, filepath.Join(status, second+".ready"), nil)
	markers := filepath.Join(pgwal, "walg_data", "walg_archive_status")
	opts := PushOptions{Concurrency: 2, BackgroundLimit: 32, MarkerDir: markers}
	if err := a.Push(context.Background(), filepath.Join(pgwal, first), opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(markers, second)); !os.IsNotExist(err) {
		t.Fatal("marker written for a failed background upload")
	}
}

func TestPrefetchAndTake(t *testing.T) {
	_, a, r := setup(t, "lz4")
	src := t.TempDir()
	var datas [][]byte
	for i := 0; i < 4; i++ {
		seg := Segment{1, uint64(0x30 + i)}
		d := segmentBytes(uint64(i + 100))
		datas = append(datas, d)
		p := filepath.Join(src, seg.Name(testSegSize))
		writeFile(t, p, d)
		if err := a.PushFile(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	pgwal := t.TempDir()
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	pdir := PrefetchDir("", dest)
	first := Segment{1, 0x30}.Name(testSegSize)
	if err := r.Prefetch(context.Background(), first, pdir, 5); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		name := Segment{1, uint64(0x30 + i)}.Name(testSegSize)
		if !r.TakePrefetched(pdir, name, dest) {
			t.Fatalf("%s not prefetched", name)
		}
		got, _ := os.ReadFile(dest)
		if !bytes.Equal(got, datas[i]) {
			t.Fatalf("%s: prefetched content differs", name)
		}
	}
	// A wrong-sized prefetched file is not used.
	bad := Segment{1, 0x40}.Name(testSegSize)
	writeFile(t, filepath.Join(pdir, bad), []byte("short"))
	if r.TakePrefetched(pdir, bad, dest) {
		t.Fatal("used a prefetched file of the wrong size")
	}
}

// The regenerating body behaves like a file to an HTTP client: measured by
// seeking, read, rewound for a retry, read again identically.
func TestRegenReaderRetries(t *testing.T) {
	m, _ := codec.ByName("lz4")
	enc := pipe.NewEncoder(m, nil)
	path := filepath.Join(t.TempDir(), "000000010000000000000001")
	writeFile(t, path, segmentBytes(9))
	var counted countingWriter
	f, _ := os.Open(path)
	enc.Encode(&counted, f)
	f.Close()
	r := &regenReader{ctx: context.Background(), enc: enc, path: path, rawSize: testSegSize, size: counted.n}
	defer r.Close()
	end, err := r.Seek(0, io.SeekEnd)
	if err != nil || end != counted.n {
		t.Fatalf("seek end %d %v", end, err)
	}
	r.Seek(0, io.SeekStart)
	first := make([]byte, 1000)
	io.ReadFull(r, first) // a failed attempt after 1000 bytes
	r.Seek(0, io.SeekStart)
	all, err := io.ReadAll(r)
	if err != nil || int64(len(all)) != counted.n || !bytes.Equal(all[:1000], first) {
		t.Fatalf("reread: %d bytes, %v", len(all), err)
	}
	// The file grows between the passes: the upload must fail, not send
	// a body that does not match its length.
	writeFile(t, path, append(segmentBytes(9), 1, 2, 3))
	r.Seek(0, io.SeekStart)
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("a file that changed between the passes was not detected")
	}
}

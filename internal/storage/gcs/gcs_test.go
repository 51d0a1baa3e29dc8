package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/gcsserver"
)

// emulator starts fake-gcs-server.
func emulator(t testing.TB) *gcsserver.Server {
	return gcsserver.Start(t)
}

var prefixes atomic.Int64

func open(t testing.TB, srv *gcsserver.Server, o Options) *Storage {
	t.Helper()
	if o.Bucket == "" {
		o.Bucket = srv.Bucket
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("t%d/archive", prefixes.Add(1))
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 2
	}
	if o.EmulatorHost == "" && o.endpoint == "" {
		o.EmulatorHost = srv.Host
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	srv := emulator(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage { return open(t, srv, Options{}) })
	// Small chunks: bodies of unknown length span several chunks of a
	// resumable upload.
	t.Run("SmallChunks", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage {
			return open(t, srv, Options{ChunkSize: ChunkAlign})
		})
	})
}

// TestBucketRoot: with no prefix, keys are object names at the bucket's
// root, and the objects seen by the server are exactly the keys.
func TestBucketRoot(t *testing.T) {
	srv := emulator(t)
	if err := srv.CreateBucket(context.Background(), "rootonly"); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), Options{Bucket: "rootonly", EmulatorHost: srv.Host})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := storagetest.RandomBytes(t, 3*ChunkAlign+5)
	if err := s.Put(context.Background(), "wal_005/x.lz4", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
		t.Fatal(err)
	}
	srv.Bucket = "rootonly"
	objs, err := srv.Objects(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs["wal_005/x.lz4"] != int64(len(data)) {
		t.Fatalf("server holds %v", objs)
	}
	if s.String() != "gs://rootonly" {
		t.Fatalf("String() = %q", s.String())
	}
}

// TestMissingBucket: a wrong bucket is a permanent error naming it, never
// "not found" (which wal-fetch would take for the end of the WAL).
func TestMissingBucket(t *testing.T) {
	srv := emulator(t)
	s := open(t, srv, Options{Bucket: "no-such-bucket"})
	ctx := context.Background()
	_, err := s.Get(ctx, "wal_005/000000010000000000000001.lz4")
	if err == nil || errors.Is(err, storage.ErrNotFound) || storage.IsTransient(err) {
		t.Fatalf("Get from a missing bucket: %v, want a permanent error", err)
	}
	if !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("error %q does not name the bucket", err)
	}
	err = s.Put(ctx, "x", strings.NewReader("x"), 1)
	if err == nil || storage.IsTransient(err) {
		t.Fatalf("Put into a missing bucket: %v, want a permanent error", err)
	}
}

// TestUnreachable: a stopped server gives a transient error promptly,
// with the retries bounded by MaxRetries.
func TestUnreachable(t *testing.T) {
	srv := emulator(t)
	s := open(t, srv, Options{MaxRetries: -1})
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Stat(ctx, "x")
	if err == nil || errors.Is(err, storage.ErrNotFound) || !storage.IsTransient(err) {
		t.Fatalf("Stat against a stopped server: %v, want a transient error", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Stat took until the test's deadline: %v", err)
	}
	err = s.Put(ctx, "x", strings.NewReader("data"), 4)
	if err == nil || !storage.IsTransient(err) || ctx.Err() != nil {
		t.Fatalf("Put against a stopped server: %v", err)
	}
}

func TestOptionsFromSettings(t *testing.T) {
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	get := func(m map[string]string) func(string) (string, bool) {
		return func(n string) (string, bool) { v, ok := m[n]; return v, ok }
	}
	o, err := OptionsFromSettings(get(map[string]string{
		"WALG_GS_PREFIX":      "gs://bkt/some/path/",
		"GCS_CONTEXT_TIMEOUT": "30",
		"GCS_ENCRYPTION_KEY":  key,
		"GCS_MAX_CHUNK_SIZE":  "1000000",
		"GCS_MAX_RETRIES":     "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if o.Bucket != "bkt" || o.Prefix != "some/path" || o.ContextTimeout != 30*time.Second ||
		len(o.EncryptionKey) != 32 || o.ChunkSize != 1000000 || o.MaxRetries != -1 {
		t.Fatalf("options %+v", o)
	}
	d, err := o.withDefaults()
	if err != nil || d.ChunkSize != 4*ChunkAlign || d.MaxRetries != 0 {
		t.Fatalf("defaults: %+v, %v", d, err)
	}
	if m := o.Memory(); m.UnknownSize != 4*ChunkAlign || m.Upload != requestBytes {
		t.Fatalf("memory %+v", m)
	}

	for prefix, want := range map[string][2]string{
		"gs://b//wal-e/":  {"wal-e", "/wal-e"},
		"gs://b/a//b":     {"a//b", "a//b"},
		"gs://b":          {"", ""},
		"gs://b/x/":       {"x", "x"},
		"gs://b//lead//x": {"lead//x", "/lead//x"},
	} {
		for i, normalize := range []bool{true, false} {
			_, p, err := ParsePrefix(prefix, normalize)
			if err != nil || p != want[i] {
				t.Errorf("ParsePrefix(%q, %v) = %q, %v; want %q", prefix, normalize, p, err, want[i])
			}
		}
	}

	_, err = OptionsFromSettings(get(map[string]string{
		"WALG_GS_PREFIX":       "s3://bkt/x",
		"GCS_CONTEXT_TIMEOUT":  "soon",
		"GCS_ENCRYPTION_KEY":   "c2hvcnQ=",
		"GCS_MAX_CHUNK_SIZE":   "-1",
		"GCS_MAX_RETRIES":      "many",
		"GCS_NORMALIZE_PREFIX": "perhaps",
	}))
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, name := range []string{"WALG_GS_PREFIX", "GCS_CONTEXT_TIMEOUT", "GCS_ENCRYPTION_KEY", "GCS_MAX_CHUNK_SIZE", "GCS_MAX_RETRIES", "GCS_NORMALIZE_PREFIX"} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, name+": ")
		}
		if !found {
			t.Errorf("no line for %s in %q", name, err)
		}
	}
	if strings.Contains(err.Error(), "c2hvcnQ=") {
		t.Errorf("error prints the encryption key: %q", err)
	}
	if _, err := OptionsFromSettings(get(nil)); err == nil || !strings.Contains(err.Error(), "WALG_GS_PREFIX") {
		t.Errorf("no prefix: %v", err)
	}
}

// BenchmarkPut measures what one upload allocates (B/op): a seekable body
// of known size goes out without a buffer; a body of unknown length is
// buffered one chunk (DefaultChunkSize) at a time.
func BenchmarkPut(b *testing.B) {
	srv := emulator(b)
	data := bytes.Repeat([]byte("0123456789abcdef"), 16<<20/16)
	for _, bc := range []struct {
		name string
		body func() (io.Reader, int64)
	}{
		{"known-size-seekable-16MiB", func() (io.Reader, int64) { return bytes.NewReader(data), int64(len(data)) }},
		{"unknown-size-16MiB", func() (io.Reader, int64) { return storagetest.OnlyReader{R: bytes.NewReader(data)}, -1 }},
		{"known-size-unseekable-1MiB", func() (io.Reader, int64) {
			return storagetest.OnlyReader{R: bytes.NewReader(data[:1<<20])}, 1 << 20
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := open(b, srv, Options{})
			b.ReportAllocs()
			runtime.GC()
			debug.FreeOSMemory()
			testenv.ResetPeakRSS()
			_, before := testenv.PeakRSS()
			for i := 0; b.Loop(); i++ {
				r, n := bc.body()
				if err := s.Put(context.Background(), fmt.Sprintf("o%d", i%4), r, n); err != nil {
					b.Fatal(err)
				}
			}
			// Peak RSS growth covers buffers the heap figures miss (mmap).
			peak, _ := testenv.PeakRSS()
			b.ReportMetric(float64(peak-before)/(1<<20), "peak-RSS-growth-MiB")
		})
	}
}

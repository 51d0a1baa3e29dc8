package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// serverOptions builds Options the way tusk does, from the settings the
// server hands out, with a private prefix.
func serverOptions(t *testing.T, srv *s3server.Server, prefix string) Options {
	t.Helper()
	o, err := OptionsFromSettings(srv.Setting)
	if err != nil {
		t.Fatal(err)
	}
	o.Prefix = prefix
	o.MaxRetries = 2
	return o
}

func newStorage(t *testing.T, o Options) *Storage {
	t.Helper()
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var prefixSeq atomic.Int64

func uniquePrefix(name string) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(name, "/", "_"), prefixSeq.Add(1))
}

func TestContractHTTP(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return newStorage(t, serverOptions(t, srv, uniquePrefix(t.Name())))
	})
}

func TestContractTLS(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{TLS: true})
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return newStorage(t, serverOptions(t, srv, uniquePrefix(t.Name())))
	})
}

func TestContractBucketRoot(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		// A fresh bucket per subtest: the storage has no prefix at all.
		bucket := fmt.Sprintf("root%d", prefixSeq.Add(1))
		if _, err := srv.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Fatal(err)
		}
		o := serverOptions(t, srv, "")
		o.Bucket = bucket
		return newStorage(t, o)
	})
}

func TestContractListObjectsV1(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		o := serverOptions(t, srv, uniquePrefix(t.Name()))
		o.UseListObjectsV1 = true
		return newStorage(t, o)
	})
}

func TestTLSWithoutCAFails(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{TLS: true})
	o := serverOptions(t, srv, "p")
	o.CACertFile = ""
	s := newStorage(t, o)
	_, err := s.Stat(context.Background(), "x")
	if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Stat without the CA: %v", err)
	}
}

// headETag returns the stored object's ETag, which tells a multipart object
// ("...-N") from a single PUT.
func headETag(t *testing.T, srv *s3server.Server, key string) string {
	t.Helper()
	out, err := srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

func pendingUploads(t *testing.T, srv *s3server.Server) int {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

// countingBuffers wraps a pool and tracks buffers handed out.
type countingBuffers struct {
	inner     Buffers
	out, peak atomic.Int64
}

func (c *countingBuffers) took() {
	n := c.out.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (c *countingBuffers) Get(ctx context.Context) ([]byte, error) {
	b, err := c.inner.Get(ctx)
	if err == nil {
		c.took()
	}
	return b, err
}

func (c *countingBuffers) TryGet() ([]byte, bool) {
	b, ok := c.inner.TryGet()
	if ok {
		c.took()
	}
	return b, ok
}

func (c *countingBuffers) Put(b []byte) {
	c.out.Add(-1)
	c.inner.Put(b)
}

func TestMultipartUnknownSize(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	for _, inFlight := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("inflight%d", inFlight), func(t *testing.T) {
			bufs := &countingBuffers{inner: newPool(MinPartSize, 8)}
			o := serverOptions(t, srv, uniquePrefix(t.Name()))
			o.PartSize = MinPartSize
			o.PartsInFlight = inFlight
			o.Buffers = bufs
			s := newStorage(t, o)
			if got, want := s.PutMemoryBound(), int64(inFlight*MinPartSize); got != want {
				t.Fatalf("PutMemoryBound = %d, want %d", got, want)
			}
			data := storagetest.RandomBytes(t, 12<<20+3)
			ctx := context.Background()
			if err := s.Put(ctx, "big", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
				t.Fatal(err)
			}
			if got := storagetest.ReadAll(t, s, "big"); !bytes.Equal(got, data) {
				t.Fatalf("content differs (%d bytes read)", len(got))
			}
			if etag := headETag(t, srv, o.Prefix+"/big"); !strings.HasSuffix(etag, "-3") {
				t.Fatalf("ETag %q: want a 3-part multipart object", etag)
			}
			if peak := bufs.peak.Load(); peak > int64(inFlight) || peak < 1 {
				t.Fatalf("peak buffers held %d, want 1..%d", peak, inFlight)
			}
			if n := bufs.out.Load(); n != 0 {
				t.Fatalf("%d buffers not returned", n)
			}
			// Known size, unseekable, exact multiple of the part size.
			data = data[:2*MinPartSize]
			if err := s.Put(ctx, "exact", storagetest.OnlyReader{R: bytes.NewReader(data)}, int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if got := storagetest.ReadAll(t, s, "exact"); !bytes.Equal(got, data) {
				t.Fatal("content differs")
			}
			if etag := headETag(t, srv, o.Prefix+"/exact"); !strings.HasSuffix(etag, "-2") {
				t.Fatalf("ETag %q: want a 2-part multipart object", etag)
			}
			if pendingUploads(t, srv) != 0 {
				t.Fatal("multipart uploads left open")
			}
		})
	}
}

func TestOnePartIsASinglePut(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "one")
	o.PartSize = MinPartSize
	s := newStorage(t, o)
	// Exactly one part of unknown size: the probe read finds EOF and the
	// object goes up with one PutObject.
	data := storagetest.RandomBytes(t, MinPartSize)
	if err := s.Put(context.Background(), "exact", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
		t.Fatal(err)
	}
	if etag := headETag(t, srv, "one/exact"); strings.Contains(etag, "-") {
		t.Fatalf("ETag %q: want a single PUT", etag)
	}
	if got := storagetest.ReadAll(t, s, "exact"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if s.MemoryBound() != DefaultMaxBuffers*MinPartSize {
		t.Fatalf("MemoryBound %d", s.MemoryBound())
	}
}

func TestOwnPoolIsReused(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "reuse")
	o.PartSize = MinPartSize
	o.MaxBuffers = 2
	s := newStorage(t, o)
	p := s.bufs.(*pool)
	ctx := context.Background()
	data := storagetest.RandomBytes(t, 6<<20)
	for i := range 2 {
		if err := s.Put(ctx, fmt.Sprintf("o%d", i), storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
			t.Fatal(err)
		}
	}
	// Buffers were allocated at most once each and all came back.
	if len(p.tokens) > 2 || len(p.free) != len(p.tokens) {
		t.Fatalf("pool: %d allocated, %d free", len(p.tokens), len(p.free))
	}
	// Concurrent Puts share the two buffers without deadlock.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		wg.Go(func() {
			errs <- s.Put(ctx, fmt.Sprintf("c%d", i), storagetest.OnlyReader{R: bytes.NewReader(data)}, -1)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(p.tokens) > 2 || len(p.free) != len(p.tokens) {
		t.Fatalf("pool after concurrent puts: %d allocated, %d free", len(p.tokens), len(p.free))
	}
}

// cancelAfter cancels after n bytes and keeps producing data.
type cancelAfter struct {
	cancel context.CancelFunc
	n, pos int
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.pos >= c.n {
		c.cancel()
	}
	m := min(len(p), 64<<10)
	c.pos += m
	return m, nil
}

func TestCancelledMultipartLeavesNothing(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "cancel")
	o.PartSize = MinPartSize
	s := newStorage(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := s.Put(ctx, "obj", &cancelAfter{cancel: cancel, n: 7 << 20}, -1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put: %v, want context.Canceled", err)
	}
	if ok, err := storage.Exists(context.Background(), s, "obj"); ok || err != nil {
		t.Fatalf("Exists: %v %v", ok, err)
	}
	if n := pendingUploads(t, srv); n != 0 {
		t.Fatalf("%d multipart uploads left after cancel", n)
	}
	if p := s.bufs.(*pool); len(p.free) != len(p.tokens) {
		t.Fatalf("buffers not returned: %d allocated, %d free", len(p.tokens), len(p.free))
	}
}

func TestFailingReaderAbortsMultipart(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "fail")
	o.PartSize = MinPartSize
	s := newStorage(t, o)
	boom := errors.New("source broke")
	r := io.MultiReader(bytes.NewReader(make([]byte, 11<<20)), errReader{boom})
	if err := s.Put(context.Background(), "obj", r, -1); !errors.Is(err, boom) {
		t.Fatalf("Put: %v", err)
	}
	if n := pendingUploads(t, srv); n != 0 {
		t.Fatalf("%d multipart uploads left", n)
	}
	if keys := storagetest.Keys(t, s, ""); len(keys) != 0 {
		t.Fatalf("objects: %q", keys)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestSeekableKnownSizeFromOffset(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	s := newStorage(t, serverOptions(t, srv, "seek"))
	r := strings.NewReader("skip-me:payload")
	if _, err := r.Seek(8, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), "k", r, 7); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadAll(t, s, "k"); string(got) != "payload" {
		t.Fatalf("got %q", got)
	}
	if err := s.Put(context.Background(), "bad", strings.NewReader("12345"), 9); err == nil || !strings.Contains(err.Error(), "expected 9") {
		t.Fatalf("Put with a wrong size: %v", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "creds")
	o.SecretAccessKey = "wrong" + o.SecretAccessKey
	o.MaxRetries = -1
	s := newStorage(t, o)
	ctx := context.Background()
	err := s.Put(ctx, "k", strings.NewReader("x"), 1)
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Put: %v", err)
	}
	if !strings.Contains(err.Error(), "s3://"+srv.Bucket+"/creds/k") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("unclear error: %v", err)
	}
	for _, f := range []func() error{
		func() error { _, err := s.Get(ctx, "k"); return err },
		func() error { _, err := s.Stat(ctx, "k"); return err },
		func() error { return s.List(ctx, "", func(storage.ObjectInfo) error { return nil }) },
	} {
		if err := f(); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("with wrong credentials: %v", err)
		}
	}
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachableEndpoint(t *testing.T) {
	s := newStorage(t, Options{
		Bucket: "b", Endpoint: "http://" + closedPort(t), ForcePathStyle: true,
		AccessKeyID: "a", SecretAccessKey: "b", MaxRetries: 1,
	})
	if s.Region() != "us-east-1" {
		t.Fatalf("region %q for a custom endpoint", s.Region())
	}
	ctx := context.Background()
	start := time.Now()
	_, err := s.Get(ctx, "wal_005/x")
	if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Get: %v", err)
	}
	if _, err := s.Stat(ctx, "x"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat: %v", err)
	}
	if err := s.Put(ctx, "x", storagetest.OnlyReader{R: strings.NewReader("x")}, -1); err == nil {
		t.Fatal("Put succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestServerOutageAndRecovery(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "outage")
	o.MaxRetries = 1
	s := newStorage(t, o)
	ctx := context.Background()
	if err := s.Put(ctx, "before", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := s.Get(ctx, "before"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get during outage: %v", err)
	}
	if err := s.Put(ctx, "during", strings.NewReader("x"), 1); err == nil {
		t.Fatal("Put during outage succeeded")
	}
	srv.Restart()
	if err := s.Put(ctx, "after", strings.NewReader("y"), 1); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	if got := storagetest.Keys(t, s, ""); strings.Join(got, ",") != "after,before" {
		t.Fatalf("keys: %q", got)
	}
}

// A server killed while a single PUT and a multipart upload are in
// flight: see storagetest.KilledMidUpload.
func TestServerKilledMidUpload(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{TLS: true})
	o := serverOptions(t, srv, "killed")
	o.MaxRetries = 1
	o.PartSize = 5 << 20
	storagetest.KilledMidUpload(t, newStorage(t, o), storagetest.Server{
		Kill:    srv.Kill,
		Restart: srv.Relaunch,
	}, 24<<20)
}

func TestMissingBucketIsNotNotFound(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "")
	o.Bucket = "no-such-bucket"
	s := newStorage(t, o)
	ctx := context.Background()
	_, err := s.Get(ctx, "wal_005/000000010000000000000001.lz4")
	if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("Get: %v", err)
	}
	_, err = s.Stat(ctx, "wal_005/000000010000000000000001.lz4")
	if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Stat: %v", err)
	}
}

func TestDeleteManyBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: uploads 1005 objects")
	}
	srv := s3server.Start(t, s3server.Options{})
	s := newStorage(t, serverOptions(t, srv, "many"))
	ctx := context.Background()
	const n = deleteBatch + 5
	keys := make([]string, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%04d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.Put(ctx, keys[i], strings.NewReader("x"), 1); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "other", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if got := len(storagetest.Keys(t, s, "k")); got != n {
		t.Fatalf("listed %d keys, want %d (paging)", got, n)
	}
	if err := s.Delete(ctx, append(keys, "never-existed")...); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.Keys(t, s, ""); strings.Join(got, ",") != "other" {
		t.Fatalf("after delete: %d keys, first %q", len(got), got[:min(3, len(got))])
	}
}

func TestSSECustomerKeyAgainstServer(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "ssec")
	o.SSECustomerKey = []byte("0123456789abcdef0123456789abcdef")
	s := newStorage(t, o)
	ctx := context.Background()
	if err := s.Put(ctx, "k", strings.NewReader("secret"), 6); err != nil {
		t.Skipf("skipped: the test server refuses SSE-C (%v)", err)
	}
	plain := newStorage(t, serverOptions(t, srv, "ssec"))
	if _, err := plain.Get(ctx, "k"); err == nil {
		t.Skip("skipped: the test server accepts SSE-C headers but does not encrypt (headers are checked against a fake server instead)")
	}
	if got := storagetest.ReadAll(t, s, "k"); string(got) != "secret" {
		t.Fatalf("got %q", got)
	}
}

func TestSeekableUnknownSizeSkipsBuffers(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	bufs := &countingBuffers{inner: newPool(MinPartSize, 2)}
	o := serverOptions(t, srv, "seekunk")
	o.PartSize = MinPartSize
	o.Buffers = bufs
	s := newStorage(t, o)
	ctx := context.Background()
	// Larger than a part, yet a single PUT straight from the reader.
	data := storagetest.RandomBytes(t, MinPartSize+100)
	if err := s.Put(ctx, "mem", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if bufs.peak.Load() != 0 {
		t.Fatalf("%d buffers used for a seekable reader", bufs.peak.Load())
	}
	if etag := headETag(t, srv, "seekunk/mem"); strings.Contains(etag, "-") {
		t.Fatalf("ETag %q: want a single PUT", etag)
	}
	// A pipe is an *os.File that cannot seek: it goes through the buffers.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		pw.Write(data)
		pw.Close()
	}()
	defer pr.Close()
	if err := s.Put(ctx, "pipe", pr, -1); err != nil {
		t.Fatal(err)
	}
	if bufs.peak.Load() == 0 {
		t.Fatal("pipe upload used no buffer")
	}
	for _, k := range []string{"mem", "pipe"} {
		if got := storagetest.ReadAll(t, s, k); !bytes.Equal(got, data) {
			t.Fatalf("%s: content differs", k)
		}
	}
}

// TestCreateMultipart: the no-overwrite condition also holds for objects
// that go up in parts (it is sent with CompleteMultipartUpload), and a
// refused upload leaves no parts behind.
func TestCreateMultipart(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "createmp")
	o.PartSize = MinPartSize
	s := newStorage(t, o)
	ctx := context.Background()
	first := storagetest.RandomBytes(t, 2*MinPartSize+5)
	if err := s.Create(ctx, "big", storagetest.OnlyReader{R: bytes.NewReader(first)}, -1); err != nil {
		t.Fatal(err)
	}
	if etag := headETag(t, srv, "createmp/big"); !strings.HasSuffix(etag, "-3") {
		t.Fatalf("ETag %q: want a multipart object", etag)
	}
	second := storagetest.RandomBytes(t, 2*MinPartSize+5)
	err := s.Create(ctx, "big", storagetest.OnlyReader{R: bytes.NewReader(second)}, -1)
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if got := storagetest.ReadAll(t, s, "big"); !bytes.Equal(got, first) {
		t.Fatal("the first object was replaced")
	}
	if pendingUploads(t, srv) != 0 {
		t.Fatal("multipart uploads left open")
	}
}

// TestErrorClasses: refusals are permanent, outages transient.
func TestErrorClasses(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	o := serverOptions(t, srv, "classes")
	o.SecretAccessKey = "wrong-secret"
	o.MaxRetries = -1
	s := newStorage(t, o)
	if _, err := s.Get(context.Background(), "x"); err == nil || storage.IsTransient(err) {
		t.Errorf("Get with a wrong secret: %v, want a permanent error", err)
	}
	down := newStorage(t, Options{
		Bucket: "b", Endpoint: "http://" + closedPort(t), ForcePathStyle: true,
		AccessKeyID: "a", SecretAccessKey: "b", MaxRetries: -1,
	})
	if _, err := down.Get(context.Background(), "x"); err == nil || !storage.IsTransient(err) {
		t.Errorf("Get from a closed port: %v, want a transient error", err)
	}
}

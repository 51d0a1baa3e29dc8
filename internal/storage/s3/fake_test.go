package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
)

// fakeS3 answers just enough of the S3 protocol to observe the requests the
// backend sends; tests override responses with hook.
type fakeS3 struct {
	mu       sync.Mutex
	requests []recorded
	// hook may answer a request itself (returning true).
	hook func(w http.ResponseWriter, r *http.Request, body []byte) bool
	// started, when set, sees each request before its body is read.
	started func(r *http.Request)
	srv     *httptest.Server
}

type recorded struct {
	method, path string
	query        map[string][]string
	header       http.Header
	body         []byte
}

func newFake(t *testing.T) *fakeS3 {
	f := &fakeS3{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// newFakeTLS is newFake over HTTPS (bodies unsigned, so parts can stream);
// caFile is its certificate, for Options.CACertFile.
func newFakeTLS(t *testing.T) (f *fakeS3, caFile string) {
	f = &fakeS3{}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, caFile
}

func (f *fakeS3) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	started := f.started
	f.mu.Unlock()
	if started != nil {
		started(r)
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), body})
	hook := f.hook
	f.mu.Unlock()
	if hook != nil && hook(w, r, body) {
		return
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		fmt.Fprint(w, `<CompleteMultipartUploadResult><ETag>"e-2"</ETag></CompleteMultipartUploadResult>`)
	case r.Method == http.MethodPost && q.Has("delete"):
		fmt.Fprint(w, `<DeleteResult></DeleteResult>`)
	case r.Method == http.MethodPut:
		w.Header().Set("ETag", `"etag"`)
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodHead:
		w.Header().Set("Content-Length", "5")
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	case r.Method == http.MethodGet:
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		fmt.Fprint(w, "hello")
	}
}

func (f *fakeS3) find(pred func(recorded) bool) []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, r := range f.requests {
		if pred(r) {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeS3) storage(t *testing.T, mod func(*Options)) *Storage {
	o := Options{
		Bucket: "b", Prefix: "p", Endpoint: f.srv.URL, ForcePathStyle: true,
		AccessKeyID: "ak", SecretAccessKey: "sk", MaxRetries: -1,
		PartSize: MinPartSize,
	}
	if mod != nil {
		mod(&o)
	}
	return newStorage(t, o)
}

func TestSSECHeadersOnEveryObjectRequest(t *testing.T) {
	f := newFake(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	s := f.storage(t, func(o *Options) { o.SSECustomerKey = key })
	ctx := context.Background()
	if err := s.Put(ctx, "small", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "big", storagetest.OnlyReader{R: bytes.NewReader(make([]byte, MinPartSize+10))}, -1); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "small")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := s.Stat(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(key)
	wantKey, wantMD5 := base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(sum[:])
	objectReqs := f.find(func(r recorded) bool { return strings.HasPrefix(r.path, "/b/p/") && r.method != http.MethodDelete })
	// PUT small, create, 2 parts, complete, GET, HEAD.
	if len(objectReqs) != 7 {
		t.Fatalf("%d object requests, want 7", len(objectReqs))
	}
	for _, r := range objectReqs {
		h := r.header
		if h.Get("X-Amz-Server-Side-Encryption-Customer-Algorithm") != "AES256" ||
			h.Get("X-Amz-Server-Side-Encryption-Customer-Key") != wantKey ||
			h.Get("X-Amz-Server-Side-Encryption-Customer-Key-Md5") != wantMD5 {
			t.Errorf("%s %s %v: SSE-C headers missing or wrong", r.method, r.path, r.query)
		}
		if h.Get("X-Amz-Server-Side-Encryption") != "" {
			t.Errorf("%s %s: SSE-S3 header with SSE-C", r.method, r.path)
		}
	}
}

func TestSSEKMSAndStorageClassAndExtraHeaders(t *testing.T) {
	f := newFake(t)
	s := f.storage(t, func(o *Options) {
		o.SSE, o.SSEKMSKeyID = "aws:kms", "key-1"
		o.StorageClass = "STANDARD_IA"
		o.RequestHeaders = map[string]string{"X-Tusk-Test": "yes"}
	})
	ctx := context.Background()
	if err := s.Put(ctx, "small", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "big", storagetest.OnlyReader{R: bytes.NewReader(make([]byte, MinPartSize+10))}, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	creating := f.find(func(r recorded) bool {
		return (r.method == http.MethodPut && !hasQuery(r, "partNumber")) || (r.method == http.MethodPost && hasQuery(r, "uploads"))
	})
	if len(creating) != 2 {
		t.Fatalf("%d object-creating requests, want 2", len(creating))
	}
	for _, r := range creating {
		h := r.header
		if h.Get("X-Amz-Server-Side-Encryption") != "aws:kms" || h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id") != "key-1" ||
			h.Get("X-Amz-Storage-Class") != "STANDARD_IA" {
			t.Errorf("%s %s: headers %v", r.method, r.path, h)
		}
	}
	for _, r := range f.find(func(recorded) bool { return true }) {
		if r.header.Get("X-Tusk-Test") != "yes" {
			t.Errorf("%s %s: additional header missing", r.method, r.path)
		}
		if !strings.Contains(r.header.Get("Authorization"), "x-tusk-test") {
			t.Errorf("%s %s: additional header not signed: %s", r.method, r.path, r.header.Get("Authorization"))
		}
		if r.header.Get("Content-Encoding") == "aws-chunked" || r.header.Get("X-Amz-Trailer") != "" {
			t.Errorf("%s %s: flexible checksum trailer sent", r.method, r.path)
		}
	}
}

func hasQuery(r recorded, k string) bool { _, ok := r.query[k]; return ok }

func TestDeleteObjectsSendsContentMD5InBatches(t *testing.T) {
	f := newFake(t)
	s := f.storage(t, nil)
	keys := make([]string, 2*deleteBatch+1)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	if err := s.Delete(context.Background(), keys...); err != nil {
		t.Fatal(err)
	}
	reqs := f.find(func(r recorded) bool { return r.method == http.MethodPost && hasQuery(r, "delete") })
	if len(reqs) != 3 {
		t.Fatalf("%d DeleteObjects requests, want 3", len(reqs))
	}
	total := 0
	for _, r := range reqs {
		sum := md5.Sum(r.body)
		if got := r.header.Get("Content-Md5"); got != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Errorf("Content-MD5 %q does not match the body", got)
		}
		total += bytes.Count(r.body, []byte("<Key>p/k"))
	}
	if total != len(keys) {
		t.Fatalf("%d keys sent, want %d", total, len(keys))
	}
}

func TestDeleteReportsPerKeyErrors(t *testing.T) {
	f := newFake(t)
	f.hook = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.URL.Query().Has("delete") {
			fmt.Fprint(w, `<DeleteResult><Error><Key>p/locked</Key><Code>AccessDenied</Code><Message>no</Message></Error><Error><Key>p/gone</Key><Code>NoSuchKey</Code><Message>x</Message></Error></DeleteResult>`)
			return true
		}
		return false
	}
	s := f.storage(t, nil)
	err := s.Delete(context.Background(), "locked", "gone")
	if err == nil || !strings.Contains(err.Error(), "p/locked") || !strings.Contains(err.Error(), "AccessDenied") || strings.Contains(err.Error(), "gone") {
		t.Fatalf("Delete: %v", err)
	}
}

func TestFailedPartAbortsUpload(t *testing.T) {
	f := newFake(t)
	var parts atomic.Int32
	f.hook = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" {
			parts.Add(1)
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>nope</Message></Error>`)
			return true
		}
		return false
	}
	bufs := &countingBuffers{inner: newPool(MinPartSize, 4)}
	s := f.storage(t, func(o *Options) { o.Buffers = bufs })
	err := s.Put(context.Background(), "obj", storagetest.OnlyReader{R: bytes.NewReader(make([]byte, 3*MinPartSize))}, -1)
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), "part 2") {
		t.Fatalf("Put: %v", err)
	}
	if aborts := f.find(func(r recorded) bool { return r.method == http.MethodDelete && hasQuery(r, "uploadId") }); len(aborts) != 1 {
		t.Fatalf("%d aborts, want 1", len(aborts))
	}
	if completes := f.find(func(r recorded) bool { return r.method == http.MethodPost && hasQuery(r, "uploadId") }); len(completes) != 0 {
		t.Fatal("upload completed despite a failed part")
	}
	if bufs.out.Load() != 0 {
		t.Fatalf("%d buffers not returned", bufs.out.Load())
	}
}

// gatedReader yields data, but stops after `after` bytes until gate is
// closed, and fails if that takes longer than a few seconds.
type gatedReader struct {
	data  []byte
	after int
	gate  chan struct{}
	off   int
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.off == len(g.data) {
		return 0, io.EOF
	}
	if g.off == g.after {
		select {
		case <-g.gate:
		case <-time.After(5 * time.Second):
			return 0, errors.New("the part's upload did not start while its buffer was filling")
		}
	}
	end := len(g.data)
	if g.off < g.after {
		end = g.after
	}
	n := copy(p, g.data[g.off:end])
	g.off += n
	return n, nil
}

// With one part buffer, a part's request starts while its buffer fills
// (the reader is held in the middle of part 2 until part 2's request
// arrives), and a part that ends short is sent again whole.
func TestPartUploadsWhileItFills(t *testing.T) {
	f, ca := newFakeTLS(t)
	gate := make(chan struct{})
	var once sync.Once
	f.started = func(r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" {
			once.Do(func() { close(gate) })
		}
	}
	data := storagetest.RandomBytes(t, 2*MinPartSize+MinPartSize/2)
	bufs := &countingBuffers{inner: newPool(MinPartSize, 4)}
	s := f.storage(t, func(o *Options) { o.Buffers = bufs; o.CACertFile = ca })
	src := &gatedReader{data: data, after: MinPartSize + MinPartSize/3, gate: gate}
	if err := s.Put(context.Background(), "obj", src, -1); err != nil {
		t.Fatal(err)
	}
	if peak := bufs.peak.Load(); peak != 1 {
		t.Fatalf("peak buffers %d, want 1", peak)
	}
	// The stored parts, last request per part number, are the data.
	last := map[string][]byte{}
	for _, r := range f.find(func(r recorded) bool { return r.method == http.MethodPut && hasQuery(r, "partNumber") }) {
		last[r.query["partNumber"][0]] = r.body
	}
	got := append(append(append([]byte{}, last["1"]...), last["2"]...), last["3"]...)
	if len(last) != 3 || !bytes.Equal(got, data) {
		t.Fatalf("%d parts, %d bytes: differ from the %d-byte source", len(last), len(got), len(data))
	}
}

// A streamed part that fails is retried from its buffer: the SDK rewinds
// the body while the part may still be filling.
func TestStreamedPartIsRetried(t *testing.T) {
	f, ca := newFakeTLS(t)
	var attempts atomic.Int32
	f.hook = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" && attempts.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `<Error><Code>InternalError</Code><Message>try again</Message></Error>`)
			return true
		}
		return false
	}
	data := storagetest.RandomBytes(t, 3*MinPartSize)
	s := f.storage(t, func(o *Options) { o.CACertFile = ca; o.MaxRetries = 2 })
	if err := s.Put(context.Background(), "obj", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
		t.Fatal(err)
	}
	if attempts.Load() < 2 {
		t.Fatalf("part 2 sent %d times, want a retry", attempts.Load())
	}
	ok := f.find(func(r recorded) bool {
		return r.method == http.MethodPut && r.query["partNumber"] != nil && r.query["partNumber"][0] == "2" && len(r.body) == MinPartSize
	})
	if len(ok) < 2 || !bytes.Equal(ok[len(ok)-1].body, data[MinPartSize:2*MinPartSize]) {
		t.Fatalf("part 2's retry did not send the part's bytes (%d full attempts)", len(ok))
	}
}

func TestThrottlingIsRetried(t *testing.T) {
	f := newFake(t)
	var n atomic.Int32
	f.hook = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method == http.MethodGet && n.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<Error><Code>SlowDown</Code><Message>slow</Message></Error>`)
			return true
		}
		return false
	}
	s := f.storage(t, func(o *Options) {
		o.MaxRetries = 3
		o.MinThrottlingRetryDelay = 10 * time.Millisecond
		o.MaxThrottlingRetryDelay = 20 * time.Millisecond
	})
	rc, err := s.Get(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if n.Load() != 3 {
		t.Fatalf("%d attempts, want 3", n.Load())
	}
	// With retries exhausted the error surfaces, and is not "not found".
	n.Store(-10)
	_, err = s.Get(context.Background(), "k")
	if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "SlowDown") {
		t.Fatalf("Get: %v", err)
	}
}

func TestNotFoundMapping(t *testing.T) {
	f := newFake(t)
	var bucketMissing atomic.Bool
	f.hook = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		switch {
		case r.URL.Path == "/b" || r.URL.Path == "/b/": // HeadBucket
			if bucketMissing.Load() {
				w.WriteHeader(http.StatusNotFound)
			}
			return true
		case strings.HasSuffix(r.URL.Path, "/nokey"):
			w.WriteHeader(http.StatusNotFound)
			if r.Method == http.MethodGet {
				fmt.Fprint(w, `<Error><Code>NoSuchKey</Code><Message>x</Message></Error>`)
			}
			return true
		case strings.HasSuffix(r.URL.Path, "/nobucket"):
			w.WriteHeader(http.StatusNotFound)
			if r.Method == http.MethodGet {
				fmt.Fprint(w, `<Error><Code>NoSuchBucket</Code><Message>x</Message></Error>`)
			}
			return true
		}
		return false
	}
	ctx := context.Background()
	s := f.storage(t, nil)
	if _, err := s.Get(ctx, "nokey"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get NoSuchKey: %v", err)
	}
	if _, err := s.Get(ctx, "nobucket"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get NoSuchBucket: %v", err)
	}
	if _, err := s.Stat(ctx, "nokey"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat 404 with the bucket present: %v", err)
	}
	// A fresh storage whose bucket HEAD says 404: a HEAD 404 on an object
	// cannot be trusted.
	bucketMissing.Store(true)
	s2 := f.storage(t, nil)
	if _, err := s2.Stat(ctx, "nobucket"); err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Stat 404 with the bucket missing: %v", err)
	}
	if ok, err := storage.Exists(ctx, s2, "nobucket"); ok || err == nil {
		t.Fatalf("Exists = %v, %v; want an error", ok, err)
	}
}

// WALG_S3_CA_CERT_FILE's certificates are the roots, as in WAL-G: the
// system roots are neither added nor parsed.
func TestCACertFileIsTheRoots(t *testing.T) {
	f, ca := newFakeTLS(t)
	c, err := newHTTPClient(Options{CACertFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	want := x509.NewCertPool()
	want.AddCert(f.srv.Certificate())
	if got := c.GetTransport().TLSClientConfig.RootCAs; got == nil || !got.Equal(want) {
		t.Fatal("the roots are not exactly the CA file's certificates")
	}
	// And they verify the server.
	s := f.storage(t, func(o *Options) { o.CACertFile = ca })
	if err := s.Put(context.Background(), "k", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
}

// A streamed part refused while its buffer is still filling ends the
// upload (no hang on the filler, no completion), aborts it, and returns
// every buffer.
func TestStreamedPartFailureAbortsUpload(t *testing.T) {
	f, ca := newFakeTLS(t)
	f.hook = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>nope</Message></Error>`)
			return true
		}
		return false
	}
	bufs := &countingBuffers{inner: newPool(MinPartSize, 4)}
	s := f.storage(t, func(o *Options) { o.Buffers = bufs; o.CACertFile = ca })
	err := s.Put(context.Background(), "obj", storagetest.OnlyReader{R: bytes.NewReader(make([]byte, 4*MinPartSize))}, -1)
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("Put: %v", err)
	}
	if aborts := f.find(func(r recorded) bool { return r.method == http.MethodDelete && hasQuery(r, "uploadId") }); len(aborts) != 1 {
		t.Fatalf("%d aborts, want 1", len(aborts))
	}
	if completes := f.find(func(r recorded) bool { return r.method == http.MethodPost && hasQuery(r, "uploadId") }); len(completes) != 0 {
		t.Fatal("upload completed despite a failed part")
	}
	if n := bufs.out.Load(); n != 0 {
		t.Fatalf("%d buffers not returned", n)
	}
}

package gcs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
	"github.com/tusk-pg/tusk/internal/testenv/gcsserver"
)

// proxy stands between the client and fake-gcs-server, recording the
// requests and letting a test answer some of them itself.
type proxy struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request // method, URL and headers of each request
	// intercept, when set, may answer a request instead of the server
	// (returning true); after is called once the server has answered.
	intercept func(w http.ResponseWriter, r *http.Request) bool
	after     func(r *http.Request, status int)
}

func newProxy(t *testing.T, srv *gcsserver.Server) *proxy {
	p := &proxy{}
	target := &url.URL{Scheme: "http", Host: srv.Host}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		// Upload sessions are named by the server's own address: keep
		// them going through the proxy.
		if loc := resp.Header.Get("Location"); loc != "" {
			resp.Header.Set("Location", strings.Replace(loc, srv.Host, strings.TrimPrefix(p.URL, "http://"), 1))
		}
		return nil
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Clone(context.Background()))
		intercept, after := p.intercept, p.after
		p.mu.Unlock()
		if intercept != nil && intercept(w, r) {
			return
		}
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		if after != nil {
			after(r, rec.status)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) set(intercept func(w http.ResponseWriter, r *http.Request) bool, after func(r *http.Request, status int)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.intercept, p.after = intercept, after
}

// chunkPuts counts the requests carrying bytes of a resumable upload.
func (p *proxy) chunkPuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.seen {
		if r.Method == http.MethodPut && !strings.HasPrefix(r.Header.Get("Content-Range"), "bytes */") {
			n++
		}
	}
	return n
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// failingAfter yields n bytes of data, then fails.
type failingAfter struct {
	data []byte
	n    int
}

var errBroken = errors.New("reader broke")

func (f *failingAfter) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errBroken
	}
	k := copy(p[:min(len(p), f.n)], f.data)
	f.data, f.n = f.data[k:], f.n-k
	return k, nil
}

// TestFailedUploadLeavesNothing: an upload whose body fails after three
// chunks were taken by the server leaves no object, because GCS makes the
// object visible only with the last chunk; the upload is cancelled.
func TestFailedUploadLeavesNothing(t *testing.T) {
	srv := emulator(t)
	p := newProxy(t, srv)
	s := open(t, srv, Options{EmulatorHost: p.URL, ChunkSize: ChunkAlign, Prefix: "failed"})
	data := storagetest.RandomBytes(t, 4*ChunkAlign)
	err := s.Put(context.Background(), "wal_005/x.lz4", &failingAfter{data: data, n: 3*ChunkAlign + 100}, -1)
	if !errors.Is(err, errBroken) || storage.IsTransient(err) {
		t.Fatalf("Put with a failing body: %v, want the reader's error, not retried", err)
	}
	if n := p.chunkPuts(); n != 3 {
		t.Fatalf("%d chunks reached the server, want 3 (the failure must come midway)", n)
	}
	objs, err := srv.Objects(context.Background(), "failed/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Fatalf("a failed upload left %v", objs)
	}
	p.mu.Lock()
	last := p.seen[len(p.seen)-1]
	p.mu.Unlock()
	if last.Method != http.MethodDelete || !strings.Contains(last.URL.RawQuery, "upload_id") {
		t.Errorf("the upload was not cancelled: last request %s %s", last.Method, last.URL)
	}
}

// TestServerGoneMidUpload: when the server stops answering after two
// chunks, Put fails with a transient error once its retries are spent,
// and no object appears, even after the server is back.
func TestServerGoneMidUpload(t *testing.T) {
	srv := emulator(t)
	p := newProxy(t, srv)
	s := open(t, srv, Options{EmulatorHost: p.URL, ChunkSize: ChunkAlign, Prefix: "gone", MaxRetries: 2})
	var mu sync.Mutex
	down := false
	p.set(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if down {
			// A dropped connection, as from a stopped server.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return true
		}
		if r.Method == http.MethodPut && strings.HasPrefix(r.Header.Get("Content-Range"), "bytes 524288-") {
			down = true
		}
		return false
	}, nil)
	data := storagetest.RandomBytes(t, 5*ChunkAlign)
	err := s.Put(context.Background(), "base", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1)
	if err == nil || !storage.IsTransient(err) {
		t.Fatalf("Put to a server gone midway: %v, want a transient error", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error of more than one line: %q", err)
	}
	objs, err := srv.Objects(context.Background(), "gone/")
	if err != nil || len(objs) != 0 {
		t.Fatalf("after a failed upload the server holds %v, %v", objs, err)
	}
}

// TestChunkResumedAfterLostAnswer: the server takes a chunk but its answer
// is lost; the client asks what the server holds and goes on from there,
// and the object is whole.
func TestChunkResumedAfterLostAnswer(t *testing.T) {
	srv := emulator(t)
	p := newProxy(t, srv)
	s := open(t, srv, Options{EmulatorHost: p.URL, ChunkSize: ChunkAlign, Prefix: "resumed"})
	s.c.backoff = 1 // no need to wait here
	var mu sync.Mutex
	lost := 0
	held := "" // the Range the server answered the lost request with
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: srv.Host})
	p.set(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPut && r.Header.Get("Content-Range") == "bytes */*" {
			// fake-gcs-server takes a status query for the end of the
			// upload; GCS answers it with what it holds, as here.
			w.Header().Set("Range", held)
			w.WriteHeader(statusResumeIncomplete)
			return true
		}
		if lost == 0 && r.Method == http.MethodPut && strings.HasPrefix(r.Header.Get("Content-Range"), "bytes 262144-") {
			lost++
			// The server gets the chunk; the client gets a 503.
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			if rec.Code != statusResumeIncomplete {
				t.Errorf("the server answered the second chunk with %d", rec.Code)
			}
			held = rec.Header().Get("Range")
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	}, nil)
	data := storagetest.RandomBytes(t, 3*ChunkAlign+7)
	if err := s.Put(context.Background(), "x", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
		t.Fatal(err)
	}
	if lost != 1 {
		t.Fatalf("%d answers lost", lost)
	}
	if got := storagetest.ReadAll(t, s, "x"); !bytes.Equal(got, data) {
		t.Fatalf("object of %d bytes, want %d", len(got), len(data))
	}
	queried := false
	p.mu.Lock()
	for _, r := range p.seen {
		queried = queried || (r.Method == http.MethodPut && r.Header.Get("Content-Range") == "bytes */*")
	}
	p.mu.Unlock()
	if !queried {
		t.Error("the client did not ask the server what it holds")
	}
}

// serviceAccount writes a service account key file whose tokens come
// from tokenURL.
func serviceAccount(t *testing.T, tokenURL string) (path string, keyPEM string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "tusk", "private_key_id": "k1",
		"private_key": keyPEM, "client_email": "tusk@tusk.iam.gserviceaccount.com",
		"client_id": "1", "token_uri": tokenURL,
	})
	path = filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, keyPEM
}

// TestServiceAccount: with GOOGLE_APPLICATION_CREDENTIALS naming a
// service account key, requests carry the access token the token
// endpoint grants for a signed assertion; a refused assertion gives one
// line naming the setting, without the key, and is not retried.
func TestServiceAccount(t *testing.T) {
	srv := emulator(t)
	p := newProxy(t, srv)
	var mu sync.Mutex
	refuse := false
	grants := 0
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if refuse || r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || r.Form.Get("assertion") == "" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
			return
		}
		grants++
		io.WriteString(w, `{"access_token":"granted-token","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokens.Close()
	path, keyPEM := serviceAccount(t, tokens.URL)

	s := open(t, srv, Options{CredentialsFile: path, endpoint: p.URL, Prefix: "sa"})
	ctx := context.Background()
	if err := s.Put(ctx, "a", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadAll(t, s, "a"); string(got) != "abc" {
		t.Fatalf("read %q", got)
	}
	p.mu.Lock()
	for _, r := range p.seen {
		if h := r.Header.Get("Authorization"); h != "Bearer granted-token" {
			t.Errorf("%s %s sent Authorization %q", r.Method, r.URL.Path, h)
		}
	}
	p.mu.Unlock()
	if grants != 1 {
		t.Errorf("%d tokens granted for two requests, want 1 (reused)", grants)
	}

	mu.Lock()
	refuse = true
	mu.Unlock()
	s2 := open(t, srv, Options{CredentialsFile: path, endpoint: p.URL, Prefix: "sa"})
	_, err := s2.Stat(ctx, "a")
	if err == nil || storage.IsTransient(err) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat with refused credentials: %v, want a permanent error", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "GOOGLE_APPLICATION_CREDENTIALS="+path) || !strings.Contains(msg, "invalid_grant") ||
		strings.Contains(msg, "\n") || strings.Contains(msg, "PRIVATE KEY") || strings.Contains(msg, keyPEM[40:80]) {
		t.Fatalf("error %q: want one line naming the setting and the refusal, no key", msg)
	}
}

// TestCredentialsFileRefused: a file that is not a credentials file is
// refused when the storage is opened, naming the setting.
func TestCredentialsFileRefused(t *testing.T) {
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "x.json")
	unknown := filepath.Join(dir, "y.json")
	os.WriteFile(notJSON, []byte("secret-looking text"), 0o600)
	os.WriteFile(unknown, []byte(`{"type":"mystery","private_key":"hush"}`), 0o600)
	for _, f := range []string{notJSON, unknown, filepath.Join(dir, "missing.json")} {
		_, err := New(context.Background(), Options{Bucket: "b", CredentialsFile: f})
		if err == nil || !strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS") ||
			strings.Contains(err.Error(), "secret-looking") || strings.Contains(err.Error(), "hush") {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

// TestEncryptionKeyHeaders: with GCS_ENCRYPTION_KEY every object request
// carries the customer-supplied key and its hash.
func TestEncryptionKeyHeaders(t *testing.T) {
	srv := emulator(t)
	p := newProxy(t, srv)
	key := bytes.Repeat([]byte{7}, 32)
	s := open(t, srv, Options{EmulatorHost: p.URL, EncryptionKey: key, ChunkSize: ChunkAlign})
	ctx := context.Background()
	data := storagetest.RandomBytes(t, ChunkAlign+1)
	if err := s.Put(ctx, "k", storagetest.OnlyReader{R: bytes.NewReader(data)}, -1); err != nil {
		t.Fatal(err)
	}
	storagetest.ReadAll(t, s, "k")
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.seen {
		if r.Header.Get("X-Goog-Encryption-Algorithm") != "AES256" ||
			r.Header.Get("X-Goog-Encryption-Key") != "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" ||
			r.Header.Get("X-Goog-Encryption-Key-Sha256") == "" {
			t.Errorf("%s %s without the key headers", r.Method, r.URL.Path)
		}
	}
}

func FuzzPersisted(f *testing.F) {
	for _, s := range []string{"", "bytes=0-262143", "bytes=0-0", "bytes=1-2", "bytes=0-", "bytes=0-+5", "bytes=0-9223372036854775807", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n, err := persisted(h)
		if err != nil {
			if n != 0 {
				t.Fatalf("%q: %d with error %v", h, n, err)
			}
			return
		}
		if n < 0 || (h == "" && n != 0) || (h != "" && n < 1) {
			t.Fatalf("%q: %d", h, n)
		}
		if h != "" && h != "bytes=0-"+strconv.FormatInt(n-1, 10) {
			t.Fatalf("%q accepted as %d", h, n)
		}
	})
}

// TestUserCredentialsAndMetadataServer: gcloud's user credentials get
// their token with the refresh token; without a credentials file (and no
// gcloud file under HOME) the metadata server's token is used.
func TestUserCredentialsAndMetadataServer(t *testing.T) {
	srv := emulator(t)
	p := newProxy(t, srv)
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.Form.Get("grant_type") != "refresh_token" || r.Form.Get("refresh_token") != "rt-1" || r.Form.Get("client_id") != "cid" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		io.WriteString(w, `{"access_token":"user-token","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokens.Close()
	metadata := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		io.WriteString(w, `{"access_token":"vm-token","token_type":"Bearer","expires_in":3600}`)
	}))
	defer metadata.Close()
	user := filepath.Join(t.TempDir(), "adc.json")
	b, _ := json.Marshal(map[string]string{"type": "authorized_user", "client_id": "cid", "client_secret": "cs",
		"refresh_token": "rt-1", "token_uri": tokens.URL})
	if err := os.WriteFile(user, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	ctx := context.Background()
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{CredentialsFile: user, endpoint: p.URL}, "Bearer user-token"},
		{Options{endpoint: p.URL, metadataURL: metadata.URL}, "Bearer vm-token"},
	} {
		p.mu.Lock()
		p.seen = nil
		p.mu.Unlock()
		s := open(t, srv, tc.o)
		if _, err := s.Stat(ctx, "nothing"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat: %v", err)
		}
		p.mu.Lock()
		if len(p.seen) == 0 || p.seen[0].Header.Get("Authorization") != tc.want {
			t.Errorf("want Authorization %q, requests %d", tc.want, len(p.seen))
		}
		p.mu.Unlock()
	}
	// Off Google Cloud: no metadata server, one line saying so.
	s := open(t, srv, Options{endpoint: p.URL, metadataURL: "http://127.0.0.1:1/token"})
	_, err := s.Stat(ctx, "x")
	if err == nil || !strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS is not set") ||
		!strings.Contains(err.Error(), "metadata server") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("no credentials at all: %v", err)
	}
}

// TestChunkReusedAcrossUploads: uploads of unknown length one after another
// reuse one chunk buffer instead of allocating GCS_MAX_CHUNK_SIZE each, so
// the heap's high-water mark (committed memory) stays at the chunks in
// flight, which is what the memory plan counts.
func TestChunkReusedAcrossUploads(t *testing.T) {
	srv := emulator(t)
	const chunk = 4 * ChunkAlign // 1 MiB: far above the per-request garbage
	s := open(t, srv, Options{ChunkSize: chunk, Prefix: "reuse"})
	data := storagetest.RandomBytes(t, chunk/2)
	put := func(i int) {
		if err := s.Put(context.Background(), fmt.Sprintf("basebackups_005/part_%d.tar.lz4", i), bytes.NewReader(data), -1); err != nil {
			t.Fatal(err)
		}
	}
	put(0) // the first upload allocates the chunk
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const uploads = 4
	for i := 1; i <= uploads; i++ {
		put(i)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / uploads; per >= chunk {
		t.Fatalf("each upload of unknown length allocated %d bytes, want less than one %d-byte chunk", per, chunk)
	}
}

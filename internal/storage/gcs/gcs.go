// Package gcs is the storage backend for Google Cloud Storage
// (WALG_GS_PREFIX), built on cloud.google.com/go/storage over its JSON API.
//
// Memory: Get streams the response body; List holds one page of object
// attributes (at most 1000). Put of a seekable reader of known size is sent
// in one request straight from the reader (the client library's
// ChunkSize 0), retried here by seeking back, so it buffers nothing. Any
// other Put is a resumable upload whose client library writer buffers one
// chunk: Options.ChunkSize bytes, or the body's size rounded up to 256 KiB
// when that is smaller. Both are what Options.Memory declares.
//
// Atomicity: an object appears only when its upload is finalised, which
// happens on the writer's Close after the last byte; a failed, cancelled or
// wrongly sized Put cancels the upload before that, so nothing is left
// under the key.
package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
)

// Storage is a storage.Storage on one bucket and object name prefix.
type Storage struct {
	client    *gcs.Client
	bucket    *gcs.BucketHandle
	opts      Options
	keyPrefix string // Options.Prefix + "/", or "" for the bucket root
	root      string // "gs://bucket/prefix"

	// bucketSeen is set once the bucket is known to exist, so a 404 on an
	// object can be trusted to mean the object is missing.
	bucketSeen atomic.Bool
}

var (
	_ storage.Storage = (*Storage)(nil)
	_ storage.Creator = (*Storage)(nil)
)

// New creates the client; it makes no request.
func New(ctx context.Context, opts Options) (*Storage, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("gcs storage: %w", err)
	}
	s := &Storage{opts: o, root: "gs://" + o.Bucket}
	if o.Prefix != "" {
		s.keyPrefix = o.Prefix + "/"
		s.root += "/" + o.Prefix
	}
	var copts []option.ClientOption
	if o.CredentialsFile != "" && os.Getenv("STORAGE_EMULATOR_HOST") == "" {
		t, err := credentialsType(o.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("%s: GOOGLE_APPLICATION_CREDENTIALS: %w", s.root, err)
		}
		copts = append(copts, option.WithAuthCredentialsFile(t, o.CredentialsFile))
	}
	client, err := gcs.NewClient(ctx, copts...)
	if err != nil {
		return nil, fmt.Errorf("%s: creating the client: %w", s.root, err)
	}
	// Idempotent requests (reads, deletes, uploads with a precondition)
	// are retried by the library; a bounded number of times, so that an
	// unreachable endpoint is reported instead of retried until the
	// operation's deadline.
	client.SetRetry(gcs.WithMaxAttempts(o.MaxRetries + 1))
	s.client = client
	s.bucket = client.Bucket(o.Bucket)
	return s, nil
}

// credentialsType reads the "type" of a credentials JSON file, which the
// client library needs to be told (it refuses to guess, for safety).
func credentialsType(path string) (option.CredentialsType, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var f struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return "", fmt.Errorf("%s is not a JSON credentials file", path)
	}
	switch t := option.CredentialsType(f.Type); t {
	case option.ServiceAccount, option.AuthorizedUser, option.ExternalAccount, option.ImpersonatedServiceAccount:
		return t, nil
	}
	return "", fmt.Errorf("%s: unsupported credentials type %q", path, f.Type)
}

// Close releases the client's connections.
func (s *Storage) Close() error { return s.client.Close() }

// requestBytes is what one request in flight holds beyond its body: the
// HTTP/2 or HTTP/1.1 connection's buffers, TLS records and client state
// (as S3's; measured by the upload benchmark in gcs_test.go).
const requestBytes = 256 << 10

// Memory is what a Storage with these options holds (for memory plans).
func (o Options) Memory() memplan.Storage {
	d, _ := o.withDefaults() // errors are reported when the storage is opened
	return memplan.Storage{
		Name:        "GCS",
		Upload:      requestBytes,
		Download:    requestBytes,
		UnknownSize: int64(d.ChunkSize),
		Note:        fmt.Sprintf("GCS resumable upload chunk of %d MiB (GCS_MAX_CHUNK_SIZE)", d.ChunkSize>>20),
	}
}

// Traits: bodies are not hashed before sending; a body of unknown size is
// buffered one chunk at a time, so callers that can learn the size should.
func (o Options) Traits() storage.Traits { return storage.Traits{} }

// String returns "gs://bucket/prefix".
func (s *Storage) String() string { return s.root }

func (s *Storage) object(k string) *gcs.ObjectHandle {
	h := s.bucket.Object(s.keyPrefix + k)
	if s.opts.EncryptionKey != nil {
		h = h.Key(s.opts.EncryptionKey)
	}
	return h
}

func (s *Storage) objectError(key, op string, err error) error {
	return classify(fmt.Errorf("%s/%s: %s: %w", s.root, key, op, err))
}

// classify marks the server's refusals that a retry cannot change as
// storage.Permanent; network failures, 408, 429 and 5xx stay transient.
func classify(err error) error {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		c := gerr.Code
		if c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests {
			return storage.Permanent(err)
		}
		return err
	}
	if errors.Is(err, gcs.ErrBucketNotExist) {
		return storage.Permanent(err)
	}
	return err
}

// httpStatus is the HTTP status of a server's error, 0 when none.
func httpStatus(err error) int {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code
	}
	return 0
}

// notFound maps a failed read to storage.ErrNotFound when the object is
// missing; a missing bucket must not look like the end of the WAL, so a
// 404 is confirmed once per Storage by looking the bucket up.
func (s *Storage) notFound(ctx context.Context, k, op string, err error) error {
	if !errors.Is(err, gcs.ErrObjectNotExist) && httpStatus(err) != http.StatusNotFound {
		return s.objectError(k, op, err)
	}
	if !s.bucketSeen.Load() {
		_, berr := s.bucket.Attrs(ctx)
		switch {
		case errors.Is(berr, gcs.ErrBucketNotExist):
			return storage.Permanent(s.objectError(k, op, fmt.Errorf("bucket %s does not exist: %w", s.opts.Bucket, berr)))
		case berr == nil:
			s.bucketSeen.Store(true)
		}
	}
	return storage.NotFoundError(s.root, k)
}

// opContext bounds one operation by GCS_CONTEXT_TIMEOUT.
func (s *Storage) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.ContextTimeout)
}

// Get opens the object; the body streams from the connection.
func (s *Storage) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return nil, fmt.Errorf("%s: get: %w", s.root, err)
	}
	r, err := s.object(k).NewReader(ctx)
	if err != nil {
		return nil, s.notFound(ctx, k, "get", err)
	}
	return r, nil
}

// Stat reads the object's attributes.
func (s *Storage) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("%s: stat: %w", s.root, err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	a, err := s.object(k).Attrs(ctx)
	if err != nil {
		return storage.ObjectInfo{}, s.notFound(ctx, k, "stat", err)
	}
	return storage.ObjectInfo{Key: k, Size: a.Size, ModTime: a.Updated}, nil
}

// List pages through the objects under prefix, in name order. Names ending
// in '/' (folder markers made by some tools) are not objects and are
// skipped.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("%s: list: %w", s.root, err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	q := &gcs.Query{Prefix: s.keyPrefix + strings.TrimLeft(prefix, "/"), Projection: gcs.ProjectionNoACL}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
		return err
	}
	it := s.bucket.Objects(ctx, q)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return classify(fmt.Errorf("%s/%s: list: %w", s.root, strings.TrimLeft(prefix, "/"), err))
		}
		key, ok := strings.CutPrefix(a.Name, s.keyPrefix)
		if !ok || key == "" || strings.HasSuffix(key, "/") {
			continue
		}
		if err := fn(storage.ObjectInfo{Key: key, Size: a.Size, ModTime: a.Updated}); err != nil {
			return err
		}
	}
}

// Delete removes the objects one request each; missing ones are skipped.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	for _, key := range keys {
		k, err := storage.CleanKey(key)
		if err != nil {
			return fmt.Errorf("%s: delete: %w", s.root, err)
		}
		// Deletes need no key, even of CSEK objects.
		err = s.bucket.Object(s.keyPrefix + k).Delete(ctx)
		if err != nil && !errors.Is(err, gcs.ErrObjectNotExist) {
			return s.objectError(k, "delete", err)
		}
	}
	return nil
}

// Put stores r under key.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

// Create stores r under key only if no object has that name: the upload
// carries the precondition ifGenerationMatch=0, which the server checks
// when it finalises the object, so of concurrent Creates exactly one wins.
func (s *Storage) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, true)
}

func (s *Storage) put(ctx context.Context, key string, r io.Reader, size int64, ifAbsent bool) error {
	k, err := storage.CleanKey(key)
	if err != nil {
		return fmt.Errorf("%s: put: %w", s.root, err)
	}
	if err := ctx.Err(); err != nil {
		return s.objectError(k, "put", err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	obj := s.object(k)
	if ifAbsent {
		obj = obj.If(gcs.Conditions{DoesNotExist: true})
	}
	rs, seekable := r.(io.Seeker)
	if size < 0 || !seekable {
		// The writer keeps one chunk to resend it on a retry; a body that
		// fits in less is given a chunk of its size.
		chunk := s.opts.ChunkSize
		if size >= 0 {
			chunk = min(chunk, alignChunk(size))
		}
		err = s.write(ctx, obj, r, size, chunk)
	} else {
		err = s.putSeekable(ctx, obj, rs, r, size)
	}
	if err == nil {
		return nil
	}
	if ifAbsent && httpStatus(err) == http.StatusPreconditionFailed {
		return fmt.Errorf("%s/%s: %w", s.root, k, storage.ErrExists)
	}
	return s.objectError(k, "put", err)
}

// putSeekable sends r in single requests without a buffer, seeking back to
// retry a transient failure, as the library does for its own chunks.
func (s *Storage) putSeekable(ctx context.Context, obj *gcs.ObjectHandle, rs io.Seeker, r io.Reader, size int64) error {
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return storage.SourceError{Err: err}
	}
	delay := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := s.write(ctx, obj, r, size, 0)
		var src storage.SourceError
		if err == nil || attempt >= s.opts.MaxRetries || errors.As(err, &src) ||
			!storage.IsTransient(classify(err)) || httpStatus(err) == http.StatusPreconditionFailed {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return storage.SourceError{Err: err}
		}
	}
}

// write runs one upload through the library's writer. Any failure before
// the last byte cancels the upload's context, which discards the upload
// instead of finalising it.
func (s *Storage) write(ctx context.Context, obj *gcs.ObjectHandle, r io.Reader, size int64, chunk int) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.Retryer(gcs.WithPolicy(gcs.RetryAlways)).NewWriter(wctx)
	w.ChunkSize = chunk
	w.ContentType = "application/octet-stream"
	src := storage.NewSource(ctx, r, size)
	if _, err := io.Copy(w, src); err != nil {
		cancel()
		_ = w.Close()
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return errors.Join(err, cerr)
		}
		return err
	}
	if err := w.Close(); err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return errors.Join(err, cerr)
		}
		return err
	}
	return nil
}

// Registration declares the backend to the storage registry. The client
// library retries idempotent requests, and Put retries its own.
func Registration() storage.Registration {
	return storage.Registration{Kind: "gs", Name: "GCS", Prefix: "WALG_GS_PREFIX", Settings: SettingNames()[1:], SkipRetry: true}
}

// Configure checks o without I/O and states what the backend is.
func Configure(o Options) (storage.Configured, error) {
	d, err := o.withDefaults()
	if err != nil {
		return storage.Configured{}, err
	}
	root := "gs://" + d.Bucket
	if d.Prefix != "" {
		root += "/" + d.Prefix
	}
	return storage.Configured{
		Registration: Registration(),
		Root:         root,
		Traits:       o.Traits(),
		Memory:       o.Memory(),
		Connect: func(ctx context.Context, _ *slog.Logger) (storage.Storage, error) {
			return New(ctx, o)
		},
	}, nil
}

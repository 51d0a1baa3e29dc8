// Package gcs is the storage backend for Google Cloud Storage
// (WALG_GS_PREFIX): a small client of the JSON API over net/http, with
// golang.org/x/oauth2/google for credentials.
//
// Why not cloud.google.com/go/storage: linking it brings gRPC with its xDS
// resolver, OpenTelemetry and the storage v2 protobuf descriptors, whose
// package initialisation raised the RSS of every tusk process, whatever
// its storage, from about 20 to 40-52 MiB (docs/benchmarks.md), past the
// one-shot wal-push bound. tusk needs few requests of the API (object
// get, metadata, list and delete; media and resumable uploads, with the
// latter's status query and cancellation; bucket metadata); this package
// makes exactly those.
//
// Memory: Get streams the response body; List holds one page of object
// names, sizes and times (at most 1000). Put of a seekable reader of known
// size is one media upload straight from the reader, retried by seeking
// back, so it buffers nothing. Any other Put is a resumable upload that
// holds one chunk to resend it on a retry: Options.ChunkSize bytes
// (GCS_MAX_CHUNK_SIZE), or the body's size when known and smaller. Both
// are what Options.Memory declares.
//
// Atomicity: GCS makes an object visible only when the request carrying
// its last byte completes. A failed, cancelled or wrongly sized Put stops
// before that (a body of stated size that runs short or long fails before
// its last byte is sent) and cancels the resumable upload, so nothing is
// left under the key.
package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tusk-pg/tusk/internal/bufpool"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
)

// Storage is a storage.Storage on one bucket and object name prefix.
type Storage struct {
	c         *client
	opts      Options
	keyPrefix string // Options.Prefix + "/", or "" for the bucket root
	root      string // "gs://bucket/prefix"

	// bucketSeen is set once the bucket is known to exist, so a 404 on an
	// object can be trusted to mean the object is missing.
	bucketSeen atomic.Bool

	// chunks holds the resumable uploads' GCS_MAX_CHUNK_SIZE buffers,
	// reused from one upload to the next: Go's heap never gives back what
	// it grew to, so fresh chunks would leave committed memory at what the
	// collector had not yet reclaimed instead of the chunks in flight.
	chunks *bufpool.Pool
}

var (
	_ storage.Storage = (*Storage)(nil)
	_ storage.Creator = (*Storage)(nil)
)

// New reads the credentials and makes the client; it makes no request to
// the storage (an access token is fetched with the first one).
func New(ctx context.Context, opts Options) (*Storage, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("gcs storage: %w", err)
	}
	s := &Storage{opts: o, root: rootOf(o), chunks: bufpool.New(o.ChunkSize)}
	if o.Prefix != "" {
		s.keyPrefix = o.Prefix + "/"
	}
	if s.c, err = newClient(ctx, o); err != nil {
		return nil, fmt.Errorf("%s: %w", s.root, err)
	}
	return s, nil
}

func rootOf(o Options) string {
	if o.Prefix == "" {
		return "gs://" + o.Bucket
	}
	return "gs://" + o.Bucket + "/" + o.Prefix
}

// Close releases idle connections.
func (s *Storage) Close() error {
	s.c.http.CloseIdleConnections()
	return nil
}

// requestBytes is what one request in flight holds beyond its body: the
// connection's buffers, TLS records and client state (as S3's; measured
// by the upload benchmark in gcs_test.go).
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

func (s *Storage) objectError(key, op string, err error) error {
	return classify(fmt.Errorf("%s/%s: %s: %w", s.root, key, op, err))
}

// notFound maps a failed read to storage.ErrNotFound when the object is
// missing; a missing bucket must not look like the end of the WAL, so a
// 404 is confirmed once per Storage by looking the bucket up.
func (s *Storage) notFound(ctx context.Context, k, op string, err error) error {
	if statusOf(err) != http.StatusNotFound {
		return s.objectError(k, op, err)
	}
	if !s.bucketSeen.Load() {
		resp, berr := s.c.do(ctx, request{method: http.MethodGet, url: s.c.bucketURL(s.opts.Bucket, "", url.Values{"fields": {"name"}})})
		switch {
		case statusOf(berr) == http.StatusNotFound:
			return storage.Permanent(fmt.Errorf("%s/%s: %s: bucket %s does not exist", s.root, k, op, s.opts.Bucket))
		case berr != nil:
			return s.objectError(k, op, berr)
		}
		drain(resp)
		s.bucketSeen.Store(true)
	}
	return storage.NotFoundError(s.root, k)
}

// drain reads what is left of a small response and closes it, so that its
// connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, errorBodyLimit))
	resp.Body.Close()
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
	resp, err := s.c.do(ctx, request{method: http.MethodGet, url: s.c.objectURL(s.opts.Bucket, s.keyPrefix+k, url.Values{"alt": {"media"}})})
	if err != nil {
		return nil, s.notFound(ctx, k, "get", err)
	}
	return resp.Body, nil
}

// objectAttrs is the part of an object resource tusk reads.
type objectAttrs struct {
	Name    string    `json:"name"`
	Size    string    `json:"size"` // the API's int64 are JSON strings
	Updated time.Time `json:"updated"`
}

func (a objectAttrs) info(key string) (storage.ObjectInfo, error) {
	n, err := strconv.ParseInt(a.Size, 10, 64)
	if err != nil || n < 0 {
		return storage.ObjectInfo{}, fmt.Errorf("object %q: size %q is not a byte count", a.Name, a.Size)
	}
	return storage.ObjectInfo{Key: key, Size: n, ModTime: a.Updated}, nil
}

// Stat reads the object's metadata.
func (s *Storage) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("%s: stat: %w", s.root, err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	resp, err := s.c.do(ctx, request{method: http.MethodGet, url: s.c.objectURL(s.opts.Bucket, s.keyPrefix+k, url.Values{"fields": {"name,size,updated"}})})
	if err != nil {
		return storage.ObjectInfo{}, s.notFound(ctx, k, "stat", err)
	}
	defer resp.Body.Close()
	var a objectAttrs
	if err := json.NewDecoder(io.LimitReader(resp.Body, errorBodyLimit)).Decode(&a); err != nil {
		return storage.ObjectInfo{}, s.objectError(k, "stat", fmt.Errorf("reading the object's metadata: %w", err))
	}
	info, err := a.info(k)
	if err != nil {
		return storage.ObjectInfo{}, s.objectError(k, "stat", err)
	}
	return info, nil
}

// listPageBytes bounds one page of a listing: 1000 names of at most 1024
// bytes with their sizes and times.
const listPageBytes = 2 << 20

// List pages through the objects under prefix, in name order. Names ending
// in '/' (folder markers made by some tools) are not objects and are
// skipped.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("%s: list: %w", s.root, err)
	}
	p := strings.TrimLeft(prefix, "/")
	fail := func(err error) error { return classify(fmt.Errorf("%s/%s: list: %w", s.root, p, err)) }
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	token := ""
	for {
		q := url.Values{
			"prefix":     {s.keyPrefix + p},
			"maxResults": {"1000"},
			"projection": {"noAcl"},
			"fields":     {"items(name,size,updated),nextPageToken"},
		}
		if token != "" {
			q.Set("pageToken", token)
		}
		resp, err := s.c.do(ctx, request{method: http.MethodGet, url: s.c.bucketURL(s.opts.Bucket, "o", q)})
		if err != nil {
			if statusOf(err) == http.StatusNotFound {
				return storage.Permanent(fmt.Errorf("%s/%s: list: bucket %s does not exist", s.root, p, s.opts.Bucket))
			}
			return fail(err)
		}
		var page struct {
			Items         []objectAttrs `json:"items"`
			NextPageToken string        `json:"nextPageToken"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, listPageBytes)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return fail(fmt.Errorf("reading a page of the listing: %w", err))
		}
		for _, a := range page.Items {
			key, ok := strings.CutPrefix(a.Name, s.keyPrefix)
			if !ok || key == "" || strings.HasSuffix(key, "/") {
				continue
			}
			info, err := a.info(key)
			if err != nil {
				return fail(err)
			}
			if err := fn(info); err != nil {
				return err
			}
		}
		if page.NextPageToken == "" || page.NextPageToken == token {
			return nil
		}
		token = page.NextPageToken
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
		resp, err := s.c.do(ctx, request{method: http.MethodDelete, url: s.c.objectURL(s.opts.Bucket, s.keyPrefix+k, nil),
			ok: []int{http.StatusNoContent, http.StatusOK}})
		switch {
		case err == nil:
			drain(resp)
		case statusOf(err) == http.StatusNotFound:
			// Gone already, or no bucket: a Delete of nothing.
		default:
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
	q := url.Values{"name": {s.keyPrefix + k}}
	if ifAbsent {
		q.Set("ifGenerationMatch", "0")
	}
	if rs, ok := r.(io.ReadSeeker); ok && size >= 0 {
		err = s.putMedia(ctx, q, rs, size)
	} else {
		err = s.putResumable(ctx, q, r, size)
	}
	switch {
	case err == nil:
		return nil
	case ifAbsent && statusOf(err) == http.StatusPreconditionFailed:
		return fmt.Errorf("%s/%s: %w", s.root, k, storage.ErrExists)
	case statusOf(err) == http.StatusNotFound:
		return storage.Permanent(fmt.Errorf("%s/%s: put: bucket %s does not exist", s.root, k, s.opts.Bucket))
	}
	return s.objectError(k, "put", err)
}

// Registration declares the backend to the storage registry: requests
// are retried here (GCS_MAX_RETRIES), each from where it failed.
func Registration() storage.Registration {
	return storage.Registration{Kind: "gs", Name: "GCS", Prefix: "WALG_GS_PREFIX", Settings: SettingNames()[1:], SkipRetry: true}
}

// Configure checks o without I/O and states what the backend is.
func Configure(o Options) (storage.Configured, error) {
	d, err := o.withDefaults()
	if err != nil {
		return storage.Configured{}, err
	}
	return storage.Configured{
		Registration: Registration(),
		Root:         rootOf(d),
		Traits:       o.Traits(),
		Memory:       o.Memory(),
		Connect: func(ctx context.Context, _ *slog.Logger) (storage.Storage, error) {
			return New(ctx, o)
		},
	}, nil
}

// errIncomplete: the server did not take all of an upload's bytes although
// the client sent them all; retrying would not tell why.
var errIncomplete = errors.New("the server did not acknowledge the whole upload")

// Backend is the GCS backend for a storage.Registry.
func Backend() storage.Backend {
	return storage.Backend{Registration: Registration(), Configure: storage.ConfigureWith(OptionsFromSettings, Configure)}
}

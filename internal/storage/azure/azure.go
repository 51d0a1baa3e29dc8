// Package azure is the storage backend for Azure Blob Storage
// (WALG_AZ_PREFIX), built on the Azure SDK's azblob, storing block blobs.
//
// Memory: Get streams the response body; List holds one page of at most
// 1000 names. Put of a seekable body of known size (up to 256 MiB) is one
// Put Blob request straight from the reader, without a buffer. Any other
// Put reads the body into block buffers of BufferSize bytes, at most
// MaxBuffers per upload (one filling while the others are staged),
// allocated as the body needs them: a body of known size smaller than a
// buffer gets one buffer of its size and is sent in one request. See
// Options.Memory.
//
// Atomicity: a body that fits one buffer is stored with one Put Blob; a
// larger one is staged as uncommitted blocks, invisible to readers, and
// appears only when the block list is committed after the last byte. A
// failed, cancelled or wrongly sized Put never commits; the service drops
// uncommitted blocks after a week.
package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
)

// listPage bounds the names one List page holds.
const listPage = 1000

// Storage is a storage.Storage on one container and blob name prefix.
type Storage struct {
	client    *container.Client
	opts      Options
	keyPrefix string // Options.Prefix + "/", or "" for the container root
	root      string // "azure://container/prefix"

	// containerSeen is set once the container is known to exist, so a
	// 404 on a blob can be trusted to mean the blob is missing.
	containerSeen atomic.Bool
}

var (
	_ storage.Storage = (*Storage)(nil)
	_ storage.Creator = (*Storage)(nil)
)

// New creates the client; it makes no request.
func New(opts Options) (*Storage, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("azure storage: %w", err)
	}
	s := &Storage{opts: o, root: "azure://" + o.Container}
	if o.Prefix != "" {
		s.keyPrefix = o.Prefix + "/"
		s.root += "/" + o.Prefix
	}
	copts := &container.ClientOptions{ClientOptions: policy.ClientOptions{
		Retry: policy.RetryOptions{TryTimeout: o.TryTimeout},
	}}
	if o.APIVersion != "" {
		copts.PerCallPolicies = append(copts.PerCallPolicies, apiVersion(o.APIVersion))
	}
	containerURL := o.serviceURL() + "/" + o.Container
	if o.AccessKey != "" {
		cred, err := azblob.NewSharedKeyCredential(o.AccountName, o.AccessKey)
		if err != nil {
			// The SDK's message would quote the key.
			return nil, fmt.Errorf("%s: AZURE_STORAGE_ACCESS_KEY is not a base64 account key", s.root)
		}
		s.client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, copts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.root, err)
		}
		return s, nil
	}
	s.client, err = container.NewClientWithNoCredential(containerURL+"?"+o.SASToken, copts)
	if err != nil {
		// The URL holds the token.
		return nil, fmt.Errorf("%s: the service URL with AZURE_STORAGE_SAS_TOKEN does not parse", s.root)
	}
	return s, nil
}

// apiVersion overrides the x-ms-version header (AZURE_BLOB_STORE_API_VERSION),
// for services that lag behind the SDK.
type apiVersion string

func (v apiVersion) Do(req *policy.Request) (*http.Response, error) {
	req.Raw().Header.Set("x-ms-version", string(v))
	return req.Next()
}

// requestBytes is what one request in flight holds beyond its body:
// connection and TLS buffers, the SDK's pipeline state.
const requestBytes = 256 << 10

// Memory is what a Storage with these options holds (for memory plans):
// a seekable body of known size takes no buffer; any other upload may hold
// MaxBuffers block buffers.
func (o Options) Memory() memplan.Storage {
	d, _ := o.withDefaults() // errors are reported when the storage is opened
	return memplan.Storage{
		Name:        "Azure",
		Upload:      requestBytes,
		Download:    requestBytes,
		UnknownSize: int64(d.MaxBuffers) * d.BufferSize,
		Note: fmt.Sprintf("Azure block buffers per upload of unknown length: %d of %d MiB (AZURE_MAX_BUFFERS, AZURE_BUFFER_SIZE)",
			d.MaxBuffers, d.BufferSize>>20),
	}
}

// Traits: bodies are not hashed before sending; every body goes through
// block buffers, and one of known size smaller than a buffer takes only
// its size, so callers that can learn the size should.
func (o Options) Traits() storage.Traits { return storage.Traits{} }

// String returns "azure://container/prefix".
func (s *Storage) String() string { return s.root }

func (s *Storage) blob(k string) *blockblob.Client {
	return s.client.NewBlockBlobClient(s.keyPrefix + k)
}

func (s *Storage) objectError(key, op string, err error) error {
	return classify(fmt.Errorf("%s/%s: %s: %w", s.root, key, op, shortError(err)))
}

// shortError keeps the service's error code and status of an SDK error,
// whose own message spans many lines (request, headers, body).
// A failure without an answer is the transport's *url.Error, which quotes
// the request URL: its query is dropped, since with AZURE_STORAGE_SAS_TOKEN
// the query is the credential.
func shortError(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return responseError{re}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return urlError{ue}
	}
	return err
}

type urlError struct{ ue *url.Error }

func (e urlError) Error() string {
	u := e.ue.URL
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	return fmt.Sprintf("%s %q: %v", e.ue.Op, u, e.ue.Err)
}
func (e urlError) Unwrap() error { return e.ue }

type responseError struct{ re *azcore.ResponseError }

func (e responseError) Error() string {
	code := e.re.ErrorCode
	if code == "" {
		code = http.StatusText(e.re.StatusCode)
	}
	return fmt.Sprintf("%s (HTTP %d)", code, e.re.StatusCode)
}
func (e responseError) Unwrap() error { return e.re }

// classify marks the service's refusals that a retry cannot change as
// storage.Permanent; network failures, 408, 409 (lease and copy races),
// 429 and 5xx stay transient.
func classify(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		c := re.StatusCode
		if c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusConflict && c != http.StatusTooManyRequests {
			return storage.Permanent(err)
		}
	}
	return err
}

// notFound maps a failed read to storage.ErrNotFound when the blob is
// missing; a missing container is a permanent error instead, so that it
// never looks like the end of the WAL.
func (s *Storage) notFound(ctx context.Context, k, op string, err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		return s.objectError(k, op, err)
	}
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return storage.Permanent(s.objectError(k, op, fmt.Errorf("container %s does not exist: %w", s.opts.Container, shortError(err))))
	}
	if !bloberror.HasCode(err, bloberror.BlobNotFound) && !s.containerSeen.Load() {
		// HEAD responses carry no error code.
		_, cerr := s.client.GetProperties(ctx, nil)
		switch {
		case bloberror.HasCode(cerr, bloberror.ContainerNotFound):
			return storage.Permanent(s.objectError(k, op, fmt.Errorf("container %s does not exist: %w", s.opts.Container, shortError(cerr))))
		case cerr == nil:
			s.containerSeen.Store(true)
		}
	}
	return storage.NotFoundError(s.root, k)
}

// Get opens the blob; the body streams from the connection.
func (s *Storage) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return nil, fmt.Errorf("%s: get: %w", s.root, err)
	}
	resp, err := s.blob(k).DownloadStream(ctx, nil)
	if err != nil {
		return nil, s.notFound(ctx, k, "get", err)
	}
	return resp.Body, nil
}

// Stat reads the blob's properties.
func (s *Storage) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("%s: stat: %w", s.root, err)
	}
	p, err := s.blob(k).GetProperties(ctx, nil)
	if err != nil {
		return storage.ObjectInfo{}, s.notFound(ctx, k, "stat", err)
	}
	oi := storage.ObjectInfo{Key: k}
	if p.ContentLength != nil {
		oi.Size = *p.ContentLength
	}
	if p.LastModified != nil {
		oi.ModTime = *p.LastModified
	}
	return oi, nil
}

// List pages through the blobs under prefix, in name order. Names ending
// in '/' (folder markers made by some tools) are skipped.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("%s: list: %w", s.root, err)
	}
	pager := s.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Prefix:     to.Ptr(s.keyPrefix + strings.TrimLeft(prefix, "/")),
		MaxResults: to.Ptr(int32(listPage)),
	})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return s.objectError(strings.TrimLeft(prefix, "/"), "list", err)
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name == nil {
				continue
			}
			key, ok := strings.CutPrefix(*b.Name, s.keyPrefix)
			if !ok || key == "" || strings.HasSuffix(key, "/") {
				continue
			}
			oi := storage.ObjectInfo{Key: key}
			if b.Properties != nil {
				if b.Properties.ContentLength != nil {
					oi.Size = *b.Properties.ContentLength
				}
				if b.Properties.LastModified != nil {
					oi.ModTime = *b.Properties.LastModified
				}
			}
			if err := fn(oi); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the blobs (with their snapshots) one request each;
// missing ones are skipped.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		k, err := storage.CleanKey(key)
		if err != nil {
			return fmt.Errorf("%s: delete: %w", s.root, err)
		}
		_, err = s.blob(k).Delete(ctx, &blob.DeleteOptions{DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude)})
		if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
			return s.objectError(k, "delete", err)
		}
	}
	return nil
}

// Put stores r under key.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

// Create stores r under key only if no blob has that name: the request
// that makes the blob (Put Blob, or Put Block List after staging) carries
// If-None-Match: *, which the service checks atomically.
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
	var cond *blob.AccessConditions
	if ifAbsent {
		cond = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{
			IfNoneMatch: to.Ptr(azcore.ETagAny),
		}}
	}
	if rs, ok := r.(io.ReadSeeker); ok && size >= 0 && size <= maxSinglePut {
		err = s.putSeekable(ctx, k, rs, size, cond)
	} else {
		err = s.putStream(ctx, k, r, size, cond)
	}
	if err == nil {
		return nil
	}
	if ifAbsent && (bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet)) {
		return fmt.Errorf("%s/%s: %w", s.root, k, storage.ErrExists)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = errors.Join(err, cerr)
	}
	return s.objectError(k, "put", err)
}

// maxSinglePut bounds the bodies sent with one Put Blob request (the
// service takes up to 5000 MiB; older API versions 256 MiB).
const maxSinglePut = 256 << 20

// putSeekable sends a seekable body of known size with one Put Blob
// request straight from the reader, without block buffers; the SDK seeks
// back to retry. The body must hold exactly size bytes from its offset.
func (s *Storage) putSeekable(ctx context.Context, k string, rs io.ReadSeeker, size int64, cond *blob.AccessConditions) error {
	base, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return storage.SourceError{Err: err}
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return storage.SourceError{Err: err}
	}
	if _, err := rs.Seek(base, io.SeekStart); err != nil {
		return storage.SourceError{Err: err}
	}
	if end-base != size {
		return fmt.Errorf("source holds %d bytes, expected %d", end-base, size)
	}
	_, err = s.blob(k).Upload(ctx, &window{rs: rs, base: base, size: size}, &blockblob.UploadOptions{AccessConditions: cond})
	return err
}

// window shows the SDK a seekable body from base on, as if it started at
// offset 0 (the SDK measures and rewinds bodies from their start).
type window struct {
	rs         io.ReadSeeker
	base, size int64
}

func (w *window) Read(p []byte) (int, error) { return w.rs.Read(p) }
func (w *window) Close() error               { return nil }
func (w *window) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		off += w.base
	case io.SeekEnd:
		off += w.base + w.size
	case io.SeekCurrent:
		cur, err := w.rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, err
		}
		off += cur
	}
	n, err := w.rs.Seek(off, io.SeekStart)
	return n - w.base, err
}

// putStream reads the body into block buffers: one request when it fits
// a buffer, otherwise staged blocks committed after the last byte.
func (s *Storage) putStream(ctx context.Context, k string, r io.Reader, size int64, cond *blob.AccessConditions) error {
	o := &blockblob.UploadStreamOptions{BlockSize: s.opts.BufferSize, Concurrency: s.opts.MaxBuffers, AccessConditions: cond}
	if size >= 0 && size < o.BlockSize {
		// One buffer one byte larger than the body: the SDK sees a short
		// first block and sends the body in one request.
		o.BlockSize = size + 1
	}
	_, err := s.blob(k).UploadStream(ctx, storage.NewSource(ctx, r, size), o)
	return err
}

// Registration declares the backend to the storage registry; the SDK
// retries transient failures itself.
func Registration() storage.Registration {
	return storage.Registration{Kind: "az", Name: "Azure", Prefix: "WALG_AZ_PREFIX", Settings: SettingNames()[1:], SkipRetry: true}
}

// Configure checks o without I/O and states what the backend is.
func Configure(o Options) (storage.Configured, error) {
	s, err := New(o)
	if err != nil {
		return storage.Configured{}, err
	}
	return storage.Configured{
		Registration: Registration(),
		Root:         s.String(),
		Traits:       o.Traits(),
		Memory:       o.Memory(),
		Connect: func(context.Context, *slog.Logger) (storage.Storage, error) {
			return s, nil
		},
	}, nil
}

// Backend is the Azure backend for a storage.Registry.
func Backend() storage.Backend {
	return storage.Backend{Registration: Registration(), Configure: storage.ConfigureWith(OptionsFromSettings, Configure)}
}

package wal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
)

// ErrStorage marks transient failures of the storage (unreachable, timing
// out, refusing for now; see storage.IsTransient): the only errors a fetch
// retries, and never to be confused with "not archived".
var ErrStorage = errors.New("storage error")

// storageError tags err as a transient storage failure while keeping its
// message.
type storageError struct{ err error }

func (e storageError) Error() string   { return e.err.Error() }
func (e storageError) Unwrap() []error { return []error{e.err, ErrStorage} }
func isStorageError(err error) bool    { return errors.Is(err, ErrStorage) }

// classify tags err as ErrStorage when storage.IsTransient says a retry may
// help; permanent errors keep their own class.
func classify(err error) error {
	if storage.IsTransient(err) {
		return storageError{err}
	}
	return err
}

// storageBody classifies read errors of an object body, so a connection
// reset mid-download is retried while a bad MAC or a corrupt frame (decoder
// errors, which do not pass through here) is not.
type storageBody struct{ r io.Reader }

func (b storageBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = classify(err)
	}
	return n, err
}

// sizeLimit enforces what a decoded WAL file may hold (see Restorer.limit)
// while it streams: it reads at most max+1 bytes, so a decompression bomb
// costs no more than one segment.
type sizeLimit struct {
	r        io.Reader
	n, max   int64
	exact    bool
	object   string
	segSize  int64
	exceeded bool
}

func (l *sizeLimit) Read(p []byte) (int, error) {
	if l.exceeded {
		return 0, l.err()
	}
	if rest := l.max + 1 - l.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		l.exceeded = true
		return n, l.err()
	}
	if err == io.EOF && l.exact && l.n != l.max {
		return n, l.err()
	}
	return n, err
}

func (l *sizeLimit) err() error {
	if l.exceeded {
		return fmt.Errorf("%s: decodes to more than %d bytes; a WAL file is at most one segment (WALG_PG_WAL_SIZE)", l.object, l.max)
	}
	return fmt.Errorf("%s: decodes to %d bytes; a WAL segment is exactly %d (WALG_PG_WAL_SIZE)", l.object, l.n, l.max)
}

// Restorer fetches archived WAL files.
type Restorer struct {
	Store       storage.Storage
	Crypter     crypt.Crypter // nil: objects are not encrypted
	SegmentSize int64
	// Retries is how many times a fetch is retried after a storage error
	// (WALG_DOWNLOAD_FILE_RETRIES); RetryTimeout bounds the whole fetch.
	Retries      int
	RetryTimeout time.Duration
	// ExtCachePath is WAL-G's ~/.walg_decompressor_cache: the extension that
	// last worked is probed first. Empty disables it.
	ExtCachePath string
	Log          *slog.Logger
}

// limit says how large the decoded file name may be: a segment exactly one
// segment, anything else (partial segment, history, backup history) at most
// one segment, which no real one comes near.
func (r *Restorer) limit(name string) (max int64, exact bool) {
	return r.SegmentSize, IsSegmentName(name)
}

// candidates lists the keys WAL-G tries for a base name, in its order,
// with the extension that last worked first.
func (r *Restorer) candidates(name string) []codec.Candidate {
	var preferred codec.Method
	if ext, ok := r.cachedExt(); ok {
		preferred, _ = codec.ByExt(ext)
	}
	return codec.Candidates(Folder+name, preferred)
}

// Open finds the archived object for name by WAL-G's extension probing and
// returns a reader of its decoded bytes and the key found. The reader fails
// once the content breaks the size rule (see limit). The error wraps
// storage.ErrNotFound only when no candidate exists; any other storage
// error stops the probing, tagged ErrStorage when it is transient.
func (r *Restorer) Open(ctx context.Context, name string) (io.ReadCloser, string, error) {
	for _, p := range r.candidates(name) {
		body, err := r.Store.Get(ctx, p.Key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, p.Key, classify(fmt.Errorf("get %s/%s: %w", r.Store, p.Key, err))
		}
		if !p.Bare {
			r.rememberExt(p.Method.Ext())
		}
		dec, err := pipe.Decode(storageBody{body}, p.Method, r.Crypter)
		if err != nil {
			body.Close()
			return nil, p.Key, fmt.Errorf("%s/%s: %w", r.Store, p.Key, err)
		}
		max, exact := r.limit(name)
		limited := &sizeLimit{r: dec, max: max, exact: exact, object: fmt.Sprintf("%s/%s", r.Store, p.Key)}
		return readCloser{limited, func() error {
			err := dec.Close()
			body.Close()
			if err != nil {
				return fmt.Errorf("%s/%s: %w", r.Store, p.Key, err)
			}
			return nil
		}}, p.Key, nil
	}
	return nil, "", fmt.Errorf("archive '%s' does not exist in %s: %w", name, r.Store, storage.ErrNotFound)
}

type readCloser struct {
	io.Reader
	close func() error
}

func (rc readCloser) Close() error { return rc.close() }

// Fetch writes the archived file name to dest. The file appears at dest
// only complete and fsynced (temporary name, fsync, rename); on any failure
// or cancellation nothing is left there. Transient storage errors are
// retried with backoff, at most Retries times; RetryTimeout bounds the
// whole fetch, the storage client's own retries included. The returned
// error wraps storage.ErrNotFound when the file is not archived and
// ErrStorage when storage kept failing.
func (r *Restorer) Fetch(ctx context.Context, name, dest string) error {
	if r.RetryTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.RetryTimeout, fmt.Errorf("TUSK_FETCH_RETRY_TIMEOUT (%v) reached: %w", r.RetryTimeout, context.DeadlineExceeded))
		defer cancel()
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := r.fetchOnce(ctx, name, dest)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			// Cancelled (SIGTERM) or out of time: say which, whatever the
			// storage client made of it.
			return fmt.Errorf("wal-fetch %s: %w (after %d attempts; last error: %v)", name, context.Cause(ctx), attempt+1, err)
		}
		if !isStorageError(err) {
			return err
		}
		if attempt >= r.Retries {
			return fmt.Errorf("giving up after %d attempts (WALG_DOWNLOAD_FILE_RETRIES=%d): %w", attempt+1, r.Retries, err)
		}
		r.log().Warn("wal-fetch: storage error, retrying", "file", name, "attempt", attempt+1, "in", backoff, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("wal-fetch %s: %w (after %d attempts; last error: %v)", name, context.Cause(ctx), attempt+1, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (r *Restorer) fetchOnce(ctx context.Context, name, dest string) error {
	src, key, err := r.Open(ctx, name)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(ctx, dest, src); err != nil {
		if isStorageError(err) || ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%s/%s → %s: %w", r.Store, key, dest, err)
	}
	return nil
}

// ctxReader stops a copy once ctx is done: a local file or a decoder does
// not watch the context by itself.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// writeFileAtomic copies src into dest through fsutil.WriteFile (a new
// temporary file that follows no planted symlink, fsync, rename, directory
// fsync), closing src before the rename because closing verifies what was
// read. PostgreSQL must never see a partial or unverified file under the
// name it asked for.
func writeFileAtomic(ctx context.Context, dest string, src io.ReadCloser) error {
	srcOpen := true
	defer func() {
		if srcOpen {
			src.Close()
		}
	}()
	return fsutil.WriteFile(dest, fsutil.Options{Perm: 0o600}, func(f *os.File) error {
		buf := make([]byte, 64<<10)
		if _, err := io.CopyBuffer(struct{ io.Writer }{f}, ctxReader{ctx, src}, buf); err != nil {
			return err
		}
		srcOpen = false
		if err := src.Close(); err != nil {
			return err
		}
		return ctx.Err()
	})
}

func (r *Restorer) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// extCache is WAL-G's decompressor cache file format.
type extCache struct {
	FileExtension string
}

func (r *Restorer) cachedExt() (string, bool) {
	if r.ExtCachePath == "" {
		return "", false
	}
	b, err := os.ReadFile(r.ExtCachePath)
	if err != nil {
		return "", false
	}
	var c extCache
	if json.Unmarshal(b, &c) != nil {
		return "", false
	}
	if _, err := codec.ByExt(c.FileExtension); err != nil {
		return "", false
	}
	return c.FileExtension, true
}

// rememberExt updates the cache when the extension changed. Failure only
// costs a few extra probes next time, so it is logged, not returned.
func (r *Restorer) rememberExt(ext string) {
	if r.ExtCachePath == "" {
		return
	}
	if cur, ok := r.cachedExt(); ok && cur == ext {
		return
	}
	b, _ := json.Marshal(extCache{FileExtension: ext})
	err := fsutil.WriteFile(r.ExtCachePath, fsutil.Options{Perm: 0o644, NoSync: true}, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
	if err != nil {
		r.log().Debug("cannot update decompressor cache", "file", r.ExtCachePath, "error", err)
	}
}

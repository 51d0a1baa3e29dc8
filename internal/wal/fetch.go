package wal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
)

// ErrStorage marks failures of the storage itself (unreachable, timing out,
// refusing): worth retrying, and never to be confused with "not archived".
var ErrStorage = errors.New("storage error")

// storageError tags err as a storage failure while keeping its message.
type storageError struct{ err error }

func (e storageError) Error() string   { return e.err.Error() }
func (e storageError) Unwrap() []error { return []error{e.err, ErrStorage} }
func asStorageError(err error) error   { return storageError{err} }
func isStorageError(err error) bool    { return errors.Is(err, ErrStorage) }

// storageBody tags read errors of an object body as storage errors, so a
// connection reset mid-download is retried while a bad MAC or a corrupt
// frame (decoder errors) is not.
type storageBody struct{ r io.Reader }

func (b storageBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = asStorageError(err)
	}
	return n, err
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
// returns a reader of its raw bytes and the key found. The error wraps
// storage.ErrNotFound only when no candidate exists; any other storage
// error stops the probing.
func (r *Restorer) Open(ctx context.Context, name string) (io.ReadCloser, string, error) {
	for _, p := range r.candidates(name) {
		body, err := r.Store.Get(ctx, p.Key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, p.Key, asStorageError(fmt.Errorf("get %s/%s: %w", r.Store, p.Key, err))
		}
		if !p.Bare {
			r.rememberExt(p.Method.Ext())
		}
		dec, err := pipe.Decode(storageBody{body}, p.Method, r.Crypter)
		if err != nil {
			body.Close()
			return nil, p.Key, fmt.Errorf("%s/%s: %w", r.Store, p.Key, err)
		}
		return readCloser{dec, func() error {
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
// only complete and fsynced (temp name, fsync, rename); on any failure
// nothing is left there. Storage errors are retried with backoff; the
// returned error wraps storage.ErrNotFound when the file is not archived and
// ErrStorage when storage kept failing.
func (r *Restorer) Fetch(ctx context.Context, name, dest string) error {
	if resolved, err := filepath.EvalSymlinks(dest); err == nil {
		dest = resolved
	}
	deadline := time.Now().Add(r.RetryTimeout)
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := r.fetchOnce(ctx, name, dest)
		if err == nil || !isStorageError(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= r.Retries || (r.RetryTimeout > 0 && time.Now().Add(backoff).After(deadline)) {
			return fmt.Errorf("giving up after %d attempts: %w", attempt+1, err)
		}
		r.log().Warn("wal-fetch: storage error, retrying", "file", name, "attempt", attempt+1, "in", backoff, "error", err)
		select {
		case <-ctx.Done():
			return err
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
	if err := writeFileAtomic(dest, src); err != nil {
		if isStorageError(err) {
			return err
		}
		return fmt.Errorf("%s/%s → %s: %w", r.Store, key, dest, err)
	}
	return nil
}

// writeFileAtomic copies src into a temporary file next to dest, closes
// src (which verifies what was read), fsyncs the file, renames it over dest
// and fsyncs the directory. PostgreSQL must never see a partial or
// unverified file under the name it asked for.
func writeFileAtomic(dest string, src io.ReadCloser) (err error) {
	srcOpen := true
	defer func() {
		if srcOpen {
			src.Close()
		}
	}()
	dir := filepath.Dir(dest)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".tusk-tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	buf := make([]byte, 64<<10)
	if _, err = io.CopyBuffer(struct{ io.Writer }{tmp}, struct{ io.Reader }{src}, buf); err != nil {
		return err
	}
	srcOpen = false
	if err = src.Close(); err != nil {
		return err
	}
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), dest); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
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
	tmp, err := os.CreateTemp(filepath.Dir(r.ExtCachePath), ".walg_decompressor_cache.tmp-*")
	if err == nil {
		_, err = tmp.Write(b)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), r.ExtCachePath)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		r.log().Debug("cannot update decompressor cache", "file", r.ExtCachePath, "error", err)
	}
}

package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/storage"
)

// Fetcher restores base backups, full or delta, from storage
// (backup-fetch).
type Fetcher struct {
	Store storage.Storage
	// Crypter decrypts the tars; nil when the backups are not encrypted.
	Crypter crypt.Crypter
	// Concurrency is the number of data tars restored at once
	// (WALG_DOWNLOAD_CONCURRENCY); memory grows with it: each worker holds
	// one decryptor, one decompressor and an ExtractBufferSize buffer.
	Concurrency int
	// Retries is how often a tar is downloaded again after a storage error
	// (WALG_DOWNLOAD_FILE_RETRIES). Decoding and disk errors are not
	// retried.
	Retries int
	// NoFsync skips fsync (WALG_TAR_DISABLE_FSYNC).
	NoFsync bool
	Log     *slog.Logger
}

// FetchOptions are the choices of one restore.
type FetchOptions struct {
	// RestoreSpec relocates tablespaces (--restore-spec). Without it they
	// go to the locations recorded in the sentinel. With it, the backup's
	// tablespace_map is not restored (as in WAL-G), so PostgreSQL keeps the
	// pg_tblspc links made from the spec instead of recreating the old ones.
	RestoreSpec *backup.TablespaceSpec
	// Progress, when set, is told every byte written to a restored file;
	// a tar downloaded again after a storage error counts again.
	Progress backup.Progress
	// Catchup applies a catch-up backup (catchup-fetch) onto the existing
	// data directory dest instead of restoring into an empty one: whole
	// files replace the standby's, page increments are written into them.
	Catchup bool
}

// FetchResult describes a finished restore.
type FetchResult struct {
	Sentinel *backup.Sentinel
	// Tablespaces are the locations restored outside the data directory.
	Tablespaces []backup.Tablespace
	Tars        int
	Files       int64
	Bytes       int64
}

// Fetch restores the backup name into dest, which must be absent or
// empty. A delta backup is restored as WAL-G does by default: its chain's
// full backup first, then each delta in order, whole files replacing
// older ones and page increments applied onto them. On error the
// destination keeps whatever was written so far, never global/pg_control,
// so PostgreSQL will not start on it; remove its contents (and any
// tablespace locations) before trying again.
func (f *Fetcher) Fetch(ctx context.Context, name, dest string, opts FetchOptions) (*FetchResult, error) {
	if err := backup.CheckName(name); err != nil {
		return nil, err
	}
	s, err := backup.FetchSentinel(ctx, f.Store, name)
	if err != nil {
		return nil, err
	}
	dest, err = filepath.Abs(dest)
	if err != nil {
		return nil, fmt.Errorf("restore destination: %w", err)
	}
	// The parents' symlinks are resolved, for the messages and the
	// tablespace overlap checks; DEST itself must not be one.
	if parent, err := filepath.EvalSymlinks(filepath.Dir(dest)); err == nil {
		dest = filepath.Join(parent, filepath.Base(dest))
	}
	layers, err := f.planLayers(ctx, name, s, opts.Catchup)
	if err != nil {
		return nil, err
	}
	leaf := layers[len(layers)-1]
	if leaf.tars.PgControl == "" {
		return nil, fmt.Errorf("backup %s: no pg_control tar in %s/%s", name, f.Store, backup.TarPartitionsKey(name))
	}

	exOpts := ExtractorOptions{NoFsync: f.NoFsync, Tablespaces: s.Spec, Progress: opts.Progress, Existing: opts.Catchup}
	if opts.Catchup {
		exOpts.Tablespaces = nil
		if len(layers) != 1 {
			return nil, fmt.Errorf("backup %s is a delta of %s, not a catch-up backup", name, s.DeltaFrom)
		}
	}
	if opts.RestoreSpec != nil {
		exOpts.Tablespaces = opts.RestoreSpec
		exOpts.Skip = []string{"tablespace_map"}
		if bp := filepath.Clean(opts.RestoreSpec.BasePrefix); bp != dest && f.Log != nil {
			f.Log.Info("backup-fetch: tablespace links go into the restore destination, not the restore spec's base_prefix",
				"destination", dest, "base_prefix", bp)
		}
	}
	ex, err := NewExtractor(dest, exOpts)
	if err != nil {
		return nil, err
	}
	defer ex.Close()
	if err := f.extractAll(ctx, ex, layers); err != nil {
		if opts.Catchup {
			return nil, fmt.Errorf("%w (the catch-up is incomplete: %s keeps its old global/pg_control, apply the catch-up again before starting it)", err, dest)
		}
		return nil, &PartialRestoreError{Dest: dest, Tablespaces: exOpts.Tablespaces, Err: err}
	}
	res := &FetchResult{Sentinel: s}
	for _, l := range layers {
		res.Tars += len(l.tars.Parts)
	}
	for _, n := range []string{leaf.tars.PgControl, leaf.tars.BackupLabel} {
		if n != "" {
			res.Tars++
		}
	}
	res.Files, res.Bytes = ex.Stats()
	if exOpts.Tablespaces != nil {
		res.Tablespaces = exOpts.Tablespaces.Tablespaces
	}
	return res, nil
}

// PartialRestoreError is returned when a restore failed after it started
// writing: the destination (and tablespace locations) hold some files, but
// never global/pg_control.
type PartialRestoreError struct {
	Dest        string
	Tablespaces *backup.TablespaceSpec
	Err         error
}

func (e *PartialRestoreError) Error() string {
	where := e.Dest
	if e.Tablespaces != nil {
		for _, ts := range e.Tablespaces.Tablespaces {
			where += ", " + ts.Location
		}
	}
	return fmt.Sprintf("%v (the restore is incomplete: empty %s before trying again)", e.Err, where)
}

func (e *PartialRestoreError) Unwrap() error { return e.Err }

func (f *Fetcher) extractAll(ctx context.Context, ex *Extractor, layers []*restoreLayer) error {
	for _, l := range layers {
		if len(layers) > 1 && f.Log != nil {
			f.Log.Info("backup-fetch: restoring", "backup", l.name, "data_tars", len(l.tars.Parts))
		}
		ex.setLayer(l.extract)
		if err := f.extractParts(ctx, ex, l.name, l.tars.Parts, l.methods); err != nil {
			return err
		}
	}
	// pg_control and the backup label come from the requested backup only.
	leaf := layers[len(layers)-1]
	ex.setLayer(leaf.extract)
	buf := make([]byte, ExtractBufferSize)
	for _, n := range []string{leaf.tars.PgControl, leaf.tars.BackupLabel} {
		if n == "" {
			continue
		}
		if err := f.extractTar(ctx, ex, backup.TarKey(leaf.name, n), leaf.methods[n], buf); err != nil {
			return err
		}
	}
	return ex.Finish()
}

// extractParts restores the data tars with up to Concurrency workers; the
// first error stops the others.
func (f *Fetcher) extractParts(ctx context.Context, ex *Extractor, name string, parts []string, methods map[string]codec.Method) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := min(max(f.Concurrency, 1), len(parts))
	jobs := make(chan string)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, ExtractBufferSize)
			for p := range jobs {
				if err := f.extractTar(ctx, ex, backup.TarKey(name, p), methods[p], buf); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	for _, p := range parts {
		select {
		case jobs <- p:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// extractTar restores one tar object, downloading it again after storage
// errors. Files a failed attempt wrote are overwritten by the next one.
func (f *Fetcher) extractTar(ctx context.Context, ex *Extractor, key string, m codec.Method, buf []byte) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := f.extractOnce(ctx, ex, key, m, buf)
		if err == nil {
			if f.Log != nil {
				f.Log.Debug("backup-fetch: extracted", "tar", key)
			}
			return nil
		}
		var se *storageError
		if !errors.As(err, &se) || ctx.Err() != nil || attempt >= f.Retries {
			return err
		}
		if f.Log != nil {
			f.Log.Warn("backup-fetch: storage error, downloading the tar again", "tar", key, "attempt", attempt+1, "error", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (f *Fetcher) extractOnce(ctx context.Context, ex *Extractor, key string, m codec.Method, buf []byte) (err error) {
	body, err := f.Store.Get(ctx, key)
	if err != nil {
		err = fmt.Errorf("get %s/%s: %w", f.Store, key, err)
		if errors.Is(err, storage.ErrNotFound) {
			return err // listed a moment ago: deleted, not flaky
		}
		return &storageError{err}
	}
	defer body.Close()
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s/%s: %w", f.Store, key, err)
		}
	}()
	var r io.Reader = &storageReader{ctx: ctx, r: body}
	var dec io.ReadCloser
	if f.Crypter != nil {
		dec, err = f.Crypter.Decrypt(r)
		if err != nil {
			return fmt.Errorf("%s decryption: %w", f.Crypter.Name(), err)
		}
		r = dec
	}
	zr, err := m.NewReader(r)
	if err != nil {
		return fmt.Errorf("%s decompression: %w", m.Name(), err)
	}
	err = ex.Extract(zr, buf)
	if err == nil {
		// Read to the end: encryption is only verified there, and
		// anything after the tar's end marker must still decode.
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{zr}, buf)
		if err != nil {
			err = fmt.Errorf("after the end of the tar: %w", err)
		}
	}
	if cerr := zr.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s decompression: %w", m.Name(), cerr)
	}
	// Closing the decryptor verifies the rest of the object, which means
	// reading it: only worth it when everything else succeeded.
	if dec != nil && err == nil {
		if cerr := dec.Close(); cerr != nil {
			err = fmt.Errorf("%s decryption: %w", f.Crypter.Name(), cerr)
		}
	}
	return err
}

// storageError marks failures of the storage itself, which are retried.
type storageError struct{ err error }

func (e *storageError) Error() string { return e.err.Error() }
func (e *storageError) Unwrap() error { return e.err }

// storageReader tags read errors of an object body as storage errors and
// stops reading once ctx is cancelled.
type storageReader struct {
	ctx context.Context
	r   io.Reader
}

func (s *storageReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &storageError{fmt.Errorf("read from storage: %w", err)}
	}
	return n, err
}

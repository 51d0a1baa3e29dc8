package wal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
)

// PrefetchDir is WAL-G's prefetch directory for a restore destination:
// <WALG_PREFETCH_DIR or dir(dest)>/.wal-g/prefetch.
func PrefetchDir(prefetchBase, dest string) string {
	if prefetchBase == "" {
		prefetchBase = filepath.Dir(dest)
	}
	return filepath.Join(prefetchBase, ".wal-g", "prefetch")
}

// ShouldPrefetch mirrors WAL-G: no prefetch after history or partial files,
// or when only one download at a time is allowed.
func ShouldPrefetch(name string, downloadConcurrency int) bool {
	return downloadConcurrency > 1 && !strings.Contains(name, "history") && !strings.Contains(name, "partial")
}

// walPageMagicMin is the lowest XLOG_PAGE_MAGIC of any supported
// PostgreSQL release; a prefetched file that does not start with a WAL page
// header is not used.
const walPageMagicMin = 0xD061

// TakePrefetched moves a prefetched copy of name to dest when one is ready
// and looks sound. It waits briefly for a download in progress, as WAL-G
// does, and reports whether dest now holds the file.
func (r *Restorer) TakePrefetched(prefetchDir, name, dest string) bool {
	ready := filepath.Join(prefetchDir, name)
	running := filepath.Join(prefetchDir, "running", name)
	if _, err := os.Stat(ready); err != nil {
		if !r.waitRunning(running, ready) {
			return false
		}
	}
	st, err := os.Stat(ready)
	if err != nil || st.Size() != r.SegmentSize || !hasWALMagic(ready) {
		os.Remove(ready)
		return false
	}
	if resolved, err := filepath.EvalSymlinks(dest); err == nil {
		dest = resolved
	}
	if err := os.Rename(ready, dest); err != nil {
		// Another filesystem: fall back to a normal download.
		r.log().Debug("cannot move prefetched file", "from", ready, "to", dest, "error", err)
		return false
	}
	if err := syncDir(filepath.Dir(dest)); err != nil {
		r.log().Warn("wal-fetch: fsync after moving prefetched file", "error", err)
	}
	r.log().Info("wal-fetch: used prefetched file", "file", name)
	return true
}

// waitRunning waits while a prefetch of the file is growing; it gives up
// after 200 ms without growth, removing the stalled download.
func (r *Restorer) waitRunning(running, ready string) bool {
	st, err := os.Stat(running)
	if err != nil {
		return false
	}
	last, stalled := st.Size(), 0
	for stalled < 100 {
		time.Sleep(2 * time.Millisecond)
		if _, err := os.Stat(ready); err == nil {
			return true
		}
		st, err := os.Stat(running)
		if err != nil {
			_, err := os.Stat(ready)
			return err == nil
		}
		if st.Size() == last {
			stalled++
		} else {
			last, stalled = st.Size(), 0
		}
	}
	os.Remove(running)
	return false
}

func hasWALMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(b[:]) >= walPageMagicMin
}

// MaxPrefetchParallel bounds simultaneous prefetch downloads whatever
// WALG_DOWNLOAD_CONCURRENCY asks: each holds a decompressor (WAL-G writes
// lz4 frames with 4 MiB blocks), so this keeps the prefetcher's memory
// predictable while still fetching ahead of replay.
const MaxPrefetchParallel = 4

// Prefetch downloads the count segments that follow name into prefetchDir,
// each through running/ and renamed when complete, and removes prefetched
// files older than name.
func (r *Restorer) Prefetch(ctx context.Context, name, prefetchDir string, count int) error {
	seg, err := ParseSegment(name, r.SegmentSize)
	if err != nil {
		return err
	}
	runningDir := filepath.Join(prefetchDir, "running")
	if err := os.MkdirAll(runningDir, 0o755); err != nil {
		return fmt.Errorf("create prefetch directory: %w", err)
	}
	r.cleanPrefetch(prefetchDir, seg)
	r.cleanPrefetch(runningDir, seg)

	sem := make(chan struct{}, MaxPrefetchParallel)
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		seg = seg.Next()
		next := seg.Name(r.SegmentSize)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.prefetchOne(ctx, next, prefetchDir, runningDir); err != nil && !errors.Is(err, storage.ErrNotFound) {
				r.log().Debug("prefetch failed", "file", next, "error", err)
			}
		}()
	}
	wg.Wait()
	return nil
}

func (r *Restorer) prefetchOne(ctx context.Context, name, prefetchDir, runningDir string) error {
	final := filepath.Join(prefetchDir, name)
	running := filepath.Join(runningDir, name)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	f, err := os.OpenFile(running, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil // someone else is fetching it
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(running)
		}
	}()
	src, _, err := r.Open(ctx, name)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{src}, buf)
	if cerr := src.Close(); err == nil {
		err = cerr // integrity is known only once the stream is closed
	}
	if err != nil {
		return err
	}
	// fsync before the rename: a file under its final name must be whole,
	// or replay could stop early at a hole and end recovery too soon.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	ok = true
	if _, err := os.Stat(final); err == nil {
		os.Remove(running)
		return nil
	}
	return os.Rename(running, final)
}

// cleanPrefetch removes files for segments before cur.
func (r *Restorer) cleanPrefetch(dir string, cur Segment) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		seg, err := ParseSegment(e.Name(), r.SegmentSize)
		if err != nil || !seg.Before(cur) {
			continue
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

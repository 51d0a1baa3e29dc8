package wal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/internal/fsutil"
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
// or when only one download at a time is allowed; and only after a segment,
// since only a segment has a successor.
func ShouldPrefetch(name string, downloadConcurrency int) bool {
	return downloadConcurrency > 1 && IsSegmentName(name)
}

// PrefetchOptions say where prefetched segments go and how the prefetch
// after a fetch runs.
type PrefetchOptions struct {
	// Dir is PrefetchDir(WALG_PREFETCH_DIR, dest).
	Dir string
	// Count is WALG_DOWNLOAD_CONCURRENCY; below 2 nothing is prefetched.
	Count int
	// Start runs the prefetch of the segments after name, without waiting
	// for it: a detached process for the command, a goroutine for the
	// daemon. Nil: no prefetch.
	Start func(name string)
}

// Restore is wal-fetch, for the command and the daemon alike: the
// prefetched copy of a segment when one is ready and sound, else a
// download (Fetch). Then, whatever the outcome (a miss now is often the
// segment PostgreSQL asks for next, as WAL-G reasons) but not after
// cancellation, it starts the prefetch of the following segments.
func (r *Restorer) Restore(ctx context.Context, name, dest string, p PrefetchOptions) (err error) {
	if p.Start != nil && ShouldPrefetch(name, p.Count) {
		defer func() {
			if ctx.Err() == nil {
				p.Start(name)
			}
		}()
	}
	if IsSegmentName(name) && p.Dir != "" && r.TakePrefetched(p.Dir, name, dest) {
		return nil
	}
	return r.Fetch(ctx, name, dest)
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
	st, err := os.Lstat(ready)
	if err != nil || !st.Mode().IsRegular() || st.Size() != r.SegmentSize || !hasWALMagic(ready) {
		os.Remove(ready)
		return false
	}
	if err := os.Rename(ready, dest); err != nil {
		// Another filesystem: fall back to a normal download.
		r.log().Debug("cannot move prefetched file", "from", ready, "to", dest, "error", err)
		return false
	}
	if err := fsutil.SyncDir(filepath.Dir(dest)); err != nil {
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
	if r.RetryTimeout > 0 {
		// Work ahead of replay is bounded like a fetch: a prefetcher must
		// not linger for minutes inside the storage client's retries.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.RetryTimeout)
		defer cancel()
	}
	runningDir := filepath.Join(prefetchDir, "running")
	if err := os.MkdirAll(runningDir, 0o700); err != nil {
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
	if _, err := os.Lstat(final); err == nil {
		return nil
	}
	f, err := fsutil.Create(running, 0o600)
	if err != nil {
		return nil // someone else is fetching it (or something is in the way)
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
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, ctxReader{ctx, src}, buf)
	if cerr := src.Close(); err == nil {
		err = cerr // integrity (and the size rule) is known only once the stream is closed
	}
	if err != nil {
		return err
	}
	if _, err := os.Lstat(final); err == nil {
		return nil // prefetched meanwhile by another run
	}
	// A file under its final name must be whole, or replay could stop early
	// at a hole and end recovery too soon.
	ok = true
	if err := fsutil.Commit(f, final); err != nil {
		os.Remove(running)
		return err
	}
	return nil
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

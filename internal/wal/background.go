package wal

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// backgroundUploader uploads the .ready files that follow the one being
// pushed, with WAL-G's look-ahead rules: a fixed number of workers, a cap
// on uploads per wal-push call, and a marker written only after the object
// is stored so the later wal-push of that file returns at once.
type backgroundUploader struct {
	a      *Archiver
	opts   PushOptions
	dir    string // the directory holding the WAL files
	status Status

	// ctx ends the scanning when the foreground upload is done; uploads run
	// under parent, so they finish then but stop on cancellation (SIGTERM).
	ctx    context.Context
	parent context.Context
	cancel context.CancelFunc
	jobs   chan string
	wg     sync.WaitGroup
	scan   sync.WaitGroup

	mu       sync.Mutex
	started  map[string]bool
	uploaded int
}

const readyPollInterval = 100 * time.Millisecond

func (a *Archiver) startBackground(ctx context.Context, path string, opts PushOptions) *backgroundUploader {
	dir := filepath.Dir(path)
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	b := &backgroundUploader{
		a: a, opts: opts, dir: dir, status: StatusFor(path, opts.MarkerDir),
		ctx: ctx, parent: parent, cancel: cancel,
		jobs:    make(chan string),
		started: map[string]bool{filepath.Base(path): true},
	}
	if err := os.MkdirAll(opts.MarkerDir, 0o700); err != nil {
		a.log().Warn("wal-push: no background uploads: cannot create marker directory", "dir", opts.MarkerDir, "error", err)
		cancel()
		return nil
	}
	for i := 0; i < opts.Concurrency-1; i++ {
		b.wg.Add(1)
		go b.worker()
	}
	b.scan.Add(1)
	go b.scanLoop(filepath.Base(path))
	return b
}

// stop ends scanning and waits for uploads already started; they either
// finish (and are marked) or fail (and PostgreSQL pushes the file later).
func (b *backgroundUploader) stop() {
	if b == nil {
		return
	}
	b.cancel()
	b.scan.Wait()
	close(b.jobs)
	b.wg.Wait()
}

func (b *backgroundUploader) limitReached() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.uploaded >= b.opts.BackgroundLimit-1
}

// claim marks name as taken; false when it was taken before, or when its
// marker already exists.
func (b *backgroundUploader) claim(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started[name] {
		return false
	}
	b.started[name] = true
	return !b.status.HasMarker(name)
}

func (b *backgroundUploader) offer(name string) bool {
	if !b.claim(name) {
		return true
	}
	select {
	case b.jobs <- name:
		return true
	case <-b.ctx.Done():
		return false
	}
}

func (b *backgroundUploader) scanLoop(pushed string) {
	defer b.scan.Done()
	// Phase 1: the segments that follow in sequence, while their .ready
	// files exist.
	if seg, err := ParseSegment(pushed, b.a.SegmentSize); err == nil {
		for i := 0; i < b.opts.BackgroundLimit-1; i++ {
			seg = seg.Next()
			next := seg.Name(b.a.SegmentSize)
			if !b.status.IsReady(next) {
				break
			}
			if !b.offer(next) {
				return
			}
		}
	}
	// Phase 2: whatever else PostgreSQL marks ready, until the foreground
	// upload ends or the cap is reached.
	t := time.NewTicker(readyPollInterval)
	defer t.Stop()
	for !b.limitReached() {
		ready, _ := b.status.Ready()
		for _, name := range ready {
			if !b.offer(name) {
				return
			}
		}
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *backgroundUploader) worker() {
	defer b.wg.Done()
	for name := range b.jobs {
		if b.limitReached() {
			continue
		}
		// Uploads use the parent context: once started, a background
		// upload is allowed to finish when the foreground one does, but
		// not past cancellation.
		if err := b.a.PushFile(b.parent, filepath.Join(b.dir, name)); err != nil {
			b.a.log().Warn("wal-push: background upload failed; PostgreSQL will retry it", "file", name, "error", err)
			continue
		}
		if err := b.status.WriteMarker(name); err != nil {
			b.a.log().Warn("wal-push: the file will be uploaded again", "file", name, "error", err)
		}
		if b.opts.ReadyRename {
			if err := b.status.MarkDone(name); err != nil {
				b.a.log().Warn("wal-push: background upload stored", "file", name, "error", err)
			}
		}
		b.mu.Lock()
		b.uploaded++
		b.mu.Unlock()
	}
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// WALHandler serves pushes and fetches with a fixed pool of upload workers
// that lives as long as the daemon. Each push also queues the following
// .ready files (look-ahead), so by the time PostgreSQL asks for them they
// are usually stored and the answer is immediate.
//
// Memory is bounded by construction: Workers uploads at a time (each with
// one reusable encoder), at most LookAhead queued or finished-but-unclaimed
// jobs, and one prefetch run at a time.
type WALHandler struct {
	Archiver *wal.Archiver
	Restorer *wal.Restorer
	Workers  int
	// LookAhead bounds the background jobs queued beyond the requested file.
	LookAhead int
	// UploadTimeout bounds one upload (WALG_DAEMON_WAL_UPLOAD_TIMEOUT).
	UploadTimeout time.Duration
	// PGData confines fetch destinations: a file is written only inside it,
	// as pushes are read only from inside it.
	PGData string
	// MarkerDir is WAL-G's walg_archive_status: markers left by a one-shot
	// wal-push are honoured (and consumed).
	MarkerDir string
	// ReadyRename renames .ready to .done after a background upload.
	ReadyRename bool
	// Prefetch is WALG_DOWNLOAD_CONCURRENCY (segments fetched ahead of
	// replay); PrefetchBase is WALG_PREFETCH_DIR.
	Prefetch     int
	PrefetchBase string
	Log          *slog.Logger
	Metrics      *Metrics

	ctx        context.Context
	foreground chan *job
	background chan *job
	wg         sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job // queued, running, or done and not yet claimed

	prefetching atomic.Bool
}

type job struct {
	name, path string
	done       chan struct{}
	err        error
	background bool
}

// Start launches the workers; they stop when ctx is cancelled, after their
// current upload.
func (h *WALHandler) Start(ctx context.Context) {
	h.ctx = ctx
	h.jobs = map[string]*job{}
	if h.Metrics == nil {
		h.Metrics = &Metrics{}
	}
	h.foreground = make(chan *job, max(h.Workers, 1))
	h.background = make(chan *job, max(h.LookAhead, 1))
	for i := 0; i < max(h.Workers, 1); i++ {
		h.wg.Add(1)
		go h.worker()
	}
}

// Wait returns when every worker has stopped.
func (h *WALHandler) Wait() { h.wg.Wait() }

func (h *WALHandler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

func (h *WALHandler) worker() {
	defer h.wg.Done()
	for {
		// Requests PostgreSQL is waiting for go before look-ahead.
		var j *job
		select {
		case j = <-h.foreground:
		default:
			select {
			case j = <-h.foreground:
			case j = <-h.background:
			case <-h.ctx.Done():
				return
			}
		}
		h.run(j)
	}
}

func (h *WALHandler) run(j *job) {
	h.Metrics.inFlight.Add(1)
	defer h.Metrics.inFlight.Add(-1)
	ctx := h.ctx
	var cancel context.CancelFunc = func() {}
	if h.UploadTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, h.UploadTimeout)
	}
	j.err = h.Archiver.PushFile(ctx, j.path)
	cancel()
	if j.err != nil {
		h.Metrics.failures.Add(1)
		if j.background {
			h.log().Warn("daemon: background upload failed; PostgreSQL will push it again", "file", j.name, "error", j.err)
		}
	} else {
		h.Metrics.uploads.Add(1)
		if j.background && h.ReadyRename {
			if err := wal.StatusFor(j.path, h.MarkerDir).MarkDone(j.name); err != nil {
				h.log().Warn("daemon: background upload stored", "file", j.name, "error", err)
			}
		}
	}
	if j.background && j.err != nil {
		// Forget it: the next push of this file uploads it afresh.
		h.mu.Lock()
		if h.jobs[j.name] == j {
			delete(h.jobs, j.name)
		}
		h.mu.Unlock()
	}
	close(j.done)
}

// Push returns once the file is stored: at once when a background upload
// already stored it, else after waiting for (or running) its upload.
func (h *WALHandler) Push(ctx context.Context, path string) error {
	name := filepath.Base(path)
	h.lookAhead(path)
	for {
		h.mu.Lock()
		j, ok := h.jobs[name]
		if !ok {
			if h.consumeMarker(name) {
				h.mu.Unlock()
				return nil
			}
			j = &job{name: name, path: path, done: make(chan struct{})}
			h.jobs[name] = j
			h.mu.Unlock()
			select {
			case h.foreground <- j:
			case <-ctx.Done():
				h.forget(j)
				return ctx.Err()
			}
		} else {
			h.mu.Unlock()
		}
		select {
		case <-j.done:
		case <-ctx.Done():
			// The upload goes on; PostgreSQL's retry will find it.
			return ctx.Err()
		}
		h.forget(j)
		if j.err == nil || !j.background {
			return j.err
		}
		// A failed background attempt: upload it now, in the foreground.
	}
}

func (h *WALHandler) forget(j *job) {
	h.mu.Lock()
	if h.jobs[j.name] == j {
		delete(h.jobs, j.name)
	}
	h.mu.Unlock()
}

// consumeMarker honours a marker left by a one-shot wal-push's background
// upload. Called with h.mu held.
func (h *WALHandler) consumeMarker(name string) bool {
	taken, err := wal.Status{MarkerDir: h.MarkerDir}.TakeMarker(name)
	if err != nil {
		h.log().Warn("daemon: the file will be uploaded again", "file", name, "error", err)
	}
	return taken
}

// lookAhead queues the .ready files after path, without blocking, up to the
// look-ahead bound, and drops finished jobs PostgreSQL no longer needs.
func (h *WALHandler) lookAhead(path string) {
	if h.LookAhead <= 0 {
		return
	}
	dir := filepath.Dir(path)
	status := wal.StatusFor(path, h.MarkerDir)
	ready, err := status.Ready() // in PostgreSQL's archiving order
	if err != nil {
		return
	}
	h.Metrics.backlog.Store(int64(len(ready)))
	h.mu.Lock()
	defer h.mu.Unlock()
	isReady := make(map[string]bool, len(ready))
	for _, n := range ready {
		isReady[n] = true
	}
	// A finished job whose .ready is gone was archived by other means (or
	// renamed by PG_READY_RENAME): nobody will claim it.
	for n, j := range h.jobs {
		select {
		case <-j.done:
			if j.background && !isReady[n] {
				delete(h.jobs, n)
			}
		default:
		}
	}
	queued := 0
	for _, j := range h.jobs {
		if j.background {
			queued++
		}
	}
	base := filepath.Base(path)
	for _, n := range ready {
		if queued >= h.LookAhead {
			return
		}
		if n == base || h.jobs[n] != nil {
			continue
		}
		if status.HasMarker(n) {
			continue
		}
		j := &job{name: n, path: filepath.Join(dir, n), done: make(chan struct{}), background: true}
		select {
		case h.background <- j:
			h.jobs[n] = j
			queued++
		default:
			return
		}
	}
}

// Fetch restores one file, from the prefetch directory when it is there,
// and starts prefetching the following segments.
func (h *WALHandler) Fetch(ctx context.Context, name, dest string) (err error) {
	h.Metrics.fetches.Add(1)
	defer func() {
		if errors.Is(err, storage.ErrNotFound) {
			h.Metrics.fetchMiss.Add(1)
		}
	}()
	if err := h.confined(dest); err != nil {
		return err
	}
	dir := wal.PrefetchDir(h.PrefetchBase, dest)
	return h.Restorer.Restore(ctx, name, dest, wal.PrefetchOptions{
		Dir:   dir,
		Count: h.Prefetch,
		Start: func(name string) { h.startPrefetch(name, dir) },
	})
}

// confined refuses a destination that is not a path strictly inside
// PGData, judged on the cleaned path as pushes are (symlinks inside PGDATA,
// such as pg_wal on another disk, are the administrator's and are kept).
func (h *WALHandler) confined(dest string) error {
	if h.PGData == "" {
		return errors.New("wal-fetch: PGDATA is not set; refusing to write a destination the daemon cannot confine")
	}
	root := filepath.Clean(h.PGData)
	if !filepath.IsAbs(dest) || !strings.HasPrefix(filepath.Clean(dest), root+string(filepath.Separator)) {
		return fmt.Errorf("wal-fetch: destination %q is outside PGDATA %s", dest, root)
	}
	return nil
}

// startPrefetch runs one prefetch at a time, in the daemon's process.
func (h *WALHandler) startPrefetch(name, dir string) {
	if !h.prefetching.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer h.prefetching.Store(false)
		if err := h.Restorer.Prefetch(h.ctx, name, dir, h.Prefetch); err != nil {
			h.log().Debug("daemon: prefetch", "error", err)
		}
	}()
}

// NotFound reports whether err means the file is not archived.
func (h *WALHandler) NotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }

package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/internal/bufpool"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
)

// Archiver uploads WAL files with WAL-G's names and rules.
type Archiver struct {
	Store storage.Storage
	// NewEncoder makes one encoder per concurrent upload; encoders are kept
	// and reused for the Archiver's life.
	NewEncoder func() *pipe.Encoder
	// Buffering is how encoded bytes reach storage (BufferStream,
	// BufferRecompress, BufferMemory; see ChooseBuffering).
	Buffering string
	// Pool backs BufferMemory spools.
	Pool *bufpool.Pool
	// SpoolDir, when set, holds BufferMemory's encoded file instead of
	// Pool: one encoding pass as with memory, but the heap does not hold
	// the encoded object (wal-receive, which has a spool directory).
	SpoolDir    *os.Root
	SegmentSize int64
	// PreventOverwrite is WALG_PREVENT_WAL_OVERWRITE; .history files are
	// always checked.
	PreventOverwrite bool
	// Restorer reads existing objects for the overwrite check.
	Restorer *Restorer
	Log      *slog.Logger
	// Uploaded, when set, is told of every stored file (for metrics).
	Uploaded func(in, out int64)

	encMu    sync.Mutex
	encoders []*pipe.Encoder
}

// PushOptions are the background look-ahead settings of one wal-push.
type PushOptions struct {
	// Concurrency is WALG_UPLOAD_CONCURRENCY: Concurrency-1 background
	// workers upload the following .ready files.
	Concurrency int
	// BackgroundLimit is TOTAL_BG_UPLOADED_LIMIT: at most BackgroundLimit-1
	// background uploads per call.
	BackgroundLimit int
	// ReadyRename is PG_READY_RENAME: rename .ready to .done after a
	// background upload.
	ReadyRename bool
	// MarkerDir holds WAL-G's walg_archive_status markers.
	MarkerDir string
}

// MarkerDir is where WAL-G keeps its background-upload markers: under
// PGDATA's pg_wal when PGDATA is known, else beside the pushed file.
func MarkerDir(pgdata, walPath string) string {
	if pgdata != "" {
		for _, d := range []string{"pg_wal", "pg_xlog"} {
			p := filepath.Join(pgdata, d)
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				return filepath.Join(p, "walg_data", "walg_archive_status")
			}
		}
	}
	return filepath.Join(filepath.Dir(walPath), "walg_data", "walg_archive_status")
}

// Push archives the file at path as WAL-G's wal-push does: a file already
// uploaded by a background worker is only acknowledged; otherwise it is
// uploaded (after the overwrite check), while background workers upload the
// following .ready files. It returns only when the file is durably stored.
func (a *Archiver) Push(ctx context.Context, path string, opts PushOptions) error {
	name := filepath.Base(path)
	taken, err := StatusFor(path, opts.MarkerDir).TakeMarker(name)
	if err != nil {
		return fmt.Errorf("wal-push %s: %w", name, err)
	}
	if taken {
		a.log().Info("wal-push: already uploaded in the background", "file", name)
		return nil
	}
	var bg *backgroundUploader
	if opts.Concurrency > 1 && opts.BackgroundLimit > 1 && opts.MarkerDir != "" {
		bg = a.startBackground(ctx, path, opts)
	}
	err = a.PushFile(ctx, path)
	if bg != nil {
		bg.stop()
	}
	return err
}

// PushFile uploads one file, applying the size and overwrite rules, and
// logs one line. With overwrite prevention (WALG_PREVENT_WAL_OVERWRITE,
// always for .history files) the object is created only if its key is free,
// atomically where the storage can (storage.Creator): of concurrent pushes
// of different contents exactly one succeeds and the others fail with
// "contents differ"; an equal content already stored is success.
func (a *Archiver) PushFile(ctx context.Context, path string) error {
	name := filepath.Base(path)
	prevent := a.PreventOverwrite || strings.HasSuffix(name, ".history")
	if prevent {
		same, err := a.alreadyArchived(ctx, name, path)
		if err != nil {
			return err
		}
		if same {
			a.log().Info("wal-push: already archived with equal content, skipping", "file", name)
			return nil
		}
	}
	enc := a.getEncoder()
	start := time.Now()
	key := Folder + name
	if ext := enc.Method().Ext(); ext != "" {
		key += "." + ext
	}
	in, out, err := a.uploadFile(ctx, enc, path, key, prevent)
	// uploadFile returns only once the encoder has stopped, whatever
	// failed, and Encode resets it before each use: it can serve the next
	// upload (dropping it would cost a new compressor per failure during a
	// storage outage).
	a.putEncoder(enc)
	if err != nil {
		if prevent && errors.Is(err, storage.ErrExists) {
			return a.lostRace(ctx, name, path)
		}
		return err
	}
	if a.Uploaded != nil {
		a.Uploaded(in, out)
	}
	a.log().Info("wal-push: uploaded", "file", name, "key", key, "bytes_in", in, "bytes_out", out, "ms", time.Since(start).Milliseconds())
	return nil
}

// lostRace handles a create that found its key taken after the check said
// it was free: another push stored it meanwhile. Equal content is success.
func (a *Archiver) lostRace(ctx context.Context, name, path string) error {
	same, err := a.alreadyArchived(ctx, name, path)
	if err != nil {
		return err
	}
	if !same {
		// Deleted again in between: refuse rather than loop.
		return fmt.Errorf("WAL file '%s' was being archived concurrently; not overwriting", path)
	}
	a.log().Info("wal-push: archived concurrently with equal content", "file", name)
	return nil
}

func (a *Archiver) getEncoder() *pipe.Encoder {
	a.encMu.Lock()
	defer a.encMu.Unlock()
	if n := len(a.encoders); n > 0 {
		e := a.encoders[n-1]
		a.encoders = a.encoders[:n-1]
		return e
	}
	return a.NewEncoder()
}

func (a *Archiver) putEncoder(e *pipe.Encoder) {
	a.encMu.Lock()
	a.encoders = append(a.encoders, e)
	a.encMu.Unlock()
}

// alreadyArchived reports whether name is stored with exactly the content
// of the local file. Stored with other content is an error: archiving must
// never replace a different file silently.
func (a *Archiver) alreadyArchived(ctx context.Context, name, path string) (bool, error) {
	stored, key, err := a.Restorer.Open(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("overwrite check for %s: %w", name, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open WAL file: %w", err)
	}
	defer f.Close()
	equal, err := sameContent(stored, f)
	if cerr := stored.Close(); err == nil && equal {
		err = cerr // a stored object that fails verification is not "equal"
	}
	if err != nil {
		return false, fmt.Errorf("overwrite check for %s against %s/%s: %w", path, a.Store, key, err)
	}
	if !equal {
		return false, fmt.Errorf("WAL file '%s' already archived as %s/%s, contents differ, unable to overwrite", path, a.Store, key)
	}
	return true, nil
}

// sameContent compares two streams with two small buffers.
func sameContent(a, b io.Reader) (bool, error) {
	const n = 32 << 10
	bufA, bufB := make([]byte, n), make([]byte, n)
	for {
		na, errA := io.ReadFull(a, bufA)
		nb, errB := io.ReadFull(b, bufB)
		if errA != nil && errA != io.EOF && errA != io.ErrUnexpectedEOF {
			return false, errA
		}
		if errB != nil && errB != io.EOF && errB != io.ErrUnexpectedEOF {
			return false, errB
		}
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if errA != nil || errB != nil {
			return errA != nil && errB != nil, nil
		}
	}
}

func (a *Archiver) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

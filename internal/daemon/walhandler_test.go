package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/daemon/wire"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/wal"
)

const testSegSize = 1 << 20

// testArchiver is an lz4 archiver and restorer on file storage in dir.
func testArchiver(t *testing.T, dir string) (*file.Storage, *wal.Archiver, *wal.Restorer) {
	t.Helper()
	store, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := codec.ByName("lz4")
	r := &wal.Restorer{Store: store, SegmentSize: testSegSize, RetryTimeout: time.Minute}
	a := &wal.Archiver{Store: store, Buffering: wal.BufferStream, SegmentSize: testSegSize, Restorer: r,
		NewEncoder: func() *pipe.Encoder { return pipe.NewEncoder(m, nil) }}
	return store, a, r
}

// A fetch destination is confined to PGDATA, as a push source is: a
// client cannot make the daemon write anywhere else.
func TestFetchDestinationConfinedToPGDATA(t *testing.T) {
	base, err := os.MkdirTemp("", "tusk-confine-") // short: the socket lives here
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	pgdata := filepath.Join(base, "pg")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(pgdata, "pg_wal"), outside, filepath.Join(outside, pgdata)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	_, a, r := testArchiver(t, filepath.Join(base, "archive"))
	name := "000000010000000000000001"
	src := filepath.Join(base, name)
	seg := make([]byte, testSegSize)
	seg[0], seg[1] = 0x10, 0xD1
	if err := os.WriteFile(src, seg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.PushFile(context.Background(), src); err != nil {
		t.Fatal(err)
	}

	h := &WALHandler{Archiver: a, Restorer: r, Workers: 1, PGData: pgdata}
	ctx, cancel := context.WithCancel(context.Background())
	h.Start(ctx)
	sock := filepath.Join(base, "d.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, PGData: pgdata, MaxConnections: 4}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done; h.Wait() })

	for _, dest := range []string{
		"../outside/x",
		"../../x",
		filepath.Join(outside, pgdata, "x"), // contains PGDATA, lies outside
		pgdata + "/../outside/y",
		pgdata, // PGDATA itself is not a file inside it
	} {
		if got := request(t, sock, wire.TypeWalFetch, name, dest); got != wire.ReplyError {
			t.Errorf("fetch to %q: reply %q, want %q", dest, got, wire.ReplyError)
		}
	}
	var found []string
	filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !filepath.HasPrefix(p, filepath.Join(base, "archive")) && p != src && p != sock {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 0 {
		t.Fatalf("refused fetches wrote %v", found)
	}
	if got := request(t, sock, wire.TypeWalFetch, name, "pg_wal/RECOVERYXLOG"); got != wire.ReplyOK {
		t.Fatalf("fetch to pg_wal/RECOVERYXLOG: reply %q", got)
	}
	if st, err := os.Stat(filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")); err != nil || st.Size() != testSegSize {
		t.Fatalf("fetched file: %v", err)
	}
}

// lockedBuffer is a log sink the workers and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// With PG_READY_RENAME, a background upload whose .ready cannot be renamed
// to .done is reported, as the one-shot look-ahead reports it: the file is
// stored, but PostgreSQL will push it again, and the operator must see why.
func TestBackgroundReadyRenameFailureIsReported(t *testing.T) {
	base := t.TempDir()
	walDir := filepath.Join(base, "pg_wal")
	status := filepath.Join(walDir, "archive_status")
	if err := os.MkdirAll(status, 0o700); err != nil {
		t.Fatal(err)
	}
	store, a, r := testArchiver(t, filepath.Join(base, "archive"))
	first, next := "000000010000000000000001", "000000010000000000000002"
	seg := make([]byte, testSegSize)
	seg[0], seg[1] = 0x10, 0xD1
	for _, n := range []string{first, next} {
		if err := os.WriteFile(filepath.Join(walDir, n), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(status, n+".ready"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A non-empty directory at next's .done name: rename(2) onto it fails
	// for any user, root included.
	if err := os.MkdirAll(filepath.Join(status, next+".done", "x"), 0o700); err != nil {
		t.Fatal(err)
	}

	var logs lockedBuffer
	h := &WALHandler{Archiver: a, Restorer: r, Workers: 2, LookAhead: 4, ReadyRename: true,
		PGData: base, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	h.Start(ctx)
	t.Cleanup(func() { cancel(); h.Wait() })

	if err := h.Push(ctx, filepath.Join(walDir, first)); err != nil {
		t.Fatal(err)
	}
	// The look-ahead queued next; its push waits for that background job.
	if err := h.Push(ctx, filepath.Join(walDir, next)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Stat(ctx, wal.Folder+next+".lz4"); err != nil {
		t.Fatalf("%s not stored: %v", next, err)
	}
	if _, err := os.Stat(filepath.Join(status, next+".ready")); err != nil {
		t.Fatalf("%s.ready should remain when the rename fails: %v", next, err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, next) || !strings.Contains(out, ".done") {
		t.Fatalf("the failed rename of %s.ready was not reported; log:\n%s", next, out)
	}
}

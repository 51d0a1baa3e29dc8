package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

type countingProgress struct{ n, calls atomic.Int64 }

func (c *countingProgress) Add(n int64) {
	c.n.Add(n)
	c.calls.Add(1)
}

func TestFetchReportsBytesWritten(t *testing.T) {
	st := newFileStore(t)
	putBackup(t, st, testBackup, &Sentinel{LSN: 1, FinishLSN: 2, Version: 2, PgVersion: 150000}, syntheticTars())
	var p countingProgress
	f := &Fetcher{Store: st, Concurrency: 3}
	res, err := f.Fetch(context.Background(), testBackup, filepath.Join(t.TempDir(), "restore"), FetchOptions{Progress: &p})
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes == 0 || p.n.Load() != res.Bytes {
		t.Fatalf("progress saw %d bytes, the restore wrote %d", p.n.Load(), res.Bytes)
	}
	// 200000 bytes through a 64 KiB buffer: counted as it is written, not
	// once per file.
	if p.calls.Load() < 4 {
		t.Fatalf("progress called %d times; want per write", p.calls.Load())
	}
}

func TestEstimatePushSize(t *testing.T) {
	root := filepath.Join(t.TempDir(), "pgdata")
	tbs := filepath.Join(t.TempDir(), "tbs")
	write := func(dir, rel string, size int) {
		full := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(strings.Repeat("x", size)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Backed up: 3 + 8192 + 100 + 512 (tablespace) + 16 (pg_control).
	write(root, "PG_VERSION", 3)
	write(root, "base/1/1259", 8192)
	write(root, "postgresql.conf", 100)
	write(root, "global/pg_control", 16)
	write(tbs, "PG_15_202209061/5/16384", 512)
	// Not backed up: WAL, postmaster.pid, temporary files and relations.
	write(root, "pg_wal/000000010000000000000001", 16<<10)
	write(root, "postmaster.pid", 50)
	write(root, "base/pgsql_tmp/pgsql_tmp1.0", 1000)
	write(root, "base/1/t3_16500", 2000)
	if err := os.MkdirAll(filepath.Join(root, "pg_tblspc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tbs, filepath.Join(root, "pg_tblspc", "16384")); err != nil {
		t.Fatal(err)
	}
	got, err := EstimatePushSize(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(3 + 8192 + 100 + 512 + 16); got != want {
		t.Fatalf("EstimatePushSize = %d, want %d", got, want)
	}
	if _, err := EstimatePushSize(context.Background(), filepath.Join(root, "absent")); err == nil {
		t.Fatal("no error for a missing data directory")
	}
}

// TestPushReportsBytesRead packs a tree with a progress counter: every
// byte read from disk is reported, pg_control included, and on a tree
// that does not change the estimate is exact.
func TestPushReportsBytesRead(t *testing.T) {
	root := t.TempDir()
	var want int64
	for rel, n := range map[string]int{"base/1/1": 300000, "base/1/2": 5, "global/pg_control": 8192, "PG_VERSION": 3} {
		writeFile(t, filepath.Join(root, rel), pattern(n, 3))
		want += int64(n)
	}
	store := newFileStore(t)
	p := newTestPacker(t, store, 1<<20)
	var prog countingProgress
	p.progress = &prog
	bs := []*builder{p.newBuilder(&streamEncoder{method: lz4Method(t)}, nil), p.newBuilder(&streamEncoder{method: lz4Method(t)}, nil)}
	w := &walker{root: root, log: p.log}
	ctx := context.Background()
	if err := p.packAll(ctx, w, bs); err != nil {
		t.Fatal(err)
	}
	if err := p.storeFile(ctx, bs[0].enc, bs[0].buf, PgControlTarName("lz4"), *w.pgControl); err != nil {
		t.Fatal(err)
	}
	if got := prog.n.Load(); got != want {
		t.Fatalf("progress saw %d bytes read, the files hold %d", got, want)
	}
	est, err := EstimatePushSize(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if est != want {
		t.Fatalf("EstimatePushSize = %d, want %d", est, want)
	}
}

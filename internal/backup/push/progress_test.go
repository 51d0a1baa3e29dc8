package push

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pipe"
)

type countingProgress struct{ n, calls atomic.Int64 }

func (c *countingProgress) Add(n int64) {
	c.n.Add(n)
	c.calls.Add(1)
}

func TestEstimateSize(t *testing.T) {
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
	got, err := EstimateSize(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(3 + 8192 + 100 + 512 + 16); got != want {
		t.Fatalf("EstimateSize = %d, want %d", got, want)
	}
	if _, err := EstimateSize(context.Background(), filepath.Join(root, "absent")); err == nil {
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
	bs := []*builder{p.newBuilder(pipe.NewEncoder(lz4Method(t), nil), nil), p.newBuilder(pipe.NewEncoder(lz4Method(t), nil), nil)}
	w := &walker{root: root, log: p.log}
	ctx := context.Background()
	if err := p.packAll(ctx, w, bs); err != nil {
		t.Fatal(err)
	}
	if err := p.storeFile(ctx, bs[0].enc, bs[0].buf, backup.PgControlTarName("lz4"), *w.pgControl); err != nil {
		t.Fatal(err)
	}
	if got := prog.n.Load(); got != want {
		t.Fatalf("progress saw %d bytes read, the files hold %d", got, want)
	}
	est, err := EstimateSize(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if est != want {
		t.Fatalf("EstimateSize = %d, want %d", est, want)
	}
}

package restore

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
)

type countingProgress struct{ n, calls atomic.Int64 }

func (c *countingProgress) Add(n int64) {
	c.n.Add(n)
	c.calls.Add(1)
}

func TestFetchReportsBytesWritten(t *testing.T) {
	st := newFileStore(t)
	putBackup(t, st, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2, PgVersion: 150000}, syntheticTars())
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

package storecopy

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
)

var transferOpts = TransferOptions{AppearanceChecks: 3, AppearanceInterval: time.Millisecond}

// Every WAL object moves: the target holds it byte for byte and the
// source no longer does; an object both hold stays in both unless
// overwriting.
func TestTransferFiles(t *testing.T) {
	backends(t, func(t *testing.T, from, to storage.Storage) {
		objs := repo(t, from)
		wals := subset(objs, func(k string) bool { return strings.HasPrefix(k, "wal_005/") })
		kept := walKey(1, 4)
		put(t, to, kept, []byte("the target's own"))
		c := &Copier{From: from, To: to, Workers: 3, KeepExisting: true, KeepGoing: true}
		if err := c.TransferFiles(context.Background(), "wal_005/", transferOpts); err != nil {
			t.Fatal(err)
		}
		want := subset(wals, func(k string) bool { return k != kept })
		want[kept] = []byte("the target's own")
		checkSame(t, contents(t, to), want)
		left := subset(contents(t, from), func(k string) bool { return strings.HasPrefix(k, "wal_005/") })
		checkSame(t, left, map[string][]byte{kept: wals[kept]})
		if s := c.Stats(); s.Copied != int64(len(wals)-1) || s.Skipped != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

// --preserve copies only; --max-files bounds the objects moved.
func TestTransferPreserveAndLimit(t *testing.T) {
	from, to := fileStore(t), fileStore(t)
	objs := repo(t, from)
	c := &Copier{From: from, To: to, Workers: 2, KeepExisting: true, Limit: 4}
	if err := c.TransferFiles(context.Background(), "wal_005/", TransferOptions{Preserve: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(contents(t, to)); n != 4 {
		t.Errorf("%d objects moved with a limit of 4", n)
	}
	if n := len(contents(t, from)); n != len(objs) {
		t.Errorf("the source lost objects with --preserve: %d of %d left", n, len(objs))
	}
}

// Backups move whole: a backup's sentinel reaches the target after its
// files, and leaves the source only once all of it is in the target.
func TestTransferBackups(t *testing.T) {
	from := fileStore(t)
	objs := repo(t, from)
	rec := &recorder{Storage: fileStore(t)}
	c := &Copier{From: from, To: rec, Workers: 4, KeepExisting: true, KeepGoing: true}
	if err := c.TransferBackups(context.Background(), "", 0, transferOpts); err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, k := range rec.order {
		pos[k] = i
	}
	for _, name := range []string{full, delta} {
		sp, ok := pos[backup.SentinelKey(name)]
		if !ok {
			t.Fatalf("sentinel of %s not moved", name)
		}
		for k, i := range pos {
			if strings.HasPrefix(k, backup.Prefix+name+"/") && i > sp {
				t.Errorf("%s written after its backup's sentinel", k)
			}
		}
	}
	isBackup := func(k string) bool { return strings.HasPrefix(k, backup.Prefix) }
	checkSame(t, subset(contents(t, rec), isBackup), subset(objs, isBackup))
	if left := subset(contents(t, from), isBackup); len(left) != 0 {
		t.Errorf("left in the source: %d objects", len(left))
	}

	// A target that refuses one of a backup's files: the backup stays
	// whole in the source, and its sentinel does not reach the target.
	from = fileStore(t)
	repo(t, from)
	bad := &failing{Storage: fileStore(t), key: backup.TarKey(full, "pg_control.tar.lz4")}
	c = &Copier{From: from, To: bad, Workers: 2, KeepExisting: true, KeepGoing: true}
	err := c.TransferBackups(context.Background(), full, 0, transferOpts)
	if err == nil || !strings.Contains(err.Error(), "finished with") {
		t.Fatalf("err = %v", err)
	}
	if ok, _ := storage.Exists(context.Background(), bad, backup.SentinelKey(full)); ok {
		t.Error("the sentinel reached the target without the backup's files")
	}
	for _, k := range []string{backup.SentinelKey(full), backup.TarKey(full, "part_001.tar.lz4")} {
		if ok, _ := storage.Exists(context.Background(), from, k); !ok {
			t.Errorf("%s left the source though the backup did not reach the target", k)
		}
	}
}

type failing struct {
	storage.Storage
	key string
}

func (f *failing) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	if key == f.key {
		return errors.New("refused")
	}
	return f.Storage.Put(ctx, key, body, size)
}

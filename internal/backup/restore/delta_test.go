package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

func pages(fill ...byte) string {
	var b bytes.Buffer
	for _, c := range fill {
		b.Write(bytes.Repeat([]byte{c}, backup.IncrementBlockSize))
	}
	return b.String()
}

func incrementBody(fileSize uint64, blocks []uint32, fill []byte) string {
	var b bytes.Buffer
	backup.WriteIncrementHeader(&b, fileSize, blocks)
	for _, c := range fill {
		b.Write(bytes.Repeat([]byte{c}, backup.IncrementBlockSize))
	}
	return b.String()
}

const (
	testDelta1 = "base_000000010000000000000004_D_000000010000000000000002"
	testDelta2 = "base_000000010000000000000006_D_000000010000000000000004"
)

// putChain stores a full backup and two deltas on top of it.
func putChain(t *testing.T) *file.Storage {
	st := newFileStore(t)
	sys := uint64(42)
	putBackup(t, st, testBackup, &backup.Sentinel{LSN: 0x2000028, FinishLSN: 0x2000100, Version: 2, PgVersion: 150000, SystemIdentifier: &sys}, map[string][]entry{
		"part_001.tar.lz4": {{name: "/", typ: '5'}, {name: "/PG_VERSION", body: "15\n"},
			{name: "/base/1/1", body: pages('a', 'a', 'a')}, {name: "/base/1/2", body: "two"}, {name: "/base/5/3", body: "dropped later"}},
		"pg_control.tar.lz4":   {{name: "/global/pg_control", body: "control-1"}},
		"backup_label.tar.lz4": {{name: "backup_label", body: "label-1"}},
	})
	putFM(t, st, testBackup, map[string]backup.FileDescription{"/PG_VERSION": {}, "/base/1/1": {}, "/base/1/2": {}, "/base/5/3": {}})
	// Delta 1: page 1 of base/1/1 changed and the file grew a page; a new
	// file; base/1/2 and base/5/3 unchanged.
	putBackup(t, st, testDelta1, &backup.Sentinel{LSN: 0x4000028, DeltaLSN: 0x2000028, DeltaFrom: testBackup, DeltaFullName: testBackup, DeltaCount: 1,
		FinishLSN: 0x4000100, Version: 2, PgVersion: 150000, SystemIdentifier: &sys}, map[string][]entry{
		"part_001.tar.lz4": {{name: "/", typ: '5'}, {name: "/PG_VERSION", body: "15\n"},
			{name: "/base/1/1", body: incrementBody(4*backup.IncrementBlockSize, []uint32{1, 3}, []byte{'b', 'c'})}, {name: "/base/1/9", body: "new"}},
		"pg_control.tar.lz4":   {{name: "/global/pg_control", body: "control-2"}},
		"backup_label.tar.lz4": {{name: "backup_label", body: "label-2"}},
	})
	putFM(t, st, testDelta1, map[string]backup.FileDescription{"/PG_VERSION": {}, "/base/1/1": {IsIncremented: true},
		"/base/1/2": {IsSkipped: true}, "/base/5/3": {IsSkipped: true}, "/base/1/9": {}})
	// Delta 2: base/5/3 dropped; page 0 of base/1/1 changed.
	putBackup(t, st, testDelta2, &backup.Sentinel{LSN: 0x6000028, DeltaLSN: 0x4000028, DeltaFrom: testDelta1, DeltaFullName: testBackup, DeltaCount: 2,
		FinishLSN: 0x6000100, Version: 2, PgVersion: 150000, SystemIdentifier: &sys}, map[string][]entry{
		"part_001.tar.lz4": {{name: "/", typ: '5'}, {name: "/PG_VERSION", body: "15\n"},
			{name: "/base/1/1", body: incrementBody(4*backup.IncrementBlockSize, []uint32{0}, []byte{'d'})}},
		"pg_control.tar.lz4":   {{name: "/global/pg_control", body: "control-3"}},
		"backup_label.tar.lz4": {{name: "backup_label", body: "label-3"}},
	})
	putFM(t, st, testDelta2, map[string]backup.FileDescription{"/PG_VERSION": {}, "/base/1/1": {IsIncremented: true},
		"/base/1/2": {IsSkipped: true}, "/base/1/9": {IsSkipped: true}})
	return st
}

func putFM(t *testing.T, st *file.Storage, name string, files map[string]backup.FileDescription) {
	t.Helper()
	var b bytes.Buffer
	if err := backup.EncodeFilesMetadata(&b, &backup.FilesMetadata{Files: files}); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), backup.FilesMetadataKey(name), &b, int64(b.Len())); err != nil {
		t.Fatal(err)
	}
}

func TestFetchDeltaChain(t *testing.T) {
	st := putChain(t)
	for _, c := range []struct {
		name string
		want map[string]string
	}{
		{testDelta1, map[string]string{"PG_VERSION": "15\n", "base/1/1": pages('a', 'b', 'a', 'c'), "base/1/2": "two", "base/5/3": "dropped later",
			"base/1/9": "new", "global/pg_control": "control-2", "backup_label": "label-2"}},
		{testDelta2, map[string]string{"PG_VERSION": "15\n", "base/1/1": pages('d', 'b', 'a', 'c'), "base/1/2": "two",
			"base/1/9": "new", "global/pg_control": "control-3", "backup_label": "label-3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "restore")
			res, err := (&Fetcher{Store: st, Concurrency: 2}).Fetch(context.Background(), c.name, dest, FetchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for p, body := range c.want {
				got, err := os.ReadFile(filepath.Join(dest, p))
				if err != nil || string(got) != body {
					t.Errorf("%s: %d bytes (want %d), %v", p, len(got), len(body), err)
				}
			}
			if c.name == testDelta2 {
				if _, err := os.Stat(filepath.Join(dest, "base/5/3")); err == nil {
					t.Error("a file the delta no longer has was restored from its base")
				}
			}
			if res.Sentinel.DeltaFrom == "" {
				t.Errorf("result sentinel %+v", res.Sentinel)
			}
		})
	}
}

func TestFetchBrokenChain(t *testing.T) {
	t.Run("missing base", func(t *testing.T) {
		st := putChain(t)
		if err := st.Delete(context.Background(), backup.SentinelKey(testDelta1)); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "restore")
		_, err := (&Fetcher{Store: st}).Fetch(context.Background(), testDelta2, dest, FetchOptions{})
		if !errors.Is(err, backup.ErrBrokenChain) || !strings.Contains(err.Error(), "is a delta of "+testDelta1+", which is not in") {
			t.Fatalf("error %v", err)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Error("a refused restore created the destination")
		}
	})
	t.Run("LSN mismatch", func(t *testing.T) {
		st := putChain(t)
		sys := uint64(42)
		putBackup(t, st, testBackup, &backup.Sentinel{LSN: 0x2000030, FinishLSN: 0x2000100, Version: 2, SystemIdentifier: &sys}, nil)
		_, err := (&Fetcher{Store: st}).Fetch(context.Background(), testDelta2, filepath.Join(t.TempDir(), "r"), FetchOptions{})
		if !errors.Is(err, backup.ErrBrokenChain) || !strings.Contains(err.Error(), "is a delta from LSN 0/2000028, but its base "+testBackup+" starts at 0/2000030") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("other cluster", func(t *testing.T) {
		st := putChain(t)
		sys := uint64(43)
		putBackup(t, st, testBackup, &backup.Sentinel{LSN: 0x2000028, FinishLSN: 0x2000100, Version: 2, SystemIdentifier: &sys}, nil)
		_, err := (&Fetcher{Store: st}).Fetch(context.Background(), testDelta1, filepath.Join(t.TempDir(), "r"), FetchOptions{})
		if !errors.Is(err, backup.ErrBrokenChain) || !strings.Contains(err.Error(), "different clusters") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("increment without base file", func(t *testing.T) {
		st := putChain(t)
		putFM(t, st, testBackup, map[string]backup.FileDescription{"/PG_VERSION": {}})
		// The full backup's files metadata is not consulted for filtering:
		// the leaf's is. Remove base/1/1 from the full backup's tar instead.
		putBackup(t, st, testBackup, &backup.Sentinel{LSN: 0x2000028, FinishLSN: 0x2000100, Version: 2}, map[string][]entry{
			"part_001.tar.lz4": {{name: "/", typ: '5'}, {name: "/PG_VERSION", body: "15\n"}},
		})
		_, err := (&Fetcher{Store: st}).Fetch(context.Background(), testDelta1, filepath.Join(t.TempDir(), "r"), FetchOptions{})
		if err == nil || !strings.Contains(err.Error(), "did not restore the file it applies to") {
			t.Fatalf("error %v", err)
		}
	})
}

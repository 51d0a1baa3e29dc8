package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
)

// hostileTablespaceTars is a backup whose first part writes pg_control
// through the tablespace and whose second part is corrupt.
func hostileTablespaceTars() map[string][]entry {
	return map[string][]entry{
		"part_001.tar.lz4": {{name: "/PG_VERSION", body: "15\n"},
			{name: "/pg_tblspc/16384/pg_control", body: "planted control"},
			{name: "/pg_tblspc/16384/PG_15_202209061/1/1", body: "tablespace data"}},
		"pg_control.tar.lz4": {{name: "/global/pg_control", body: "control"}},
	}
}

// A tablespace location recorded in the sentinel follows DEST's rules: it
// may not lie inside the destination (nor contain it, nor another
// location), so no tar part can write DEST/global/pg_control before the
// restore is complete; a failed restore leaves no pg_control at all.
func TestFetchRefusesOverlappingTablespaceLocations(t *testing.T) {
	for _, tc := range []struct{ name, loc string }{
		{"inside dest", "DEST/global"},
		{"dest itself", "DEST"},
		{"holds dest", "BASE"},
		{"not clean", "DEST/../DEST/global"},
		{"relative", "global"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newFileStore(t)
			base := t.TempDir()
			dest := filepath.Join(base, "dest")
			loc := strings.NewReplacer("DEST", dest, "BASE", base).Replace(tc.loc)
			spec := &backup.TablespaceSpec{BasePrefix: dest, Tablespaces: []backup.Tablespace{{Name: "16384", Location: loc, Link: "pg_tblspc/16384"}}}
			tars := hostileTablespaceTars()
			corrupt := makeTar(t, entry{name: "/base/1/1", body: "x"})
			putBackup(t, st, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2, PgVersion: 150000, Spec: spec}, tars)
			// part_002 is not a valid lz4 stream.
			if err := st.Put(context.Background(), backup.TarKey(testBackup, "part_002.tar.lz4"), strings.NewReader(string(corrupt)), int64(len(corrupt))); err != nil {
				t.Fatal(err)
			}
			_, err := (&Fetcher{Store: st, Concurrency: 1, NoFsync: true}).Fetch(context.Background(), testBackup, dest, FetchOptions{})
			if err == nil {
				t.Fatal("restore succeeded")
			}
			if _, serr := os.Lstat(filepath.Join(dest, "global", "pg_control")); serr == nil {
				t.Fatalf("global/pg_control exists after a failed restore (%v)", err)
			}
			if strings.Contains(tc.loc, "DEST") || tc.loc == "BASE" || tc.name == "relative" {
				if !strings.Contains(err.Error(), "16384") {
					t.Errorf("error does not name the tablespace: %v", err)
				}
			}
		})
	}
}

// Two tablespaces may not share a location either.
func TestFetchRefusesSharedTablespaceLocations(t *testing.T) {
	st := newFileStore(t)
	base := t.TempDir()
	dest := filepath.Join(base, "dest")
	spec := &backup.TablespaceSpec{BasePrefix: dest, Tablespaces: []backup.Tablespace{
		{Name: "16384", Location: filepath.Join(base, "ts"), Link: "pg_tblspc/16384"},
		{Name: "16385", Location: filepath.Join(base, "ts", "inner"), Link: "pg_tblspc/16385"},
	}}
	putBackup(t, st, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2, PgVersion: 150000, Spec: spec}, syntheticTars())
	_, err := (&Fetcher{Store: st, NoFsync: true}).Fetch(context.Background(), testBackup, dest, FetchOptions{})
	if err == nil || !strings.Contains(err.Error(), "16385") {
		t.Fatalf("nested tablespace locations: %v", err)
	}
}

// A tablespace location, or DEST, planted as a symlink is not followed.
func TestFetchRefusesSymlinkedLocations(t *testing.T) {
	st := newFileStore(t)
	base := t.TempDir()
	target := filepath.Join(base, "elsewhere")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(base, "dest")
	ts := filepath.Join(base, "ts")
	if err := os.Symlink(target, ts); err != nil {
		t.Fatal(err)
	}
	spec := &backup.TablespaceSpec{BasePrefix: dest, Tablespaces: []backup.Tablespace{{Name: "16384", Location: ts, Link: "pg_tblspc/16384"}}}
	putBackup(t, st, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2, PgVersion: 150000, Spec: spec}, hostileTablespaceTars())
	if _, err := (&Fetcher{Store: st, NoFsync: true}).Fetch(context.Background(), testBackup, dest, FetchOptions{}); err == nil {
		t.Fatal("restored through a symlinked tablespace location")
	}
	linkedDest := filepath.Join(base, "linked-dest")
	if err := os.Symlink(target, linkedDest); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Fetcher{Store: st, NoFsync: true}).Fetch(context.Background(), testBackup, linkedDest, FetchOptions{RestoreSpec: &backup.TablespaceSpec{}}); err == nil {
		t.Fatal("restored through a symlinked destination")
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("written through a symlink into %s: %v", target, ents)
	}
}

// Tar members cannot reach pg_control by another road: not as a
// directory, not under its temporary name, not as a page increment.
func TestExtractRefusesPgControlTricks(t *testing.T) {
	for _, members := range [][]entry{
		{{name: "/global/pg_control", typ: '5'}},
		{{name: "/global/" + filepath.Base(pgControlTemp), body: "x"}},
	} {
		s := newSandbox(t)
		e := s.extractor(t)
		if err := e.Extract(strings.NewReader(string(makeTar(t, members...))), make([]byte, 4096)); err == nil {
			t.Errorf("%v accepted", members[0].name)
		}
	}
}

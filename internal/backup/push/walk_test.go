package push

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
)

// mkTree creates files (with content "x") and directories (names ending in
// "/") under root.
func mkTree(t *testing.T, root string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func walkAll(t *testing.T, root string) (*walker, []walkEntry) {
	t.Helper()
	var got []walkEntry
	w := &walker{root: root, log: slog.New(slog.DiscardHandler), emit: func(e walkEntry) error {
		got = append(got, e)
		return nil
	}}
	if err := w.walk(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w, got
}

func entryNames(es []walkEntry) []string {
	var out []string
	for _, e := range es {
		n := e.name
		switch e.kind {
		case entryDir:
			n += "/"
		case entrySymlink:
			n += " -> " + e.link
		}
		out = append(out, n)
	}
	return out
}

func TestWalkExclusionsAndOrder(t *testing.T) {
	root := filepath.Join(t.TempDir(), "pgdata")
	tbs := filepath.Join(t.TempDir(), "tbs")
	walDir := filepath.Join(t.TempDir(), "waldir")
	mkTree(t, root,
		"PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "postgresql.auto.conf.tmp",
		"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map", "backup_manifest",
		"current_logfiles", "current_logfiles.tmp", "recovery.conf", "standby.signal", "recovery.signal",
		"global/pg_control", "global/1260", "global/pg_internal.init", "global/pg_filenode.map",
		"base/1/1259", "base/1/1259_fsm", "base/1/1259.1", "base/1/pg_internal.init", "base/1/pg_internal.init.123",
		// unlogged relation 16400: only its init fork is stored
		"base/1/16400", "base/1/16400_fsm", "base/1/16400_vm", "base/1/16400.1", "base/1/16400_init",
		// temporary relations
		"base/1/t3_16500", "base/1/t3_16500_fsm", "base/1/t12_16501.2",
		"base/1/tx_1", // not a temp relation name
		"base/pgsql_tmp/pgsql_tmp123.0", "base/pgsql_tmp5/", "base/1/pgsql_tmp77",
		"pg_stat_tmp/global.stat", "pg_replslot/s1/state", "pg_dynshmem/x", "pg_notify/0000",
		"pg_serial/0000", "pg_snapshots/x", "pg_subtrans/0000", "log/postgresql.log", "pg_log/x",
		"pg_xact/0000", "pg_stat/pgstat.stat",
	)
	// pg_wal is a symlink to another disk.
	mkTree(t, walDir, "000000010000000000000001", "archive_status/")
	if err := os.Symlink(walDir, filepath.Join(root, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	// A user tablespace with its own unlogged and temporary relations.
	mkTree(t, tbs, "PG_15_202209061/5/16384", "PG_15_202209061/5/16385_init", "PG_15_202209061/5/16385",
		"PG_15_202209061/5/t4_16386", "PG_15_202209061/pgsql_tmp/pgsql_tmp1.1")
	mkTree(t, root, "pg_tblspc/")
	if err := os.Symlink(tbs, filepath.Join(root, "pg_tblspc", "16384")); err != nil {
		t.Fatal(err)
	}
	// An in-place tablespace is a plain directory.
	mkTree(t, root, "pg_tblspc/16390/PG_15_202209061/5/16391")
	// A config file symlinked elsewhere is kept as a link.
	if err := os.Symlink("/etc/tusk-test.conf", filepath.Join(root, "extra.conf")); err != nil {
		t.Fatal(err)
	}

	w, got := walkAll(t, root)
	want := []string{
		"//",
		"/PG_VERSION",
		"/base/",
		"/base/1/",
		"/base/1/1259",
		"/base/1/1259.1",
		"/base/1/1259_fsm",
		"/base/1/16400_init",
		"/base/1/tx_1",
		"/base/pgsql_tmp/",
		"/current_logfiles",
		"/extra.conf -> /etc/tusk-test.conf",
		"/global/",
		"/global/1260",
		"/global/pg_filenode.map",
		"/log/",
		"/pg_dynshmem/",
		"/pg_log/",
		"/pg_notify/",
		"/pg_replslot/",
		"/pg_serial/",
		"/pg_snapshots/",
		"/pg_stat/",
		"/pg_stat/pgstat.stat",
		"/pg_stat_tmp/",
		"/pg_subtrans/",
		// tablespace contents come first, named through the symlink
		"/pg_tblspc/16384/PG_15_202209061/",
		"/pg_tblspc/16384/PG_15_202209061/5/",
		"/pg_tblspc/16384/PG_15_202209061/5/16384",
		"/pg_tblspc/16384/PG_15_202209061/5/16385_init",
		"/pg_tblspc/16384/PG_15_202209061/pgsql_tmp/",
		"/pg_tblspc/",
		"/pg_tblspc/16390/",
		"/pg_tblspc/16390/PG_15_202209061/",
		"/pg_tblspc/16390/PG_15_202209061/5/",
		"/pg_tblspc/16390/PG_15_202209061/5/16391",
		"/pg_wal/",
		"/pg_xact/",
		"/pg_xact/0000",
		"/postgresql.auto.conf",
		"/postgresql.conf",
		"/recovery.signal",
	}
	if g := entryNames(got); !slices.Equal(g, want) {
		t.Errorf("walk:\n got %q\nwant %q", g, want)
	}
	if w.pgControl == nil || w.pgControl.name != "/global/pg_control" {
		t.Errorf("pg_control held back: %+v", w.pgControl)
	}
	if len(w.spec) != 1 || w.spec[0] != (backup.Tablespace{Name: "16384", Location: tbs, Link: "pg_tblspc/16384"}) {
		t.Errorf("spec %+v", w.spec)
	}
	if w.catalogSize <= 0 {
		t.Errorf("catalog size %d", w.catalogSize)
	}
	for _, e := range got {
		wantPaged := strings.HasSuffix(e.name, "/1259") || strings.HasSuffix(e.name, "/1259.1") ||
			strings.HasSuffix(e.name, "/1260") || strings.HasSuffix(e.name, "5/16384") || strings.HasSuffix(e.name, "5/16391")
		if e.paged != wantPaged {
			t.Errorf("%s: paged %v, want %v", e.name, e.paged, wantPaged)
		}
		if e.name == "/base/1/1259.1" && e.segment != 1 {
			t.Errorf("%s: segment %d", e.name, e.segment)
		}
	}
}

func TestWalkVanishingDirectory(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, "global/pg_control", "base/1/1", "base/2/1")
	// A database dropped between listing base/ and reading base/2.
	var got []string
	w := &walker{root: root, log: slog.New(slog.DiscardHandler)}
	w.emit = func(e walkEntry) error {
		got = append(got, e.name)
		if e.name == "/base/1/1" {
			os.RemoveAll(filepath.Join(root, "base", "2"))
		}
		return nil
	}
	if err := w.walk(context.Background()); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got, "/base/2") || !slices.Contains(got, "/base/1/1") {
		t.Errorf("walk %q", got)
	}
}

func TestIsTempRelation(t *testing.T) {
	for name, want := range map[string]bool{
		"t3_16500": true, "t3_16500_fsm": true, "t12_16501.2": true,
		"t_1": false, "tx_1": false, "t3": false, "t3_": false, "16500": false, "t3_16500_x": false,
	} {
		if got := isTempRelation(name); got != want {
			t.Errorf("isTempRelation(%q) = %v", name, got)
		}
	}
}

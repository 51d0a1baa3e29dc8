package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/wal"
)

// TestWalRestoreRewind turns a former primary back into a replica: primary
// A archives with wal-push; standby B (from a backup of A) is promoted when
// A stops, writes on timeline 2 (archived), and A, started again, writes on
// timeline 1 too. B's checkpoints have removed the timeline 2 WAL A will
// need (deleted here, as a checkpoint would). wal-restore A B fetches it
// back into B's pg_wal, pg_rewind rewinds A from B, and A, started as a
// standby of B with no restore_command, replays to B's data.
//
// PostgreSQL 18 (pg_control version 1800, data checksums on by default) has
// no pg_rewind here (the embedded binaries ship initdb, postgres and pg_ctl
// only), so there A does not write after the failover: it needs no rewind,
// and started as B's standby it streams timeline 2 from B's pg_wal, which
// only wal-restore has filled.
func TestWalRestoreRewind(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	for _, major := range []int{15, 18} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			testWalRestore(t, tusk, major)
		})
	}
}

func testWalRestore(t *testing.T, tusk string, major int) {
	bin := usableBinDir(t, major)
	_, err := os.Stat(filepath.Join(bin, "pg_rewind"))
	rewind := err == nil
	if !rewind && major == 15 {
		t.Fatalf("no pg_rewind in %s", bin)
	}
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=zstd"}
	conf := []string{"wal_keep_size = 0", "max_wal_size = 64MB", "min_wal_size = 32MB",
		"archive_mode = on", fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk)}
	a := pgcluster.New(t, pgcluster.Options{BinDir: bin, DataChecksums: true, Conf: conf, Env: env})
	a.Start()
	a.Exec(`create table accounts (id int primary key, owner text not null);
		insert into accounts select g, md5(g::text) from generate_series(1, 20000) g`)
	a.Exec("select pg_create_physical_replication_slot('standby', true)")
	if res := runAsServer(t, tusk, append(append([]string{}, env...), a.ConnEnv()...), "backup-push", a.DataDir()); res.code != 0 {
		t.Fatalf("backup-push: exit %d\n%s", res.code, res.output)
	}
	bdir := filepath.Join(pgcluster.TempDir(t), "data")
	if res := runAsServer(t, tusk, env, "backup-fetch", bdir, "LATEST"); res.code != 0 {
		t.Fatalf("backup-fetch: exit %d\n%s", res.code, res.output)
	}
	b := pgcluster.Open(t, bdir, pgcluster.Options{BinDir: bin, Env: env, Conf: append(conf,
		fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=postgres'", a.SocketDir(), a.Port()),
		"primary_slot_name = 'standby'")})
	b.WriteDataFile("standby.signal", nil)
	b.Start()
	a.Exec(`insert into accounts select g, md5(g::text) from generate_series(20001, 30000) g`)
	var aEnd string
	if err := a.QueryRow("select pg_current_wal_lsn()::text").Scan(&aEnd); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var ok bool
		if err := b.QueryRow("select pg_last_wal_replay_lsn() >= $1::pg_lsn", aEnd).Scan(&ok); err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("standby did not catch up")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Failover, then both write (they diverge), or only B without
	// pg_rewind. A's shutdown checkpoint, the last record it writes, is
	// streamed to B before A stops.
	a.Stop()
	aShutdown := controlFile(t, a).CheckPoint
	deadline = time.Now().Add(time.Minute)
	for {
		var ok bool
		if err := b.QueryRow("select pg_last_wal_receive_lsn() > $1::pg_lsn", pg.LSN(aShutdown).String()).Scan(&ok); err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not receive the primary's shutdown checkpoint %s", pg.LSN(aShutdown))
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Exec("select pg_promote()")
	b.Exec(`insert into accounts select g, 'b' || md5(g::text) from generate_series(30001, 90000) g`)
	for range 3 {
		b.Exec("insert into accounts select g, 'x' from generate_series(90001, 120000) g; delete from accounts where id > 90000")
		b.SwitchWAL()
	}
	last := b.SwitchWAL()
	b.WaitArchived(last, time.Minute)
	b.Exec("checkpoint")
	if rewind {
		a.Start()
		a.Exec(`insert into accounts select g, 'a' || md5(g::text) from generate_series(30001, 40000) g`)
		a.Stop()
	}
	want := anyDigest(t, b, "accounts")
	var bEnd string
	if err := b.QueryRow("select pg_current_wal_lsn()::text").Scan(&bEnd); err != nil {
		t.Fatal(err)
	}
	b.Stop()

	// B's timeline 2 segments before its latest checkpoint are what its
	// own checkpoints remove (some may be gone already): remove them all.
	redoSeg := pg.LSN(controlFile(t, b).Redo).Segment(16 << 20)
	pgWAL := filepath.Join(b.DataDir(), "pg_wal")
	entries, err := os.ReadDir(pgWAL)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if seg, err := wal.ParseSegment(e.Name(), 16<<20); err == nil && seg.Timeline == 2 && seg.No < redoSeg {
			if err := os.Remove(filepath.Join(pgWAL, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	// They are all archived: timeline 2 began in the oldest one stored.
	var missing []string
	stored, _ := filepath.Glob(filepath.Join(store, "wal_005", "00000002????????????????.zst"))
	for _, p := range stored {
		name := strings.TrimSuffix(filepath.Base(p), ".zst")
		if seg, err := wal.ParseSegment(name, 16<<20); err == nil && seg.No < redoSeg {
			missing = append(missing, name)
		}
	}
	if len(missing) < 2 {
		t.Fatalf("only %v missing from the source's pg_wal (redo in segment %d): the test needs more", missing, redoSeg)
	}

	res := runAsServer(t, tusk, env, "wal-restore", a.DataDir(), b.DataDir())
	if res.code != 0 {
		t.Fatalf("wal-restore: exit %d\n%s", res.code, res.output)
	}
	for _, name := range missing {
		if _, err := os.Stat(filepath.Join(pgWAL, name)); err != nil {
			t.Errorf("wal-restore did not bring back %s: %v\n%s", name, err, res.output)
		}
	}
	sort.Strings(missing)
	t.Logf("restored %d segments %s..%s", len(missing), missing[0], missing[len(missing)-1])

	if rewind {
		rw := a.Command("pg_rewind", "-D", a.DataDir(), "--source-pgdata", b.DataDir())
		rw.Env = append(rw.Env, "PGDATA=")
		pgcluster.AsServerUser(t, rw)
		if out, err := rw.CombinedOutput(); err != nil {
			t.Fatalf("pg_rewind: %v\n%s", err, out)
		}
	} else if err := b.Reconfigure(append(conf, "wal_keep_size = 1GB")); err != nil {
		// A streams the restored WAL from B: no checkpoint of B may
		// remove it first.
		t.Fatal(err)
	}

	// A follows B with only the WAL pg_rewind copied (or none) and what
	// B streams.
	b.Start()
	if err := a.Reconfigure(append(conf[:3:3],
		fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=postgres'", b.SocketDir(), b.Port()))); err != nil {
		t.Fatal(err)
	}
	a.WriteDataFile("standby.signal", nil)
	a.Start()
	deadline = time.Now().Add(time.Minute)
	for {
		var ok bool
		if err := a.QueryRow("select pg_last_wal_replay_lsn() >= $1::pg_lsn", bEnd).Scan(&ok); err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rewound cluster did not replay to %s\n%s", bEnd, a.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := anyDigest(t, a, "accounts"); got != want {
		t.Errorf("rewound replica has %v, the new primary %v", got, want)
	}
	if strings.Contains(a.LogTail(), "has already been removed") {
		t.Errorf("the rewound cluster missed WAL:\n%s", a.LogTail())
	}
}

// controlFile is the stopped cluster c's pg_control.
func controlFile(t *testing.T, c *pgcluster.Cluster) pgdata.Control {
	t.Helper()
	path := filepath.Join(c.DataDir(), "global", "pg_control")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := pgdata.ParseControl(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return ctl
}

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// pgbench is PostgreSQL 15's pgbench against c: the embedded releases
// ship only the server.
func pgbench(c *pgcluster.Cluster, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pgcluster.DefaultBinDir, "pgbench"), args...)
	cmd.Env = append(os.Environ(), c.ConnEnv()...)
	return cmd
}

// startPgbench runs pgbench against c until the returned stop is called.
func startPgbench(t *testing.T, c *pgcluster.Cluster) (stop func()) {
	t.Helper()
	bench := pgbench(c, "-n", "-c", "3", "-j", "1", "-T", "600")
	log, err := os.CreateTemp(t.TempDir(), "pgbench-*.log")
	if err != nil {
		t.Fatal(err)
	}
	bench.Stdout, bench.Stderr = log, log
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- bench.Wait() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			bench.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				bench.Process.Kill()
				<-done
			}
			log.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestDeltaBackupPG15 takes a full backup and two deltas of a PostgreSQL 15
// cluster under pgbench load, with tables created, dropped and truncated
// between them, then restores each delta (full backup plus increments)
// and compares every table with the primary at a restore point taken just
// after that backup, and at the backup's end for tables idle during it.
func TestDeltaBackupPG15(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=lz4"}
	primary := archivingPrimary(t, tusk, "", env)
	tbs := pgcluster.TempDir(t)
	primary.Exec("create tablespace fxspace location '" + tbs + "'")
	if out, err := primary.Command("pgbench", "-i", "-q", "-s", "2").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	primary.Exec(`create table grows (id int primary key, body text) tablespace fxspace;
		insert into grows select g, repeat(md5(g::text), 8) from generate_series(1, 20000) g;
		create table drop_me (id int primary key, body text);
		insert into drop_me select g, md5(g::text) from generate_series(1, 5000) g;
		create table trunc_me (id int primary key, body text);
		insert into trunc_me select g, md5(g::text) from generate_series(1, 5000) g;
		checkpoint`)

	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	pushEnv = append(pushEnv, "WALG_DELTA_MAX_STEPS=2", "WALG_TAR_SIZE_THRESHOLD=4194304", "WALG_STOP_BACKUP_TIMEOUT=2m")

	type taken struct {
		name     string
		sentinel *backup.Sentinel
		rp       string
		want     map[string]digest // at the restore point
	}
	tables := func() []string {
		var out []string
		rows, err := primary.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close(t.Context())
		r, err := rows.Query(t.Context(), "select relname from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace order by 1")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for r.Next() {
			var n string
			r.Scan(&n)
			out = append(out, n)
		}
		return out
	}
	var backups []taken
	push := func(i int, args ...string) taken {
		t.Helper()
		stop := startPgbench(t, primary)
		time.Sleep(time.Second)
		res := runAsServer(t, tusk, pushEnv, append([]string{"backup-push", primary.DataDir()}, args...)...)
		if res.code != 0 {
			t.Fatalf("backup-push %d exit %d:\n%s", i, res.code, res.output)
		}
		time.Sleep(500 * time.Millisecond)
		stop()
		m := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F_D]+) `).FindStringSubmatch(res.output)
		if m == nil {
			t.Fatalf("backup-push %d output lacks the backup name:\n%s", i, res.output)
		}
		raw, err := os.ReadFile(filepath.Join(store, backup.SentinelKey(m[1])))
		if err != nil {
			t.Fatal(err)
		}
		s, err := backup.ParseSentinel(raw)
		if err != nil {
			t.Fatal(err)
		}
		b := taken{name: m[1], sentinel: s, rp: fmt.Sprintf("rp_%d", i), want: map[string]digest{}}
		for _, tbl := range tables() {
			b.want[tbl] = anyDigest(t, primary, tbl)
		}
		primary.Exec(fmt.Sprintf("select pg_create_restore_point('%s')", b.rp))
		backups = append(backups, b)
		return b
	}

	full := push(0)
	if full.sentinel.IsDelta() {
		t.Fatalf("the first backup is a delta: %+v", full.sentinel)
	}
	primary.Exec(`update grows set body = 'changed' where id % 50 = 0;
		insert into grows select g, repeat(md5(g::text), 8) from generate_series(20001, 26000) g;
		create table created (id int primary key, body text) tablespace fxspace;
		insert into created select g, md5(g::text) from generate_series(1, 3000) g;
		drop table drop_me;
		truncate trunc_me;
		insert into trunc_me select g, 'after truncate' from generate_series(1, 300) g`)
	d1 := push(1)
	primary.Exec(`update grows set body = 'changed again' where id % 70 = 0;
		delete from created where id % 3 = 0;
		create table created2 (id int primary key); insert into created2 select generate_series(1, 1000)`)
	d2 := push(2)
	// The chain is at WALG_DELTA_MAX_STEPS: the next backup is full.
	next := push(3)
	primary.Exec(`update grows set body = 'from the first full' where id % 90 = 0`)
	// A delta from a named base, then --full although a delta is due.
	named := push(4, "--delta-from-name", full.name)
	forced := push(5, "--full")

	checkDelta := func(b taken, from taken, count int) {
		t.Helper()
		s := b.sentinel
		if s.DeltaFrom != from.name || s.DeltaLSN != from.sentinel.LSN || s.DeltaFullName != full.name || s.DeltaCount != count {
			t.Errorf("backup %s: DeltaFrom %q DeltaLSN %X DeltaFullName %q DeltaCount %d; want %q %X %q %d",
				b.name, s.DeltaFrom, s.DeltaLSN, s.DeltaFullName, s.DeltaCount, from.name, from.sentinel.LSN, full.name, count)
		}
		want, _ := backup.DeltaName(backup.WalFileName(b.name), from.name)
		if b.name != want {
			t.Errorf("delta name %s, want %s", b.name, want)
		}
		var fm backup.FilesMetadata
		raw, err := os.ReadFile(filepath.Join(store, backup.FilesMetadataKey(b.name)))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &fm); err != nil {
			t.Fatal(err)
		}
		var inc, skipped int
		inTars := map[string]bool{}
		for _, members := range fm.TarFileSets {
			for _, m := range members {
				inTars[m] = true
			}
		}
		for f, d := range fm.Files {
			if d.IsIncremented {
				inc++
			}
			if d.IsSkipped {
				skipped++
				if inTars[f] {
					t.Errorf("%s: skipped file %s is listed in TarFileSets", b.name, f)
				}
			}
		}
		if inc == 0 || skipped == 0 {
			t.Errorf("%s: %d incremented and %d skipped files of %d", b.name, inc, skipped, len(fm.Files))
		}
		// pgbench touches most pages of its tables within seconds, so only
		// "smaller than the full backup" is certain.
		if s.UncompressedSize >= full.sentinel.UncompressedSize {
			t.Errorf("delta %s stores %d bytes, the full backup %d", b.name, s.UncompressedSize, full.sentinel.UncompressedSize)
		}
	}
	checkDelta(d1, full, 1)
	checkDelta(d2, d1, 2)
	if next.sentinel.IsDelta() {
		t.Errorf("backup after WALG_DELTA_MAX_STEPS deltas is a delta: %s", next.name)
	}
	checkDelta(named, full, 1)
	if forced.sentinel.IsDelta() {
		t.Errorf("backup-push --full took a delta: %s", forced.name)
	}
	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	primary.Stop()

	for _, b := range []taken{d1, d2, named} {
		t.Run(b.name+"/"+b.rp, func(t *testing.T) {
			c := restoreFromBackup(t, tusk, env, b.name, b.sentinel, "recovery_target_name = '"+b.rp+"'")
			for tbl, w := range b.want {
				if got := anyDigest(t, c, tbl); got != w {
					t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
				}
			}
			checkPgbenchInvariant(t, c, "delta restored to "+b.rp)
			c.Stop()
		})
		t.Run(b.name+"/immediate", func(t *testing.T) {
			c := restoreFromBackup(t, tusk, env, b.name, b.sentinel, "recovery_target = 'immediate'")
			checkPgbenchInvariant(t, c, "delta restored to its end")
			// Only pgbench wrote during the backup.
			for tbl, w := range b.want {
				if len(tbl) > 8 && tbl[:8] == "pgbench_" {
					continue
				}
				if got := anyDigest(t, c, tbl); got != w {
					t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
				}
			}
			var n int
			if err := c.QueryRow("select count(*) from pg_class where relname = 'drop_me'").Scan(&n); err != nil || n != 0 {
				t.Errorf("dropped table present after restore: %d, %v", n, err)
			}
			c.Stop()
		})
	}
}

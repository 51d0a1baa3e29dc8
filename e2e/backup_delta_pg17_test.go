package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// startUpdater updates and inserts rows of table hot from two sessions
// until the returned stop is called.
func startUpdater(t *testing.T, c *pgcluster.Cluster) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 2 {
		conn, err := c.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close(context.Background())
			for i := 0; ctx.Err() == nil; i++ {
				conn.Exec(ctx, "update hot set n = n + 1 where id = $1", (i*7919+w*13)%20000+1)
				if i%50 == 0 {
					conn.Exec(ctx, "insert into hot (id, n) select coalesce(max(id), 0) + 1, 0 from hot")
				}
			}
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// TestDeltaBackupWalSummariesPG17 takes deltas of a PostgreSQL 17 cluster
// with summarize_wal = on and TUSK_DELTA_SOURCE=wal-summaries while rows
// are being written, and restores each to a restore point taken after it.
func TestDeltaBackupWalSummariesPG17(t *testing.T) {
	bin := usableBinDir(t, 17)
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=zstd"}
	primary := pgcluster.New(t, pgcluster.Options{
		BinDir:        bin,
		DataChecksums: true,
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk),
			"summarize_wal = on",
		},
		Env: env,
	})
	primary.Start()
	primary.Exec(`create table hot (id int primary key, n int);
		insert into hot select g, 0 from generate_series(1, 20000) g;
		create table cold (id int primary key, body text);
		insert into cold select g, repeat(md5(g::text), 4) from generate_series(1, 10000) g;
		create table doomed (id int); insert into doomed select generate_series(1, 3000)`)
	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	pushEnv = append(pushEnv, "WALG_DELTA_MAX_STEPS=3", "TUSK_DELTA_SOURCE=wal-summaries", "WALG_STOP_BACKUP_TIMEOUT=2m")

	type taken struct {
		name string
		rp   string
		want map[string]digest
	}
	push := func(i int) taken {
		t.Helper()
		stop := startUpdater(t, primary)
		time.Sleep(500 * time.Millisecond)
		res := runAsServer(t, tusk, pushEnv, "backup-push", primary.DataDir())
		time.Sleep(300 * time.Millisecond)
		stop()
		if res.code != 0 {
			t.Fatalf("backup-push %d exit %d:\n%s", i, res.code, res.output)
		}
		m := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F_D]+) `).FindStringSubmatch(res.output)
		if m == nil {
			t.Fatalf("backup-push %d output lacks the backup name:\n%s", i, res.output)
		}
		if i > 0 && !strings.Contains(res.output, "changed blocks from WAL summaries") {
			t.Errorf("delta %d did not use WAL summaries:\n%s", i, res.output)
		}
		b := taken{name: m[1], rp: fmt.Sprintf("rp_%d", i), want: map[string]digest{}}
		for _, tbl := range []string{"hot", "cold", "fresh"} {
			var n int
			if err := primary.QueryRow("select count(*) from pg_class where relname = $1", tbl).Scan(&n); err == nil && n == 1 {
				b.want[tbl] = anyDigest(t, primary, tbl)
			}
		}
		primary.Exec(fmt.Sprintf("select pg_create_restore_point('%s')", b.rp))
		return b
	}
	full := push(0)
	primary.Exec(`update cold set body = 'changed' where id % 40 = 0;
		create table fresh (id int primary key); insert into fresh select generate_series(1, 2000);
		drop table doomed`)
	d1 := push(1)
	primary.Exec(`truncate fresh; insert into fresh select generate_series(1, 100);
		delete from cold where id > 9000`)
	d2 := push(2)
	for i, b := range []taken{d1, d2} {
		if !strings.Contains(b.name, "_D_") {
			t.Fatalf("backup %d is not a delta: %s (full %s)", i+1, b.name, full.name)
		}
	}
	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	primary.Stop()

	for _, b := range []taken{d1, d2} {
		t.Run(b.name, func(t *testing.T) {
			dest := filepath.Join(pgcluster.TempDir(t), "data")
			res := runAsServer(t, tusk, env, "backup-fetch", dest, b.name, "--target-name", b.rp, "--target-action", "promote")
			if res.code != 0 {
				t.Fatalf("backup-fetch exit %d:\n%s", res.code, res.output)
			}
			if _, err := os.Stat(filepath.Join(dest, "recovery.signal")); err != nil {
				t.Fatal(err)
			}
			c := pgcluster.Open(t, dest, pgcluster.Options{BinDir: bin, Env: env})
			c.Start()
			c.WaitRecoveryDone(3 * time.Minute)
			for tbl, w := range b.want {
				if got := anyDigest(t, c, tbl); got != w {
					t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
				}
			}
			var n int
			if err := c.QueryRow("select count(*) from pg_class where relname = 'doomed'").Scan(&n); err != nil || n != 0 {
				t.Errorf("dropped table present after restore: %d, %v", n, err)
			}
			c.Stop()
		})
	}
}

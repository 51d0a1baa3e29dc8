package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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

// TestDeltaBackupWalSummariesPG17 and PG18 take deltas with
// summarize_wal = on and TUSK_DELTA_SOURCE=wal-summaries while rows are
// being written, with a table created, one dropped and one truncated
// between them, and restore each to a restore point taken after it. Then,
// with the cluster idle, two deltas of the same state from the same base,
// one by page scan and one from the summaries, must restore to the same
// per-table digests, the summaries' having read far fewer bytes.
func TestDeltaBackupWalSummariesPG17(t *testing.T) { testDeltaWalSummaries(t, 17) }

func TestDeltaBackupWalSummariesPG18(t *testing.T) { testDeltaWalSummaries(t, 18) }

func testDeltaWalSummaries(t *testing.T, major int) {
	bin := usableBinDir(t, major)
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=zstd"}
	// Autovacuum off: a vacuum of big landing between the last two deltas
	// (when it does depends on the machine's load) rewrites every page, and
	// the summaries rightly name them all.
	primary := archivingPrimary(t, tusk, bin, env, "summarize_wal = on", "autovacuum = off")
	// big is what a scan must read whole once any of its pages is written;
	// the summaries name only the written pages.
	primary.Exec(`create table hot (id int primary key, n int);
		insert into hot select g, 0 from generate_series(1, 20000) g;
		create table cold (id int primary key, body text);
		insert into cold select g, repeat(md5(g::text), 4) from generate_series(1, 10000) g;
		create table big (id int primary key, body text);
		insert into big select g, repeat(md5(g::text), 2) from generate_series(1, 450000) g;
		create table doomed (id int); insert into doomed select generate_series(1, 3000)`)
	// Hint bits and the visibility map set now, once, not by whichever later
	// read or vacuum comes first (with checksums each is a full-page image).
	primary.Exec(`vacuum (freeze) big`)
	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	pushEnv = append(pushEnv, "WALG_DELTA_MAX_STEPS=4", "WALG_STOP_BACKUP_TIMEOUT=2m")
	summaries := append(append([]string{}, pushEnv...), "TUSK_DELTA_SOURCE=wal-summaries")
	pageScan := append(append([]string{}, pushEnv...), "TUSK_DELTA_SOURCE=page-scan")
	userTables := func() []string {
		t.Helper()
		var names []string
		for _, tbl := range []string{"hot", "cold", "big", "fresh", "doomed"} {
			var n int
			if err := primary.QueryRow("select count(*) from pg_class where relname = $1", tbl).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				names = append(names, tbl)
			}
		}
		return names
	}

	type taken struct {
		name     string
		rp       string
		dataRead int64
		want     map[string]digest
	}
	wroteBackup := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F_D]+) .* data_read=([0-9]+)`)
	push := func(label string, env []string, load bool, args ...string) taken {
		t.Helper()
		var stop func()
		if load {
			stop = startUpdater(t, primary)
			time.Sleep(500 * time.Millisecond)
		}
		res := runAsServer(t, tusk, env, append([]string{"backup-push", primary.DataDir()}, args...)...)
		if load {
			time.Sleep(300 * time.Millisecond)
			stop()
		}
		if res.code != 0 {
			t.Fatalf("backup-push %s exit %d:\n%s", label, res.code, res.output)
		}
		m := wroteBackup.FindStringSubmatch(res.output)
		if m == nil {
			t.Fatalf("backup-push %s output lacks the backup name or bytes read:\n%s", label, res.output)
		}
		if label != "full" && slices.Contains(env, "TUSK_DELTA_SOURCE=wal-summaries") && !strings.Contains(res.output, "changed blocks from WAL summaries") {
			t.Errorf("delta %s did not use WAL summaries:\n%s", label, res.output)
		}
		read, _ := strconv.ParseInt(m[2], 10, 64)
		b := taken{name: m[1], rp: "rp_" + label, dataRead: read, want: map[string]digest{}}
		for _, tbl := range userTables() {
			b.want[tbl] = anyDigest(t, primary, tbl)
		}
		primary.Exec(fmt.Sprintf("select pg_create_restore_point('%s')", b.rp))
		return b
	}
	full := push("full", summaries, true)
	primary.Exec(`update cold set body = 'changed' where id % 40 = 0;
		create table fresh (id int primary key); insert into fresh select generate_series(1, 2000);
		drop table doomed`)
	d1 := push("d1", summaries, true)
	primary.Exec(`truncate fresh; insert into fresh select generate_series(1, 100);
		delete from cold where id > 9000`)
	d2 := push("d2", summaries, true)
	for _, b := range []taken{d1, d2} {
		if !strings.Contains(b.name, "_D_") {
			t.Fatalf("backup %s is not a delta (full %s)", b.name, full.name)
		}
	}

	// The same idle state, twice from d2: by page scan, then from the
	// summaries.
	primary.Exec(`update big set body = 'touched' where id % 5000 = 0;
		update cold set body = 'touched' where id = 7;
		insert into fresh select generate_series(101, 150)`)
	var bigSize int64
	if err := primary.QueryRow("select pg_relation_size('big')").Scan(&bigSize); err != nil {
		t.Fatal(err)
	}
	scanned := push("scan", pageScan, false, "--delta-from-name", d2.name)
	summed := push("summaries", summaries, false, "--delta-from-name", d2.name)
	if scanned.dataRead < bigSize {
		t.Errorf("the page scan read %d bytes, less than table big alone (%d)", scanned.dataRead, bigSize)
	}
	if summed.dataRead*5 > scanned.dataRead {
		t.Errorf("the delta from WAL summaries read %d bytes, the page scan %d: want far fewer", summed.dataRead, scanned.dataRead)
	}
	t.Logf("PostgreSQL %d, delta of the same state: page scan read %d bytes, WAL summaries %d", major, scanned.dataRead, summed.dataRead)
	for tbl, w := range scanned.want {
		if summed.want[tbl] != w {
			t.Fatalf("table %s changed between the two deltas: %v then %v", tbl, w, summed.want[tbl])
		}
	}

	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	primary.Stop()

	restore := func(t *testing.T, b taken, target ...string) *pgcluster.Cluster {
		t.Helper()
		dest := filepath.Join(pgcluster.TempDir(t), "data")
		args := append([]string{"backup-fetch", dest, b.name}, target...)
		res := runAsServer(t, tusk, env, append(args, "--target-action", "promote")...)
		if res.code != 0 {
			t.Fatalf("backup-fetch exit %d:\n%s", res.code, res.output)
		}
		if _, err := os.Stat(filepath.Join(dest, "recovery.signal")); err != nil {
			t.Fatal(err)
		}
		c := pgcluster.Open(t, dest, pgcluster.Options{BinDir: bin, Env: env})
		c.Start()
		c.WaitRecoveryDone(3 * time.Minute)
		return c
	}
	for _, b := range []taken{d1, d2} {
		t.Run(b.name, func(t *testing.T) {
			c := restore(t, b, "--target-name", b.rp)
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
	// Restored to their ends only: what each delta holds, not later WAL.
	restored := map[string]map[string]digest{}
	for _, b := range []taken{scanned, summed} {
		t.Run(b.rp, func(t *testing.T) {
			c := restore(t, b, "--target-immediate")
			got := map[string]digest{}
			for tbl, w := range b.want {
				got[tbl] = anyDigest(t, c, tbl)
				if got[tbl] != w {
					t.Errorf("table %s: restored %v, primary had %v", tbl, got[tbl], w)
				}
			}
			restored[b.rp] = got
			c.Stop()
		})
	}
	if a, b := restored[scanned.rp], restored[summed.rp]; len(a) == 0 || !maps.Equal(a, b) {
		t.Errorf("per-table digests differ: page scan %v, WAL summaries %v", a, b)
	}
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/wal"
)

func startReceiver(t *testing.T, tusk string, env []string, logPath string) *bgProc {
	t.Helper()
	return startBackground(t, tusk, env, logPath, "wal-receive")
}

// waitObject waits until the archived WAL file name exists in the file
// storage store (any extension), failing early when the receiver exits.
func waitObject(t *testing.T, store, name string, p *bgProc, timeout time.Duration) string {
	t.Helper()
	return waitStored(t, name, p, timeout, func() string {
		if m, _ := filepath.Glob(filepath.Join(store, "wal_005", name+".*")); len(m) > 0 {
			return filepath.Base(m[0])
		}
		return ""
	})
}

// waitStored waits until lookup finds the WAL file name in storage and
// returns what it found, failing early when the receiver exits.
func waitStored(t *testing.T, name string, p *bgProc, timeout time.Duration, lookup func() string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if found := lookup(); found != "" {
			return found
		}
		if !p.running() || time.Now().After(deadline) {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s not stored by wal-receive (running %v):\n%s", name, p.running(), tail(string(b), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestWalReceivePG15(t *testing.T) {
	t.Parallel()
	testWalReceive(t, "")
}

func TestWalReceivePG17(t *testing.T) {
	t.Parallel()
	testWalReceive(t, usableBinDir(t, 17))
}

// testWalReceive archives WAL with wal-receive only (archive_mode off): a
// primary with a streaming standby, wal-receive on the standby (its slot
// there), a base backup of the primary, pgbench on the primary with
// wal-receive killed (SIGKILL) and restarted mid-burst, then the primary
// stopped and the standby promoted: wal-receive follows it onto timeline 2
// (storing the old timeline's .partial and 00000002.history), more load,
// then SIGTERM. A restore of the backup with the received WAL replays to
// the end of timeline 2 and equals the promoted standby.
func testWalReceive(t *testing.T, bin string) {
	tusk := testenv.BuildTusk(t)
	t0 := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(t0).Seconds(), what) }
	t.Cleanup(func() { step("cleanup done") })
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=zstd", "WALG_LIBSODIUM_KEY=tusk-e2e-wal-receive-key-0123456789"}
	repl := []string{"wal_level = replica", "max_wal_senders = 8", "max_replication_slots = 8", "hot_standby = on", "wal_keep_size = 0"}
	primary := pgcluster.New(t, pgcluster.Options{BinDir: bin, DataChecksums: true, Conf: repl})
	primary.Start()
	if out, err := pgbench(primary, "-i", "-q", "-s", "2").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}

	// The standby starts from a first backup; a slot on the primary keeps
	// its WAL (archive_mode is off).
	primary.Exec("select pg_create_physical_replication_slot('standby', true)")
	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	backupPush := func() string {
		res := runAsServer(t, tusk, pushEnv, "backup-push", primary.DataDir())
		if res.code != 0 {
			t.Fatalf("backup-push: exit %d\n%s", res.code, res.output)
		}
		for _, l := range strings.Split(res.output, "\n") {
			if i := strings.Index(l, `msg="wrote backup" name=`); i >= 0 {
				return strings.Fields(l[i+len(`msg="wrote backup" name=`):])[0]
			}
		}
		t.Fatalf("backup-push named no backup:\n%s", res.output)
		return ""
	}
	sdir := filepath.Join(pgcluster.TempDir(t), "data")
	if res := runAsServer(t, tusk, env, "backup-fetch", sdir, backupPush()); res.code != 0 {
		t.Fatalf("backup-fetch: exit %d\n%s", res.code, res.output)
	}
	standby := pgcluster.Open(t, sdir, pgcluster.Options{BinDir: bin, Conf: append(repl,
		fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=postgres'", primary.SocketDir(), primary.Port()),
		"primary_slot_name = 'standby'")})
	standby.WriteDataFile("standby.signal", nil)
	standby.Start()
	step("standby started")

	rcvEnv := append(append([]string{}, env...), standby.ConnEnv()...)
	logPath := filepath.Join(pgcluster.TempDir(t), "wal-receive.log")
	rcv := startReceiver(t, tusk, rcvEnv, logPath)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := standby.QueryRow("select count(*) from pg_replication_slots where slot_name = 'walg' and restart_lsn is not null").Scan(&n); err == nil && n == 1 {
			break
		}
		if !rcv.running() || time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("wal-receive made no slot on the standby:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	step("slot made")
	// The backup restored at the end: its WAL is all received.
	name := backupPush()
	step("backup pushed")
	// A burst, wal-receive killed in its middle and started again.
	stopBench := startPgbench(t, primary)
	time.Sleep(3 * time.Second)
	if err := rcv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-rcv.exited
	time.Sleep(time.Second)
	rcv = startReceiver(t, tusk, rcvEnv, logPath)
	time.Sleep(3 * time.Second)
	stopBench()
	primary.Exec(`create table marker (id int primary key, body text);
		insert into marker select g, md5(g::text) from generate_series(1, 50000) g`)
	var lastTL1 string
	if err := primary.QueryRow("select pg_walfile_name(pg_current_wal_lsn())").Scan(&lastTL1); err != nil {
		t.Fatal(err)
	}

	step("burst done")
	// Failover: the primary stops, the standby becomes timeline 2.
	primary.Stop()
	standby.Exec("select pg_promote()")
	standby.Exec(`insert into marker select g, md5(g::text) from generate_series(50001, 80000) g`)
	step("promoted")
	stopBench = startPgbench(t, standby)
	time.Sleep(2 * time.Second)
	stopBench()
	waitClientsGone(t, standby)
	if !rcv.running() {
		// A walsender may end with the promotion rather than the
		// timeline; wal-receive exits 1 then, for its supervisor to
		// start it again, and resumes from the slot.
		b, _ := os.ReadFile(logPath)
		t.Logf("wal-receive exited at the promotion (%v):\n%s", rcv.err, tail(string(b), 10))
		rcv = startReceiver(t, tusk, rcvEnv, logPath)
	}
	step("load on tl2 done")
	last := standby.SwitchWAL()
	if !strings.HasPrefix(last, "00000002") {
		t.Fatalf("after promotion the standby switched out %s, not a timeline 2 segment", last)
	}
	waitObject(t, store, last, rcv, time.Minute)
	waitObject(t, store, "00000002.history", rcv, time.Second)
	// The slot is acknowledged past every stored segment: the server
	// does not keep WAL that is in storage.
	lastSeg, err := wal.ParseSegment(last, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	segEnd := pg.LSN((lastSeg.No + 1) * 16 << 20).String()
	deadline = time.Now().Add(15 * time.Second)
	for {
		var acked bool
		if err := standby.QueryRow("select restart_lsn >= $1::pg_lsn from pg_replication_slots where slot_name = 'walg'", segEnd).Scan(&acked); err == nil && acked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot walg not acknowledged to %s, the end of the stored %s", segEnd, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The old timeline's last segment, as .partial: the one holding the
	// switch point, at or after the last position seen on the primary.
	partials, _ := filepath.Glob(filepath.Join(store, "wal_005", "00000001*.partial.*"))
	if len(partials) != 1 || filepath.Base(partials[0])[8:24] < lastTL1[8:] {
		t.Errorf("timeline 1 partial segments stored: %v, want one at or after %s", partials, lastTL1)
	}
	step("objects stored")
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), `msg="wal-receive: timeline switch" from=1 to=2`) {
		t.Errorf("wal-receive logged no switch from timeline 1 to 2:\n%s", tail(string(b), 20))
	}
	t.Logf("wal-receive peak RSS %d KiB", vmHWM(t, rcv.cmd.Process.Pid)>>10)

	stopReceiver(t, rcv)

	step("receiver stopped")
	want := map[string]digest{}
	for _, tbl := range append([]string{"marker"}, pgbenchTables...) {
		want[tbl] = anyDigest(t, standby, tbl)
	}
	standby.Stop()
	dest := filepath.Join(pgcluster.TempDir(t), "data")
	if res := runAsServer(t, tusk, env, "backup-fetch", dest, name); res.code != 0 {
		t.Fatalf("backup-fetch exit %d:\n%s", res.code, res.output)
	}
	restored := pgcluster.Open(t, dest, pgcluster.Options{
		BinDir: bin,
		Conf:   []string{fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk), "recovery_target_timeline = 'latest'"},
		Env:    env,
	})
	step("fetched")
	restored.WriteDataFile("recovery.signal", nil)
	restored.Start()
	restored.WaitRecoveryDone(3 * time.Minute)
	step("restored")
	t.Cleanup(func() { step("cleanup starts") })
	for tbl, w := range want {
		if got := anyDigest(t, restored, tbl); got != w {
			t.Errorf("%s restored from the received WAL: %v, want %v", tbl, got, w)
		}
	}
	checkPgbenchInvariant(t, restored, "restored from the received WAL")
	var tli int
	if err := restored.QueryRow("select timeline_id from pg_control_checkpoint()").Scan(&tli); err != nil || tli < 2 {
		t.Errorf("restored cluster on timeline %d (%v), want one after 2", tli, err)
	}
}

// stopReceiver sends wal-receive SIGTERM and wants it to exit 0 within 10 s.
func stopReceiver(t *testing.T, rcv *bgProc) {
	t.Helper()
	if err := rcv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rcv.exited:
		if rcv.err != nil {
			b, _ := os.ReadFile(rcv.log)
			t.Errorf("wal-receive after SIGTERM: %v\n%s", rcv.err, tail(string(b), 10))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wal-receive did not stop within 10 s of SIGTERM")
	}
}

// waitClientsGone waits until c runs no client session but the harness's
// own: a pgbench killed while its COMMIT was on the way may see it
// committed after the client is gone.
func waitClientsGone(t *testing.T, c *pgcluster.Cluster) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := c.QueryRow("select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()").Scan(&n); err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client sessions still running 30 s after pgbench stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

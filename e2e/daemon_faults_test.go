package e2e

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/daemon/wire"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// rssAnon reads a process's anonymous resident memory from /proc: its
// heap and stacks, without the code pages that fault back in as new code
// paths (the error paths of a failing request) run.
func rssAnon(t *testing.T, pid int) int64 {
	t.Helper()
	return statusField(t, pid, "RssAnon:")
}

// waitFailures waits until the archiver has failed at least n more times.
func waitFailures(t *testing.T, c *pgcluster.Cluster, from, n int64) int64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := c.Archiver()
		if err != nil {
			t.Fatal(err)
		}
		if st.FailedCount >= from+n {
			return st.FailedCount
		}
		if time.Now().After(deadline) {
			t.Fatalf("archiver failed %d times, waited for %d more than %d", st.FailedCount, n, from)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The S3 server goes away mid-burst: pushes fail (PostgreSQL keeps the
// segments and retries), the daemon's memory stays flat across failed
// requests, and once the server is back every segment arrives by itself.
func TestDaemonStorageOutage(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{Prefix: "outage"})
	env := append(srv.Env(), "WALG_DAEMON_WAL_UPLOAD_TIMEOUT=3s", "WALG_S3_MAX_RETRIES=1")
	sc, daemons := daemonScenario(t, tusk, env, "")
	sc.load = lightLoad
	sc.afterLoad = func(primary *pgcluster.Cluster) {
		pid := daemons["primary"].cmd.Process.Pid
		st, _ := primary.Archiver()
		srv.Stop()
		for i := 0; i < 3; i++ {
			primary.Exec(`insert into docs select 1000 + g + $1::int * 100, repeat('o', 5000) from generate_series(1, 50) g`, i)
			primary.SwitchWAL()
		}
		failed := waitFailures(t, primary, st.FailedCount, 3)
		early := rssAnon(t, pid)
		for i := 0; i < 4; i++ {
			// A new .ready wakes the archiver, which gives up for a
			// minute after three failures in a row.
			primary.Exec(`insert into docs select 1500 + g + $1::int * 100, repeat('p', 5000) from generate_series(1, 50) g`, i)
			primary.SwitchWAL()
			failed = waitFailures(t, primary, failed, 3)
		}
		late := rssAnon(t, pid)
		t.Logf("during the outage: %d failed pushes, daemon anonymous RSS %d KiB → %d KiB", failed-st.FailedCount, early>>10, late>>10)
		// The collector lets the heap double before it runs, so a few MiB
		// of growth is normal; a buffer kept per failed request (a 16 MiB
		// segment, or even 1 MiB) would exceed this over 12 failures.
		if late > early+10<<20 {
			t.Errorf("daemon anonymous memory grew by %d KiB over %d failed requests", (late-early)>>10, failed-st.FailedCount-3)
		}
		srv.Restart()
	}
	out := archiveRestore(t, tusk, sc)
	checkWALObjects(t, walObjectsInS3(t, srv, "outage/wal_005/"), "lz4", false, 0, out.lastWAL)
}

// kill -9 of the daemon mid-burst loses nothing: PostgreSQL retries the
// pushes that got no answer, and a restarted daemon takes them.
func TestDaemonKilledMidBurst(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	storage := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + storage}
	sc, daemons := daemonScenario(t, tusk, env, "")
	sc.load = lightLoad
	sc.afterLoad = func(primary *pgcluster.Cluster) {
		d := daemons["primary"]
		for i := 0; i < 3; i++ {
			primary.Exec(`insert into docs select 2000 + g + $1::int * 100, repeat('k', 5000) from generate_series(1, 50) g`, i)
			primary.SwitchWAL()
			if i == 0 {
				d.cmd.Process.Signal(syscall.SIGKILL)
				<-d.exited
			}
		}
		st, _ := primary.Archiver()
		waitFailures(t, primary, 0, 1) // PostgreSQL noticed the daemon was gone
		daemons["primary"] = startDaemon(t, tusk, d.socket, primary.DataDir(), append([]string{"WALG_UPLOAD_CONCURRENCY=4"}, env...))
		t.Logf("daemon killed and restarted; archiver before restart: %v", st)
	}
	out := archiveRestore(t, tusk, sc)
	checkWALObjects(t, walObjectsInDir(t, storage), "lz4", false, 0, out.lastWAL)
}

// SIGTERM: the daemon stops accepting, answers what is in flight, and
// exits 0 within the grace period; a push it acknowledged is stored.
func TestDaemonSIGTERM(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	dir := pgcluster.TempDir(t)
	pgdata := filepath.Join(dir, "pgdata")
	wal := filepath.Join(pgdata, "pg_wal")
	os.MkdirAll(filepath.Join(wal, "archive_status"), 0o755)
	name := "000000010000000000000001"
	seg := make([]byte, 16<<20)
	for i := range seg {
		seg[i] = byte(i * 7 / 3)
	}
	if err := os.WriteFile(filepath.Join(wal, name), seg, 0o644); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(dir, "storage")
	os.MkdirAll(storage, 0o777)
	os.Chmod(storage, 0o777)
	os.Chmod(pgdata, 0o777)
	os.Chmod(wal, 0o777)
	d := startDaemon(t, tusk, filepath.Join(dir, "d.sock"), pgdata, []string{"WALG_FILE_PREFIX=" + storage})

	type result struct {
		reply byte
		err   error
	}
	res := make(chan result, 1)
	go func() {
		b, err := wire.Request(context.Background(), d.socket, wire.TypeWalPush, []string{name}, 5*time.Second, 30*time.Second)
		res <- result{b, err}
	}()
	time.Sleep(5 * time.Millisecond)
	d.cmd.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	select {
	case <-d.exited:
		if d.err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", d.err)
		}
		t.Logf("daemon exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(40 * time.Second):
		t.Fatal("daemon did not exit within its grace period")
	}
	r := <-res
	if b, err := os.ReadFile(d.log); err == nil {
		t.Logf("daemon log:\n%s", tail(string(b), 10))
	}
	_, statErr := os.Stat(filepath.Join(storage, "wal_005", name+".lz4"))
	switch {
	case r.err == nil && r.reply == wire.ReplyOK && statErr != nil:
		t.Fatalf("daemon acknowledged %s but it is not stored: %v", name, statErr)
	case r.err == nil && r.reply == wire.ReplyOK:
		t.Logf("push in flight at SIGTERM finished and was stored")
	default:
		t.Logf("push in flight at SIGTERM was refused (%q, %v): PostgreSQL would retry", r.reply, r.err)
	}
	// No new connections after the stop.
	if _, err := net.Dial("unix", d.socket); err == nil {
		t.Error("the daemon still accepts connections after exiting")
	}
}

// TestDaemonSIGUSR1ReopensLog rotates the daemon's WALG_LOG_DESTINATION as
// logrotate does (rename, then SIGUSR1, WAL-G's signal for it): the daemon
// keeps running, writes to a new file at the configured path, and still
// serves requests.
func TestDaemonSIGUSR1ReopensLog(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	dir := pgcluster.TempDir(t)
	pgdata := filepath.Join(dir, "pgdata")
	wal := filepath.Join(pgdata, "pg_wal")
	os.MkdirAll(filepath.Join(wal, "archive_status"), 0o777)
	name := "000000010000000000000001"
	if err := os.WriteFile(filepath.Join(wal, name), make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(dir, "storage")
	for _, d := range []string{storage, pgdata, wal, filepath.Join(wal, "archive_status")} {
		os.MkdirAll(d, 0o777)
		os.Chmod(d, 0o777)
	}
	logPath := filepath.Join(dir, "tusk.log")
	d := startDaemon(t, tusk, filepath.Join(dir, "d.sock"), pgdata,
		[]string{"WALG_FILE_PREFIX=" + storage, "WALG_LOG_DESTINATION=" + logPath})
	waitFor := func(path, text string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), text) {
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(path)
				t.Fatalf("%s never held %q; it holds:\n%s", path, text, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(logPath, "daemon: serving")
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(logPath, "log destination reopened")
	reply, err := wire.Request(context.Background(), d.socket, wire.TypeWalPush, []string{name}, 5*time.Second, 30*time.Second)
	if err != nil || reply != wire.ReplyOK {
		t.Fatalf("push after SIGUSR1: reply %q, %v", reply, err)
	}
	waitFor(logPath, name)
	select {
	case <-d.exited:
		t.Fatalf("daemon exited: %v", d.err)
	default:
	}
	if b, _ := os.ReadFile(logPath + ".1"); strings.Contains(string(b), name) {
		t.Errorf("the rotated file still received the push's log line")
	}
}

// Quiet connections never starve a client with work: WAL-G's archive
// library keeps a connection open for the archiver's life, so 64 of them
// (four times TUSK_DAEMON_MAX_CONNECTIONS), half after a check, half
// silent, sit beside a `tusk daemon-client wal-push` of a 16 MiB segment.
// The push is served at once, while every quiet connection stays open.
func TestDaemonQuietConnections(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	dir := pgcluster.TempDir(t)
	pgdata := filepath.Join(dir, "pgdata")
	storage := filepath.Join(dir, "storage")
	for _, d := range []string{filepath.Join(pgdata, "pg_wal", "archive_status"), storage} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{pgdata, filepath.Join(pgdata, "pg_wal"), filepath.Join(pgdata, "pg_wal", "archive_status"), storage} {
		os.Chmod(d, 0o777) // the daemon runs as the PostgreSQL server user
	}
	const name = "000000010000000000000001"
	if err := os.WriteFile(filepath.Join(pgdata, "pg_wal", name), make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "d.sock")
	startDaemon(t, tusk, sock, pgdata, []string{"WALG_FILE_PREFIX=" + storage, "TUSK_DAEMON_MAX_CONNECTIONS=16"})

	check, _ := wire.EncodeMessage(wire.TypeCheck, "CHECK")
	var quiet []net.Conn
	for i := range 64 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			c.Write(check)
		}
		quiet = append(quiet, c)
	}
	start := time.Now()
	out, err := exec.Command(tusk, "daemon-client", sock, "wal-push", name, "-timeout", "30s").CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("wal-push beside 64 quiet connections failed after %v: %v\n%s", took.Round(time.Millisecond), err, out)
	}
	t.Logf("wal-push beside 64 quiet connections: %v", took.Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(storage, "wal_005", name+".lz4")); err != nil {
		t.Fatalf("segment not stored: %v", err)
	}
	for i, c := range quiet {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		if i%2 == 0 {
			if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != wire.ReplyOK {
				t.Fatalf("check on quiet connection %d: %q %v", i, b[0], err)
			}
		}
		if _, err := c.Write(check); err != nil {
			t.Fatalf("quiet connection %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != wire.ReplyOK {
			t.Fatalf("quiet connection %d no longer served: %q %v", i, b[0], err)
		}
	}
}

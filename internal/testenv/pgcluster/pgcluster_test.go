package pgcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestArchiveRecoverWithCp exercises the harness the way the end-to-end tests
// use it, with cp as the archiver so it does not depend on tusk: a base copy
// of a shut-down cluster, WAL archived by the primary, recovery of the copy
// from the archive to the end of WAL.
func TestArchiveRecoverWithCp(t *testing.T) {
	archive := TempDir(t)
	primary := New(t, Options{
		WALSegSizeMB:  1,
		DataChecksums: true,
		Conf: []string{
			"archive_mode = on",
			"archive_command = 'test ! -f \"$ARCHIVE/%f\" && cp %p \"$ARCHIVE/%f\"'",
		},
		Env: []string{"ARCHIVE=" + archive},
	})
	replica := primary.Clone(Options{Conf: []string{
		"restore_command = 'cp \"$ARCHIVE/%f\" %p'",
		"recovery_target_action = 'promote'",
	}, Env: []string{"ARCHIVE=" + archive}})
	replica.WriteDataFile("recovery.signal", nil)

	primary.Start()
	primary.Exec(`create table t (id int primary key, v text);
		insert into t select g, md5(g::text) from generate_series(1, 20000) g`)
	primary.SwitchWAL()
	primary.Exec(`update t set v = v || 'x' where id % 3 = 0`)
	wantMD5, wantRows := primary.TableDigest("t")
	last := primary.SwitchWAL()
	primary.WaitArchived(last, time.Minute)
	st, err := primary.Archiver()
	if err != nil {
		t.Fatal(err)
	}
	if st.ArchivedCount < 2 || st.FailedCount != 0 {
		t.Errorf("archiver: %v, want >= 2 archived and no failures", st)
	}
	if _, err := os.Stat(filepath.Join(archive, last)); err != nil {
		t.Errorf("segment %s not in the archive: %v", last, err)
	}
	primary.Stop()

	if got, err := os.ReadFile(filepath.Join(replica.DataDir(), "postgresql.conf")); err != nil {
		t.Fatal(err)
	} else if strings.Contains(string(got), "archive_mode = on") {
		t.Errorf("the clone kept its source's archive settings")
	}

	replica.Start()
	replica.WaitRecoveryDone(time.Minute)
	gotMD5, gotRows := replica.TableDigest("t")
	if gotMD5 != wantMD5 || gotRows != wantRows {
		t.Errorf("restored digest %s/%d, want %s/%d", gotMD5, gotRows, wantMD5, wantRows)
	}
	if wantRows != 20000 {
		t.Errorf("primary has %d rows, want 20000", wantRows)
	}
	if _, err := os.Stat(filepath.Join(replica.DataDir(), "recovery.signal")); !os.IsNotExist(err) {
		t.Errorf("recovery.signal still present after promotion: %v", err)
	}
}

// TestCleanupKillsServer checks a test that forgets Stop leaves no server.
func TestCleanupKillsServer(t *testing.T) {
	var pid int
	t.Run("leaky", func(t *testing.T) {
		c := New(t, Options{})
		c.Start()
		pid = c.cmd.Process.Pid
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("server %d not alive after Start: %v", pid, err)
		}
	})
	if pid == 0 {
		t.Fatal("subtest did not start a server")
	}
	if err := syscall.Kill(-pid, 0); err != syscall.ESRCH {
		t.Errorf("process group %d still exists after cleanup (kill: %v)", pid, err)
	}
}

func TestTempDirOwnedByServerUser(t *testing.T) {
	dir := TempDir(t)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	su, err := LookupServerUser()
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != su.UID {
		t.Errorf("%s owned by uid %d, want %d", dir, uid, su.UID)
	}
}

// TestServerWithoutTest drives the error-returning API the benchmarks use:
// a cluster in a caller's directory with the connection settings in the
// server's environment, an immediate shutdown, and Close leaving the
// caller's directory in place with no process behind.
func TestServerWithoutTest(t *testing.T) {
	dir := filepath.Join(TempDir(t), "bench")
	s, err := Create(Options{Dir: dir, ServerConnEnv: true, Conf: []string{"max_connections = 40"},
		Env: []string{"MARK=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.DataDir() != filepath.Join(dir, "data") || s.LogFile() != filepath.Join(dir, "postgres.log") {
		t.Errorf("DataDir %s LogFile %s, want them under %s", s.DataDir(), s.LogFile(), dir)
	}
	env := strings.Join(s.Env(), "\n")
	for _, want := range []string{"PGHOST=" + s.SocketDir(), "PGDATA=" + s.DataDir(), "MARK=1"} {
		if !strings.Contains(env, want) {
			t.Errorf("server env lacks %s:\n%s", want, env)
		}
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	var n int
	if err := s.QueryRow(ctx, "select setting::int from pg_settings where name = 'max_connections'").Scan(&n); err != nil || n != 40 {
		t.Errorf("max_connections = %d, %v; want 40 from Conf", n, err)
	}
	if err := s.Kill(); err != nil {
		t.Errorf("Kill: %v", err)
	}
	if s.Running() || s.Pid() != 0 {
		t.Error("running after Kill")
	}
	if err := syscall.Kill(-pid, 0); err != syscall.ESRCH {
		t.Errorf("process group %d still exists after Kill (kill: %v)", pid, err)
	}
	// Crash recovery after the immediate shutdown, then a fast one by Close.
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid = s.Pid()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := syscall.Kill(-pid, 0); err != syscall.ESRCH {
		t.Errorf("process group %d still exists after Close (kill: %v)", pid, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Errorf("Close removed the caller's directory: %v", err)
	}
}

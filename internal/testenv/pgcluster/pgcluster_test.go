package pgcluster

import (
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
	su, err := lookupServerUser()
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != su.uid {
		t.Errorf("%s owned by uid %d, want %d", dir, uid, su.uid)
	}
}

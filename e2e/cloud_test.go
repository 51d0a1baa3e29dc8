package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/azurite"
	"github.com/tusk-pg/tusk/internal/testenv/gcsserver"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// TestBackupRestoreGCS runs tusk's main jobs against fake-gcs-server,
// reached through STORAGE_EMULATOR_HOST: see backupRestoreCycle (daemon
// archiving, a full and a delta backup, a restore to a restore point).
// Then the refusals: a credentials file that is not one, and no server,
// each one line naming the setting.
func TestBackupRestoreGCS(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	srv := gcsserver.Start(t)
	env := append(srv.Env("clusters/pg15"), "GCS_MAX_RETRIES=2")
	backupRestoreCycle(t, tusk, env, func(ctx context.Context, prefix string) (map[string]int64, error) {
		return srv.Objects(ctx, "clusters/pg15/"+prefix)
	})
	notCreds := filepath.Join(pgcluster.TempDir(t), "not-credentials.json")
	if err := os.WriteFile(notCreds, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkRefusals(t, tusk, env, []refusal{
		{"wrong credentials", []string{"STORAGE_EMULATOR_HOST=", "GOOGLE_APPLICATION_CREDENTIALS=" + notCreds},
			"GOOGLE_APPLICATION_CREDENTIALS: " + notCreds + " is not a JSON credentials file"},
		{"unreachable", []string{"STORAGE_EMULATOR_HOST=127.0.0.1:1", "GCS_MAX_RETRIES=1"}, "no answer from STORAGE_EMULATOR_HOST=127.0.0.1:1"},
	})
}

// TestBackupRestoreAzure runs tusk's main jobs against Azurite, reached
// through TUSK_AZURE_ENDPOINT (path-style) with the account key: see
// backupRestoreCycle (daemon archiving, a full and a delta backup, a
// restore to a restore point). Then the refusals: a wrong account key and no
// server, each one line.
func TestBackupRestoreAzure(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	srv := azurite.Start(t)
	env := srv.Env("clusters/pg15")
	backupRestoreCycle(t, tusk, env, func(ctx context.Context, prefix string) (map[string]int64, error) {
		return srv.Objects(ctx, "clusters/pg15/"+prefix)
	})
	wrongKey := "AZURE_STORAGE_ACCESS_KEY=d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ=="
	checkRefusals(t, tusk, env, []refusal{
		{"wrong key", []string{wrongKey}, "azure://tusk/clusters/pg15/"},
		{"unreachable", []string{"TUSK_AZURE_ENDPOINT=http://127.0.0.1:1/" + azurite.Account}, "127.0.0.1:1"},
	})
}

// backupRestoreCycle: PostgreSQL 15 archiving through the daemon
// (archive_command = tusk daemon-client), a full backup-push, pgbench
// writes, a delta backup-push, more writes, and a restore of the delta
// with backup-fetch and wal-fetch to a restore point taken after them,
// where every table must match. objects lists what the storage holds
// under a path inside the configured prefix.
func backupRestoreCycle(t *testing.T, tusk string, env []string, objects func(ctx context.Context, prefix string) (map[string]int64, error)) {
	t.Helper()
	sock := filepath.Join(pgcluster.TempDir(t), "primary.sock")
	primary := pgcluster.New(t, pgcluster.Options{
		DataChecksums: true,
		Conf: []string{"archive_mode = on",
			fmt.Sprintf("archive_command = '%s daemon-client %s wal-push %%f'", tusk, sock)},
		Env: env,
	})
	daemon := startDaemon(t, tusk, sock, primary.DataDir(), append([]string{"WALG_UPLOAD_CONCURRENCY=4"}, env...))
	start := time.Now()
	step := func(what string) { t.Logf("%s at %v", what, time.Since(start).Round(time.Millisecond)) }
	primary.Start()
	if out, err := primary.Command("pgbench", "-i", "-q", "-s", "1").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	pushEnv = append(pushEnv, "WALG_TAR_SIZE_THRESHOLD=8388608", "WALG_STOP_BACKUP_TIMEOUT=2m", "WALG_DELTA_MAX_STEPS=3")
	for _, kind := range []string{"full", "delta"} {
		if res := runAsServer(t, tusk, pushEnv, "backup-push", primary.DataDir()); res.code != 0 {
			t.Fatalf("%s backup-push exit %d:\n%s", kind, res.code, res.output)
		}
		step(kind + " backup-push done")
		if out, err := primary.Command("pgbench", "-n", "-c", "2", "-t", "200").CombinedOutput(); err != nil {
			t.Fatalf("pgbench: %v\n%s", err, out)
		}
	}
	want := map[string]digest{}
	for _, tbl := range pgbenchTables {
		want[tbl] = anyDigest(t, primary, tbl)
	}
	primary.Exec("select pg_create_restore_point('after_load')")
	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	step("the last segment archived")
	if st, err := primary.Archiver(); err != nil || st.FailedCount != 0 {
		t.Errorf("archiver: %v %v", st, err)
	}
	primary.Stop()
	if !daemon.running() {
		t.Errorf("the archiving daemon exited: %v", daemon.err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wal, err := objects(ctx, "wal_005/")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := wal["clusters/pg15/wal_005/"+last+".lz4"]; !ok {
		t.Errorf("the last segment %s is not in the storage: %d WAL objects", last, len(wal))
	}
	backups, err := objects(ctx, "basebackups_005/")
	if err != nil {
		t.Fatal(err)
	}
	var sentinels []string
	for k := range backups {
		if strings.HasSuffix(k, backup.SentinelSuffix) {
			sentinels = append(sentinels, k)
		}
	}
	slices.Sort(sentinels)
	if len(sentinels) != 2 || !strings.Contains(sentinels[1], "_D_") {
		t.Fatalf("backup sentinels in the storage %q, want a full backup and a delta", sentinels)
	}

	restored := restoreFromBackup(t, tusk, env, "LATEST", &backup.Sentinel{}, "recovery_target_name = 'after_load'")
	for tbl, w := range want {
		if got := anyDigest(t, restored, tbl); got != w {
			t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
		}
	}
	checkPgbenchInvariant(t, restored, "restored to the restore point")
	restored.Stop()
	step("restored and checked")
}

// refusal is a setting change that must make tusk fail with one line
// containing want.
type refusal struct {
	name string
	set  []string
	want string
}

func checkRefusals(t *testing.T, tusk string, env []string, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		e := append(append([]string{}, env...), tc.set...)
		start := time.Now()
		res := runAsServer(t, tusk, e, "backup-list")
		line := lastLine(res.output)
		if res.code == 0 || !strings.Contains(line, tc.want) || strings.Count(strings.TrimSpace(res.output), "\n") > 0 {
			t.Errorf("%s: exit %d, last line %q; want one line containing %q\n%s", tc.name, res.code, line, tc.want, res.output)
		}
		t.Logf("%s: %q in %v", tc.name, line, time.Since(start).Round(time.Millisecond))
	}
}

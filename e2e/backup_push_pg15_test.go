package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// pgbenchTables are the tables pgbench -i creates; its TPC-B-like script
// keeps sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta) in every
// committed state, which a restore to any consistent point must preserve.
var pgbenchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}

// runAsServer runs tusk as the PostgreSQL server's OS user (as an
// operator's cron job would), with exactly env.
func runAsServer(t *testing.T, tusk string, env []string, args ...string) tuskResult {
	t.Helper()
	cmd := exec.Command(tusk, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + pgcluster.TempDir(t), "TZ=UTC"}, env...)
	pgcluster.AsServerUser(t, cmd)
	return runCmd(t, cmd)
}

// archivingPrimary starts a cluster of the binaries in bin ("" for
// PostgreSQL 15), with data checksums, archiving by tusk wal-push with env.
func archivingPrimary(t *testing.T, tusk, bin string, env []string, conf ...string) *pgcluster.Cluster {
	t.Helper()
	c := pgcluster.New(t, pgcluster.Options{
		BinDir:        bin,
		DataChecksums: true,
		Conf:          append([]string{"archive_mode = on", fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk)}, conf...),
		Env:           env,
	})
	c.Start()
	return c
}

// anyDigest digests a table without assuming an id column.
func anyDigest(t *testing.T, c *pgcluster.Cluster, table string) digest {
	t.Helper()
	var d digest
	q := fmt.Sprintf("select md5(coalesce(string_agg(t::text, ',' order by t::text), '')), count(*) from %s t", table)
	if err := c.QueryRow(q).Scan(&d.md5, &d.rows); err != nil {
		t.Fatalf("digest %s: %v", table, err)
	}
	return d
}

// checkPgbenchInvariant asserts the balances add up.
func checkPgbenchInvariant(t *testing.T, c *pgcluster.Cluster, what string) {
	t.Helper()
	var a, tl, b, h int64
	if err := c.QueryRow(`select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers),
		(select sum(bbalance) from pgbench_branches), (select coalesce(sum(delta), 0) from pgbench_history)`).Scan(&a, &tl, &b, &h); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if a != tl || a != b || a != h {
		t.Errorf("%s: balances disagree: accounts %d tellers %d branches %d history %d", what, a, tl, b, h)
	}
}

// TestBackupPushS3 takes a backup with tusk backup-push of a PostgreSQL 15
// cluster that pgbench writes to throughout (tables in a user tablespace),
// archiving WAL with tusk wal-push to S3 (versitygw over TLS), checks the
// objects against WAL-G's layout, and restores it twice with tusk
// backup-fetch and tusk wal-fetch: to the end of the backup
// (recovery_target = 'immediate', a consistent state) and to a restore
// point taken after the load stopped, where every table must match.
func TestBackupPushS3(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{TLS: true, Prefix: "clusters/pg15"})
	env := append(srv.Env(), "WALG_COMPRESSION_METHOD=zstd")
	primary := archivingPrimary(t, tusk, "", env)
	tbs := pgcluster.TempDir(t)
	primary.Exec("create tablespace fxspace location '" + tbs + "'")
	if out, err := primary.Command("pgbench", "-i", "-q", "-s", "4", "--tablespace=fxspace").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	primary.Exec(`create table static (id int primary key, body text);
		insert into static select g, repeat(md5(g::text), 20) from generate_series(1, 20000) g;
		create unlogged table scratch (id int); insert into scratch select generate_series(1, 5000)`)
	staticWant := anyDigest(t, primary, "static")

	// pgbench writes during the whole backup.
	bench := primary.Command("pgbench", "-n", "-c", "4", "-j", "2", "-T", "600", "-P", "5")
	stopBench := background(t, bench)
	defer stopBench()
	time.Sleep(2 * time.Second)

	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	pushEnv = append(pushEnv,
		"WALG_TAR_SIZE_THRESHOLD=8388608", // several parts
		"WALG_UPLOAD_DISK_CONCURRENCY=2",
		"WALG_ALIVE_CHECK_INTERVAL=1s",
		"WALG_STOP_BACKUP_TIMEOUT=2m",
	)
	start := time.Now()
	res := runAsServer(t, tusk, pushEnv, "backup-push", primary.DataDir(), "--verify", "--add-user-data", `{"job":"e2e"}`)
	if res.code != 0 {
		t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
	}
	t.Logf("backup-push took %v", time.Since(start).Round(time.Millisecond))
	if !regexp.MustCompile(`msg="wrote backup" name=base_[0-9A-F]{24} `).MatchString(res.output) {
		t.Errorf("backup-push output lacks the backup name:\n%s", res.output)
	}
	time.Sleep(time.Second) // some more writes after the backup's end
	t.Logf("pgbench: %s", lastLine(stopBench()))

	// A known point after the load: digests, then a restore point.
	want := map[string]digest{}
	for _, tbl := range append(pgbenchTables, "static") {
		want[tbl] = anyDigest(t, primary, tbl)
	}
	primary.Exec("select pg_create_restore_point('after_load')")
	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	st, err := primary.Archiver()
	if err != nil || st.FailedCount != 0 {
		t.Errorf("archiver: %v %v", st, err)
	}

	// Layout.
	objs := s3Keys(t, srv, "clusters/pg15/basebackups_005/")
	var name string
	for _, k := range objs {
		if n, ok := strings.CutSuffix(k, backup.SentinelSuffix); ok {
			if name != "" {
				t.Fatalf("two sentinels: %s, %s", name, n)
			}
			name = n
		}
	}
	if _, err := backup.ParseName(name); err != nil {
		t.Fatalf("sentinel name: %v (objects %v)", err, objs)
	}
	parts := 0
	for _, k := range objs {
		rest, ok := strings.CutPrefix(k, name+"/")
		switch {
		case k == name+backup.SentinelSuffix:
		case !ok:
			t.Errorf("object outside the backup: %s", k)
		case rest == "metadata.json", rest == "files_metadata.json",
			rest == "tar_partitions/pg_control.tar.zst", rest == "tar_partitions/backup_label.tar.zst":
		case regexp.MustCompile(`^tar_partitions/part_\d{3}\.tar\.zst$`).MatchString(rest):
			parts++
		default:
			t.Errorf("unexpected object %s", k)
		}
	}
	if parts < 4 {
		t.Errorf("%d data tars with an 8 MiB threshold", parts)
	}
	sentinel, err := backup.ParseSentinel(s3Get(t, srv, "clusters/pg15/basebackups_005/"+name+backup.SentinelSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if sentinel.Spec == nil || len(sentinel.Spec.Tablespaces) != 1 || sentinel.Spec.Tablespaces[0].Location != tbs ||
		string(sentinel.UserData) != `{"job":"e2e"}` || sentinel.PgVersion/10000 != 15 || sentinel.FinishLSN <= sentinel.LSN {
		t.Errorf("sentinel %+v", sentinel)
	}
	var fm backup.FilesMetadata
	if err := json.Unmarshal(s3Get(t, srv, "clusters/pg15/basebackups_005/"+name+"/files_metadata.json"), &fm); err != nil {
		t.Fatal(err)
	}
	for f, d := range fm.Files {
		if d.CorruptBlocks != nil {
			t.Errorf("--verify reports %s corrupt on a healthy cluster: %+v", f, d.CorruptBlocks)
		}
	}
	primary.Stop()

	// Restore 1: to the end of the backup.
	imm := restoreFromBackup(t, tusk, env, name, sentinel, "recovery_target = 'immediate'")
	checkPgbenchInvariant(t, imm, "restored to the end of the backup")
	if got := anyDigest(t, imm, "static"); got != staticWant {
		t.Errorf("static: %v, want %v", got, staticWant)
	}
	var scratchRows int64
	if err := imm.QueryRow("select count(*) from scratch").Scan(&scratchRows); err != nil || scratchRows != 0 {
		t.Errorf("unlogged table after restore: %d rows, %v (want empty)", scratchRows, err)
	}
	imm.Stop()

	// Restore 2: to the restore point after the load; every table equal.
	named := restoreFromBackup(t, tusk, env, name, sentinel, "recovery_target_name = 'after_load'")
	for tbl, w := range want {
		if got := anyDigest(t, named, tbl); got != w {
			t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
		}
	}
	checkPgbenchInvariant(t, named, "restored to the restore point")
	named.Stop()
}

// restoreFromBackup fetches backup name into a new data directory (its
// tablespace remapped with --restore-spec), configures recovery with
// restore_command = tusk wal-fetch and target, starts it and waits for
// promotion.
func restoreFromBackup(t *testing.T, tusk string, env []string, name string, s *backup.Sentinel, target string) *pgcluster.Cluster {
	t.Helper()
	return restoreFromBackupBin(t, tusk, "", env, name, s, target)
}

// restoreFromBackupBin is restoreFromBackup with the PostgreSQL binaries
// of bin ("" for PostgreSQL 15).
func restoreFromBackupBin(t *testing.T, tusk, bin string, env []string, name string, s *backup.Sentinel, target string) *pgcluster.Cluster {
	t.Helper()
	return restoreWith(t, tusk, bin, env, name, s, target, nil)
}

// restoreWith is restoreFromBackupBin with fetcher (tusk or WAL-G) as
// backup-fetch and wal-fetch, and afterFetch, when not nil, run on the
// fetched data directory before the server starts.
func restoreWith(t *testing.T, fetcher, bin string, env []string, name string, s *backup.Sentinel, target string, afterFetch func(dataDir string)) *pgcluster.Cluster {
	t.Helper()
	tusk := fetcher
	base := pgcluster.TempDir(t)
	dest := filepath.Join(base, "data")
	spec := map[string]any{"base_prefix": dest, "tablespaces": []string{}}
	var names []string
	var tablespaces []backup.Tablespace
	if s.Spec != nil {
		tablespaces = s.Spec.Tablespaces
	}
	for _, ts := range tablespaces {
		loc := filepath.Join(base, "tbs-"+ts.Name)
		spec[ts.Name] = map[string]string{"loc": loc, "link": ts.Link}
		names = append(names, ts.Name)
	}
	spec["tablespaces"] = names
	specFile := filepath.Join(base, "spec.json")
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(specFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res := runAsServer(t, tusk, env, "backup-fetch", dest, name, "--restore-spec", specFile)
	if res.code != 0 {
		t.Fatalf("backup-fetch exit %d:\n%s", res.code, res.output)
	}
	if afterFetch != nil {
		afterFetch(dest)
	}
	c := pgcluster.Open(t, dest, pgcluster.Options{
		BinDir: bin,
		Conf: []string{
			fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk),
			target,
			"recovery_target_action = 'promote'",
		},
		Env: env,
	})
	c.WriteDataFile("recovery.signal", nil)
	start := time.Now()
	c.Start()
	c.WaitRecoveryDone(3 * time.Minute)
	t.Logf("restored %s with %s in %v", name, target, time.Since(start).Round(time.Millisecond))
	return c
}

// background starts cmd (a load such as pgbench) with its output in a
// file, not a pipe (Wait must not depend on anyone closing a pipe after a
// kill), and returns the function that stops it, SIGINT then SIGKILL after
// 30 s, and returns its output; later calls return the same output.
func background(t *testing.T, cmd *exec.Cmd) func() string {
	t.Helper()
	logF, err := os.CreateTemp(t.TempDir(), "load-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logF.Close() })
	cmd.Stdout, cmd.Stderr = logF, logF
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	var out string
	return func() string {
		once.Do(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Errorf("%s (pid %d) did not exit after SIGKILL", cmd.Path, cmd.Process.Pid)
				}
			}
			b, _ := os.ReadFile(logF.Name())
			out = string(b)
		})
		return out
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// s3Keys lists keys under prefix, relative to it.
func s3Keys(t *testing.T, srv *s3server.Server, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	p := s3.NewListObjectsV2Paginator(srv.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, strings.TrimPrefix(aws.ToString(o.Key), prefix))
		}
	}
	return keys
}

func s3Get(t *testing.T, srv *s3server.Server, key string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

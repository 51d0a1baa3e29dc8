package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
	"github.com/tusk-pg/tusk/internal/wal"
)

const seg16 = 16 << 20

// fixtureTimes sets the copied sentinels' mtimes to the times WAL-G listed
// (backup-list-detail.json) and returns the generator work dirs that the
// expected files show as <generator-workdir>.
func fixtureTimes(t *testing.T, fixDir, storage string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixDir, "expected", "backup-list-detail.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var exp []struct {
		Name    string    `json:"backup_name"`
		Time    time.Time `json:"time"`
		DataDir string    `json:"data_dir"`
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	var workdirs []string
	for _, e := range exp {
		p := filepath.Join(storage, filepath.FromSlash(backup.SentinelKey(e.Name)))
		if err := os.Chtimes(p, e.Time, e.Time); err != nil {
			t.Fatal(err)
		}
		sb, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := backup.ParseSentinel(sb)
		if err != nil {
			t.Fatal(err)
		}
		workdirs = append(workdirs, strings.TrimSuffix(s.DataDir, "/pgdata"))
	}
	return workdirs
}

// verifyLSN is a WAL position in the segment after the last one WAL-G's
// integrity check covered: the cluster was there when WAL-G ran. WAL-G
// takes the segment of the byte before the position, so the position is
// that segment's first record (after its 40-byte long page header), not
// its first byte.
func verifyLSN(t *testing.T, fixDir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixDir, "expected", "wal-verify.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Integrity struct {
			Details []struct {
				End string `json:"end_segment"`
			} `json:"details"`
		} `json:"integrity"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	d := r.Integrity.Details
	end, err := wal.ParseSegment(d[len(d)-1].End, seg16)
	if err != nil {
		t.Fatal(err)
	}
	lsn := (end.No+1)*seg16 + 0x28
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}

func expectOutput(t *testing.T, fixDir, file string, r tuskRun, workdirs []string, args []string) {
	t.Helper()
	if r.code != 0 {
		t.Errorf("tusk %v: exit %d\n%s", args, r.code, r.stderr)
		return
	}
	got := r.stdout
	for _, wd := range workdirs {
		got = strings.ReplaceAll(got, wd, "<generator-workdir>")
	}
	want, err := os.ReadFile(filepath.Join(fixDir, "expected", file))
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("tusk %v differs from WAL-G's %s\n got:\n%s\nwant:\n%s", args, file, got, want)
	}
}

// TestFixtureWalShowVerify runs wal-show and wal-verify on copies of every
// fixture and compares their output with WAL-G's.
func TestFixtureWalShowVerify(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	for _, f := range loadManifest(t, fixRoot).Fixtures {
		fixDir := filepath.Join(fixRoot, f.Name)
		for label, sm := range f.storages(t) {
			t.Run(strings.TrimSuffix(f.Name+"/"+label, "/"), func(t *testing.T) {
				storage := copyStorage(t, filepath.Join(fixDir, sm[0]))
				env := fixtureEnv(fixDir, f, storage, sm[1])
				workdirs := fixtureTimes(t, fixDir, storage)
				if label != "" {
					args := []string{"wal-show", "--detailed-json"}
					expectOutput(t, fixDir, "wal-show-"+label+".json", runTuskAs(t, false, tusk, env, args...), nil, args)
					return
				}
				lsn := verifyLSN(t, fixDir)
				for file, args := range map[string][]string{
					"wal-show.txt":    {"wal-show"},
					"wal-show.json":   {"wal-show", "--detailed-json"},
					"wal-verify.txt":  {"wal-verify", "integrity", "timeline", "--timeline", "1", "--lsn", lsn},
					"wal-verify.json": {"wal-verify", "timeline", "integrity", "integrity", "--json", "--timeline", "1", "--lsn", lsn},
				} {
					expectOutput(t, fixDir, file, runTuskAs(t, false, tusk, env, args...), workdirs, args)
				}
				// --without-backups: no backups column, no backups in JSON.
				r := runTuskAs(t, false, tusk, env, "wal-show", "--without-backups")
				if r.code != 0 || strings.Contains(r.stdout, "BACKUPS") || !strings.Contains(r.stdout, "| STATUS |") {
					t.Errorf("wal-show --without-backups: exit %d\n%s%s", r.code, r.stdout, r.stderr)
				}
				r = runTuskAs(t, false, tusk, env, "wal-show", "--without-backups", "--detailed-json")
				if r.code != 0 || strings.Contains(r.stdout, "backups") || !json.Valid([]byte(r.stdout)) {
					t.Errorf("wal-show --without-backups --detailed-json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
				}
			})
		}
	}
}

// TestWalVerifyFaults removes, truncates and corrupts a WAL segment inside
// the backups' range and checks what wal-show and wal-verify report, and
// wal-verify's exit statuses (WAL-G's: 0 whenever the checks ran).
func TestWalVerifyFaults(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	f := fixtureNamed(t, fixRoot, "lz4-delta")
	fixDir := filepath.Join(fixRoot, f.Name)
	storage := copyStorage(t, filepath.Join(fixDir, "storage"))
	env := fixtureEnv(fixDir, f, storage, "")
	seg3 := filepath.Join(storage, "wal_005", "000000010000000000000003.lz4")
	verify := []string{"wal-verify", "integrity", "timeline", "--timeline", "1", "--lsn", "0/5000028"}

	// Truncated and corrupted objects are still there: wal-verify, like
	// WAL-G's, checks presence (reading them is backup-verify's job).
	body, err := os.ReadFile(seg3)
	if err != nil {
		t.Fatal(err)
	}
	for _, damaged := range [][]byte{body[:len(body)/2], append([]byte("garbage"), body[7:]...)} {
		if err := os.WriteFile(seg3, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		r := runTuskAs(t, false, tusk, env, append(verify, "--json")...)
		if r.code != 0 || !strings.Contains(r.stdout, `"integrity":{"status":"OK"`) {
			t.Errorf("damaged segment: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}

	// Removed: a lost segment between two found runs, a FAILURE, exit 0.
	if err := os.Remove(seg3); err != nil {
		t.Fatal(err)
	}
	r := runTuskAs(t, false, tusk, env, append(verify, "--json")...)
	if r.code != 0 || !strings.Contains(r.stdout, `"integrity":{"status":"WARNING"`) || !strings.Contains(r.stdout, `"MISSING_UPLOADING"`) {
		t.Errorf("removed segment within the upload window: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	env1 := append(slices.Clone(env), "WALG_UPLOAD_CONCURRENCY=1")
	r = runTuskAs(t, false, tusk, env1, verify...)
	want := `[wal-verify] integrity check status: FAILURE
[wal-verify] integrity check details:
+-----+--------------------------+--------------------------+----------------+--------------+
| TLI | START                    | END                      | SEGMENTS COUNT |       STATUS |
+-----+--------------------------+--------------------------+----------------+--------------+
|   1 | 000000010000000000000002 | 000000010000000000000002 |              1 |        FOUND |
|   1 | 000000010000000000000003 | 000000010000000000000003 |              1 | MISSING_LOST |
|   1 | 000000010000000000000004 | 000000010000000000000004 |              1 |        FOUND |
+-----+--------------------------+--------------------------+----------------+--------------+
[wal-verify] timeline check status: OK
[wal-verify] timeline check details:
Highest timeline found in storage: 1
Current cluster timeline: 1
`
	if r.code != 0 || r.stdout != want {
		t.Errorf("removed segment: exit %d\n%s\nwant:\n%s\n%s", r.code, r.stdout, want, r.stderr)
	}
	r = runTuskAs(t, false, tusk, env1, append(verify, "--json")...)
	wantJSON := `{"integrity":{"status":"FAILURE","details":[` +
		`{"timeline_id":1,"start_segment":"000000010000000000000002","end_segment":"000000010000000000000002","segments_count":1,"status":"FOUND"},` +
		`{"timeline_id":1,"start_segment":"000000010000000000000003","end_segment":"000000010000000000000003","segments_count":1,"status":"MISSING_LOST"},` +
		`{"timeline_id":1,"start_segment":"000000010000000000000004","end_segment":"000000010000000000000004","segments_count":1,"status":"FOUND"}]},` +
		`"timeline":{"status":"OK","details":{"current_timeline_id":1,"highest_storage_timeline_id":1}}}`
	if r.code != 0 || r.stdout != wantJSON {
		t.Errorf("removed segment --json: exit %d\n%s\nwant\n%s\n%s", r.code, r.stdout, wantJSON, r.stderr)
	}
	r = runTuskAs(t, false, tusk, env, "wal-show", "--detailed-json", "--without-backups")
	if r.code != 0 || !strings.Contains(r.stdout, `"missing_segments":["000000010000000000000003"]`) || !strings.Contains(r.stdout, `"status":"LOST_SEGMENTS"`) {
		t.Errorf("wal-show after removal: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A damaged history file stops both commands with one line naming it.
	if err := os.WriteFile(filepath.Join(storage, "wal_005", "00000001.history"), []byte("0\tx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"wal-show"}, verify} {
		r := runTuskAs(t, false, tusk, env, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "wal_005/00000001.history") || r.stdout != "" {
			t.Errorf("%v with a damaged history file: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	os.Remove(filepath.Join(storage, "wal_005", "00000001.history"))

	// Refusals: exit 1, nothing on stdout.
	for _, args := range [][]string{
		{"wal-verify"},
		{"wal-verify", "integrity", "lineage", "--timeline", "1", "--lsn", "0/5000028"},
		{"wal-verify", "integrity", "--lsn", "0/5000028"},
		{"wal-verify", "integrity", "--timeline", "1"},
		{"wal-verify", "integrity", "--timeline", "1", "--lsn", "5000028"},
		{"wal-verify", "integrity", "--timeline", "1", "--lsn", "0/0"},
		{"wal-verify", "integrity", "--timeline", "1", "--lsn", "0/5000028", "--backup-name", "base_000000010000000000000009"},
		{"wal-show", "extra"},
	} {
		r := runTuskAs(t, false, tusk, env, args...)
		if r.code != 1 || r.stdout != "" || strings.Count(strings.TrimSpace(r.stderr), "\n") > 2 {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %s", args, r.code, r.stdout, r.stderr)
		}
	}
	// Without --lsn it asks PostgreSQL: no server, exit 1.
	r = runTuskAs(t, false, tusk, append(env, "PGHOST="+t.TempDir(), "PGPORT=1"), "wal-verify", "timeline")
	if r.code != 1 || r.stdout != "" {
		t.Errorf("no server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestWalShowVerifyS3 runs both commands on a fixture uploaded to S3
// (versitygw). S3 sets the sentinels' times at upload, so the backups'
// "time" fields are compared for order only.
func TestWalShowVerifyS3(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{TLS: true, Prefix: "repo/pg"})
	fixDir := filepath.Join(fixRoot, "lz4-delta")
	src := filepath.Join(fixDir, "storage")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var keys []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(src, p)
			keys = append(keys, filepath.ToSlash(rel))
		}
		return err
	})
	// Sentinels last and in push order, a second apart, so their times
	// order the backups as WAL-G saw them.
	isSentinel := func(k string) bool { return strings.HasSuffix(k, backup.SentinelSuffix) }
	slices.SortStableFunc(keys, func(a, b string) int {
		switch {
		case isSentinel(a) && !isSentinel(b):
			return 1
		case !isSentinel(a) && isSentinel(b):
			return -1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		f, err := os.Open(filepath.Join(src, filepath.FromSlash(k)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("repo/pg/" + k), Body: f})
		f.Close()
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		if isSentinel(k) {
			time.Sleep(1100 * time.Millisecond)
		}
	}
	env := append(srv.Env(), "WALG_COMPRESSION_METHOD=lz4")
	var workdirs []string
	for _, k := range keys {
		if isSentinel(k) {
			s, err := backup.ParseSentinel(s3Get(t, srv, "repo/pg/"+k))
			if err != nil {
				t.Fatal(err)
			}
			workdirs = append(workdirs, strings.TrimSuffix(s.DataDir, "/pgdata"))
		}
	}
	lsn := verifyLSN(t, fixDir)
	for file, args := range map[string][]string{
		"wal-show.txt":    {"wal-show"},
		"wal-verify.txt":  {"wal-verify", "integrity", "timeline", "--timeline", "1", "--lsn", lsn},
		"wal-verify.json": {"wal-verify", "integrity", "timeline", "--json", "--timeline", "1", "--lsn", lsn},
	} {
		expectOutput(t, fixDir, file, runTuskAs(t, false, tusk, env, args...), workdirs, args)
	}
	r := runTuskAs(t, false, tusk, env, "wal-show", "--detailed-json")
	times := regexp.MustCompile(`"time":"[^"]*"`)
	got := times.ReplaceAllString(r.stdout, `"time":"T"`)
	for _, wd := range workdirs {
		got = strings.ReplaceAll(got, wd, "<generator-workdir>")
	}
	want, err := os.ReadFile(filepath.Join(fixDir, "expected", "wal-show.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || got != times.ReplaceAllString(string(want), `"time":"T"`) {
		t.Errorf("wal-show --detailed-json on S3: exit %d\n got:\n%s\nwant:\n%s\n%s", r.code, got, want, r.stderr)
	}
	// restore-window reads the records of the same WAL from S3.
	var f fixture
	for _, fx := range loadManifest(t, fixRoot).Fixtures {
		if fx.Name == "lz4-delta" {
			f = fx
		}
	}
	checkFixtureWindow(t, f, runTuskAs(t, false, tusk, env, "restore-window", "--json"))
	// backup-verify reads the same backups from S3: the delta and its base.
	r = runTuskAs(t, false, tusk, env, "backup-verify", "--json", "LATEST")
	if r.code != 0 || !strings.Contains(r.stdout, `"status":"OK","chain":["base_000000010000000000000002","base_000000010000000000000004_D_000000010000000000000002"],"tars":6`) {
		t.Errorf("backup-verify on S3: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestWalVerifyPromotedPG15 archives a PostgreSQL 15 cluster with tusk,
// takes a backup, restores it elsewhere and promotes the copy (timeline 2,
// archiving into the same storage), then checks both commands against the
// live servers: wal-verify reads the timeline and position from
// PostgreSQL, and walks from timeline 2 back across the switch to the
// backup on timeline 1.
func TestWalVerifyPromotedPG15(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	storage := filepath.Join(pgcluster.TempDir(t), "storage")
	env := []string{"WALG_FILE_PREFIX=" + storage, "WALG_COMPRESSION_METHOD=lz4"}
	primary := archivingPrimary(t, tusk, "", env)
	primary.Exec("create table t (id int); insert into t select generate_series(1, 1000)")
	primary.WaitArchived(primary.SwitchWAL(), time.Minute)
	if r := runAsServer(t, tusk, append(env, primary.ConnEnv()...), "backup-push", primary.DataDir()); r.code != 0 {
		t.Fatalf("backup-push: exit %d\n%s", r.code, r.output)
	}
	for range 3 {
		primary.Exec("insert into t select generate_series(1, 1000)")
		primary.WaitArchived(primary.SwitchWAL(), time.Minute)
	}
	name := strings.TrimSpace(runAsServer(t, tusk, env, "backup-list").output)
	name = strings.Fields(lastLine(name))[0]
	check := func(who *pgcluster.Cluster, wantTLI string, want ...string) {
		t.Helper()
		r := runAsServer(t, tusk, append(env, who.ConnEnv()...), "wal-verify", "integrity", "timeline", "--json")
		if r.code != 0 {
			t.Fatalf("wal-verify: exit %d\n%s", r.code, r.output)
		}
		out := lastLine(r.output)
		t.Logf("wal-verify on timeline %s: %s", wantTLI, out)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("wal-verify on timeline %s: no %s in\n%s", wantTLI, w, r.output)
			}
		}
	}
	check(primary, "1", `"integrity":{"status":"OK"`, `"timeline":{"status":"OK","details":{"current_timeline_id":1,"highest_storage_timeline_id":1}}`)

	// A restored copy, promoted at the end of the archived WAL, archives
	// timeline 2 into the same storage. (Promoted at the backup's end
	// instead, timeline 1 would end in the backup's first segment, and
	// WAL-G's rule, kept here, no longer lets that backup start the range.)
	s, err := backup.ParseSentinel(mustRead(t, filepath.Join(storage, filepath.FromSlash(backup.SentinelKey(name)))))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(pgcluster.TempDir(t), "data")
	if r := runAsServer(t, tusk, env, "backup-fetch", dest, name); r.code != 0 {
		t.Fatalf("backup-fetch: exit %d\n%s", r.code, r.output)
	}
	promoted := pgcluster.Open(t, dest, pgcluster.Options{
		Conf: []string{
			fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk),
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk),
		},
		Env: env,
	})
	promoted.WriteDataFile("recovery.signal", nil)
	promoted.Start()
	promoted.WaitRecoveryDone(3 * time.Minute)
	for range 2 {
		promoted.Exec("insert into t select generate_series(1, 1000)")
		promoted.WaitArchived(promoted.SwitchWAL(), time.Minute)
	}
	if _, err := os.Stat(filepath.Join(storage, "wal_005", "00000002.history.lz4")); err != nil {
		t.Fatalf("timeline 2's history file not archived: %v", err)
	}

	r := runAsServer(t, tusk, env, "wal-show", "--detailed-json")
	var tls []struct {
		ID       uint32 `json:"id"`
		Parent   uint32 `json:"parent_id"`
		Switch   uint64 `json:"switch_point_lsn"`
		Status   string `json:"status"`
		Backups  []any  `json:"backups"`
		StartSeg string `json:"start_segment"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.output)), &tls); err != nil || len(tls) != 2 {
		t.Fatalf("wal-show: %v\n%s", err, r.output)
	}
	if tls[0].ID != 1 || tls[1].ID != 2 || tls[1].Parent != 1 || tls[1].Switch == 0 || tls[0].Status != "OK" || len(tls[0].Backups) != 1 {
		t.Errorf("wal-show timelines: %+v", tls)
	}
	if tls[1].Switch/seg16 < uint64(s.LSN)/seg16 {
		t.Errorf("switch point %X before the backup's start %X", tls[1].Switch, s.LSN)
	}
	// From timeline 2 the walk crosses the switch and reaches the
	// backup: found on both timelines, nothing missing.
	check(promoted, "2", `"integrity":{"status":"OK"`, `{"timeline_id":1,"start_segment":"`+backup.WalFileName(name)+`"`,
		`"timeline_id":2,`, `"timeline":{"status":"OK","details":{"current_timeline_id":2,"highest_storage_timeline_id":2}}`)
	// The old primary is now behind.
	check(primary, "1", `"timeline":{"status":"FAILURE","details":{"current_timeline_id":1,"highest_storage_timeline_id":2}}`)
	if strings.Contains(r.output, "MISSING") {
		t.Errorf("missing segments after promotion:\n%s", r.output)
	}
	// The backup tusk pushed verifies, and names the start of the range.
	if r := runAsServer(t, tusk, env, "backup-verify", name); r.code != 0 || !strings.Contains(r.output, "backup "+name+": OK") {
		t.Errorf("backup-verify %s: exit %d\n%s", name, r.code, r.output)
	}
	r = runAsServer(t, tusk, append(env, promoted.ConnEnv()...), "wal-verify", "integrity", "--json", "--backup-name", name)
	if r.code != 0 || !strings.Contains(lastLine(r.output), `{"integrity":{"status":"OK","details":[{"timeline_id":1,"start_segment":"`+backup.WalFileName(name)+`"`) {
		t.Errorf("wal-verify --backup-name: exit %d\n%s", r.code, r.output)
	}
}

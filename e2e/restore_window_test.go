package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// restoreWindowJSON is restore-window --json as the README documents it.
type restoreWindowJSON struct {
	Timelines []struct {
		Timeline uint32 `json:"timeline"`
		Parent   uint32 `json:"parent"`
		BeginsAt string `json:"begins_at"`
		Ranges   []struct {
			StartLSN  string     `json:"start_lsn"`
			StartTime *time.Time `json:"start_time"`
			EndLSN    string     `json:"end_lsn"`
			EndTime   *time.Time `json:"end_time"`
			Backups   []string   `json:"backups"`
		} `json:"ranges"`
		Gaps []struct {
			StartSegment string `json:"start_segment"`
			Reason       string `json:"reason"`
		} `json:"gaps"`
		RestorePoints []struct {
			Name      string    `json:"name"`
			LSN       string    `json:"lsn"`
			Time      time.Time `json:"time"`
			Reachable bool      `json:"reachable"`
		} `json:"restore_points"`
	} `json:"timelines"`
}

// TestRestoreWindowPG15 archives a PostgreSQL 15 cluster to file storage,
// takes a backup, makes two restore points, then promotes a copy restored
// to the second one into timeline 2 (archiving into the same storage)
// with a third. restore-window must report each timeline's range with the
// backup, the switch, no gap, and the restore points with the LSNs and
// times PostgreSQL gave them; then backup-fetch to the reported points
// (by name and by time, and to a range's start time) recovers the data
// the primary had there. A removed segment then shows as a gap that
// splits the range.
func TestRestoreWindowPG15(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=lz4"}
	primary := archivingPrimary(t, tusk, "", env)
	primary.Exec(`create table events (id serial primary key, batch int, body text);
		insert into events (batch, body) select 0, md5(g::text) from generate_series(1, 1000) g`)
	res := runAsServer(t, tusk, append(append([]string{}, env...), primary.ConnEnv()...), "backup-push", primary.DataDir())
	if res.code != 0 {
		t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
	}
	m := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F]+) `).FindStringSubmatch(res.output)
	if m == nil {
		t.Fatalf("backup-push output lacks the backup name:\n%s", res.output)
	}
	name := m[1]
	atBackup := anyDigest(t, primary, "events")
	batch := func(c *pgcluster.Cluster, n int) {
		t.Helper()
		c.Exec(fmt.Sprintf("insert into events (batch, body) select %d, md5(g::text) from generate_series(1, 300) g", n))
	}
	restorePoint := func(c *pgcluster.Cluster, rp string) string {
		t.Helper()
		var lsn string
		if err := c.QueryRow(fmt.Sprintf("select pg_create_restore_point('%s')::text", rp)).Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		return lsn
	}
	batch(primary, 1)
	atOne := anyDigest(t, primary, "events")
	lsnOne := restorePoint(primary, "rp_one")
	primary.SwitchWAL() // rp_one alone in segment 3
	batch(primary, 2)
	atTwo := anyDigest(t, primary, "events")
	lsnTwo := restorePoint(primary, "rp_two")
	batch(primary, 3) // only on timeline 1
	primary.WaitArchived(primary.SwitchWAL(), time.Minute)
	primary.Stop()

	// Timeline 2 branches at rp_two.
	dest := filepath.Join(pgcluster.TempDir(t), "data")
	if res := runAsServer(t, tusk, env, "backup-fetch", dest, name, "--target-name", "rp_two", "--target-action", "promote"); res.code != 0 {
		t.Fatalf("backup-fetch: %s", res.output)
	}
	promoted := pgcluster.Open(t, dest, pgcluster.Options{Env: env, Conf: []string{
		"archive_mode = on", fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk)}})
	promoted.Start()
	promoted.WaitRecoveryDone(2 * time.Minute)
	batch(promoted, 4)
	atTL2 := anyDigest(t, promoted, "events")
	lsnTL2 := restorePoint(promoted, "rp_tl2")
	batch(promoted, 5)
	promoted.WaitArchived(promoted.SwitchWAL(), time.Minute)
	promoted.Stop()

	run := runTuskAs(t, false, tusk, env, "restore-window", "--json")
	if run.code != 0 {
		t.Fatalf("restore-window exit %d:\n%s", run.code, run.stderr)
	}
	var rw restoreWindowJSON
	if err := json.Unmarshal([]byte(run.stdout), &rw); err != nil {
		t.Fatalf("restore-window --json: %v\n%s", err, run.stdout)
	}
	if len(rw.Timelines) != 2 {
		t.Fatalf("%d timelines, want 2:\n%s", len(rw.Timelines), run.stdout)
	}
	tl1, tl2 := rw.Timelines[0], rw.Timelines[1]
	mustLSN := func(s string) pg.LSN {
		t.Helper()
		l, err := pg.ParseLSN(s)
		if err != nil {
			t.Fatalf("%v in\n%s", err, run.stdout)
		}
		return l
	}
	if tl2.Timeline != 2 || tl2.Parent != 1 || mustLSN(tl2.BeginsAt) != mustLSN(lsnTwo) {
		t.Errorf("timeline 2: parent %d begins at %s, want 1 where rp_two ends, %s", tl2.Parent, tl2.BeginsAt, lsnTwo)
	}
	for _, tl := range rw.Timelines {
		if len(tl.Ranges) != 1 || !slices.Equal(tl.Ranges[0].Backups, []string{name}) || len(tl.Gaps) != 0 {
			t.Fatalf("timeline %d: ranges %+v gaps %+v, want one range from %s and no gap", tl.Timeline, tl.Ranges, tl.Gaps, name)
		}
		r := tl.Ranges[0]
		if r.StartTime == nil || r.EndTime == nil || !r.EndTime.After(*r.StartTime) || mustLSN(r.EndLSN) <= mustLSN(r.StartLSN) {
			t.Errorf("timeline %d: range %+v", tl.Timeline, r)
		}
	}
	type rp struct {
		name, lsn string
		reachable bool
	}
	points := func(i int) []rp {
		var out []rp
		for _, p := range rw.Timelines[i].RestorePoints {
			out = append(out, rp{p.Name, p.LSN, p.Reachable})
		}
		return out
	}
	if got, want := points(0), []rp{{"rp_one", lsnOne, true}, {"rp_two", lsnTwo, true}}; !slices.Equal(got, want) {
		t.Errorf("timeline 1 restore points %v, want %v", got, want)
	}
	if got, want := points(1), []rp{{"rp_one", lsnOne, true}, {"rp_two", lsnTwo, true}, {"rp_tl2", lsnTL2, true}}; !slices.Equal(got, want) {
		t.Errorf("timeline 2 restore points %v, want %v", got, want)
	}
	if mustLSN(tl1.Ranges[0].EndLSN) <= mustLSN(lsnTwo) || mustLSN(tl2.Ranges[0].EndLSN) <= mustLSN(lsnTL2) ||
		mustLSN(tl1.Ranges[0].StartLSN) >= mustLSN(lsnOne) {
		t.Errorf("ranges end at %s and %s, before the last restore points", tl1.Ranges[0].EndLSN, tl2.Ranges[0].EndLSN)
	}
	text := runTuskAs(t, false, tusk, env, "restore-window")
	t.Logf("restore-window:\n%s", text.stdout)
	if text.code != 0 || !strings.Contains(text.stdout, `restore point "rp_tl2" at `+lsnTL2) ||
		!strings.Contains(text.stdout, "timeline 2 (from timeline 1 at "+tl2.BeginsAt+")") {
		t.Errorf("restore-window text, exit %d:\n%s", text.code, text.stdout)
	}

	pgTime := func(tm time.Time) string { return tm.UTC().Format("2006-01-02 15:04:05.999999-07") }
	rpTime := tl1.RestorePoints[0].Time
	t.Run("restores", func(t *testing.T) {
		restoreToPoints(t, tusk, env, name, []targetCase{
			{"name on timeline 1", []string{"--target-name", "rp_one"}, atOne},
			{"restore point time", []string{"--target-time", pgTime(rpTime)}, atOne},
			{"range start time", []string{"--target-time", pgTime(*tl1.Ranges[0].StartTime), "--target-timeline", "1"}, atBackup},
			{"name on timeline 2", []string{"--target-name", "rp_tl2"}, atTL2},
			{"timeline 1 at its branch point", []string{"--target-name", "rp_two", "--target-timeline", "1"}, atTwo},
		})
	})

	// Without segment 3 (rp_one) both timelines' ranges end before it
	// and no backup serves what follows; a damaged object on timeline 2
	// is named.
	if err := os.Remove(filepath.Join(store, "wal_005", "000000010000000000000003.lz4")); err != nil {
		t.Fatal(err)
	}
	damaged := "wal_005/000000020000000000000004.lz4"
	if err := os.Truncate(filepath.Join(store, filepath.FromSlash(damaged)), 1000); err != nil {
		t.Fatal(err)
	}
	run = runTuskAs(t, false, tusk, env, "restore-window", "--json")
	rw = restoreWindowJSON{}
	if err := json.Unmarshal([]byte(run.stdout), &rw); run.code != 0 || err != nil {
		t.Fatalf("restore-window exit %d, %v:\n%s%s", run.code, err, run.stdout, run.stderr)
	}
	for i, tl := range rw.Timelines {
		if len(tl.Ranges) != 1 || mustLSN(tl.Ranges[0].EndLSN) > 0x3000000 || mustLSN(tl.Ranges[0].EndLSN) < mustLSN(tl.Ranges[0].StartLSN) ||
			len(tl.Gaps) == 0 || tl.Gaps[0].StartSegment != "000000010000000000000003" || tl.Gaps[0].Reason != "missing" {
			t.Errorf("timeline %d without segment 3: ranges %+v gaps %+v", tl.Timeline, tl.Ranges, tl.Gaps)
		}
		for _, p := range tl.RestorePoints {
			if p.Reachable || p.Name == "rp_one" {
				t.Errorf("timeline %d: restore point %+v listed as reachable or from the missing segment", tl.Timeline, p)
			}
		}
		if i == 1 && (len(tl.Gaps) != 2 || !strings.Contains(tl.Gaps[1].Reason, damaged)) {
			t.Errorf("timeline 2: gaps %+v, want the missing segment and %s", tl.Gaps, damaged)
		}
	}
}

type targetCase struct {
	what  string
	flags []string
	want  digest
}

// restoreToPoints restores backup name with each case's target flags, in
// parallel, and compares the table with the digest the primary had there.
func restoreToPoints(t *testing.T, tusk string, env []string, name string, cases []targetCase) {
	for _, tc := range cases {
		t.Run(tc.what, func(t *testing.T) {
			t.Parallel()
			dest := filepath.Join(pgcluster.TempDir(t), "data")
			args := append([]string{"backup-fetch", dest, name, "--target-action", "promote"}, tc.flags...)
			if res := runAsServer(t, tusk, env, args...); res.code != 0 {
				t.Fatalf("backup-fetch %v exit %d:\n%s", tc.flags, res.code, res.output)
			}
			c := pgcluster.Open(t, dest, pgcluster.Options{})
			c.Start()
			c.WaitRecoveryDone(2 * time.Minute)
			if got := anyDigest(t, c, "events"); got != tc.want {
				t.Errorf("restored %v, the primary had %v there", got, tc.want)
			}
			c.Stop()
		})
	}
}

// TestFixtureRestoreWindow runs restore-window on the archives WAL-G
// wrote (every codec and encryption of the fixtures): one timeline whose
// one range is served by every backup, no gap, and lz4-delta's restore
// point fx_rp, reachable.
func TestFixtureRestoreWindow(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	for _, f := range loadManifest(t, fixRoot).withBackups(t) {
		t.Run(f.Name, func(t *testing.T) {
			fixDir := filepath.Join(fixRoot, f.Name)
			storage := copyStorage(t, filepath.Join(fixDir, "storage"))
			r := runTuskAs(t, false, tusk, fixtureSettings(fixDir, f, storage), "restore-window", "--json")
			checkFixtureWindow(t, f, r)
		})
	}
}

// checkFixtureWindow checks restore-window's report of a fixture.
func checkFixtureWindow(t *testing.T, f fixture, r tuskRun) {
	t.Helper()
	var rw restoreWindowJSON
	if err := json.Unmarshal([]byte(r.stdout), &rw); r.code != 0 || err != nil {
		t.Fatalf("restore-window exit %d, %v:\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	var backups []string
	for _, b := range f.Backups {
		backups = append(backups, b.Name)
	}
	if len(rw.Timelines) != 1 || len(rw.Timelines[0].Ranges) != 1 || len(rw.Timelines[0].Gaps) != 0 {
		t.Fatalf("want one timeline with one range and no gap:\n%s", r.stdout)
	}
	rg := rw.Timelines[0].Ranges[0]
	if !slices.Equal(rg.Backups, backups) || rg.StartTime == nil || rg.EndTime == nil || !rg.EndTime.After(*rg.StartTime) {
		t.Errorf("range %+v, want backups %v with times", rg, backups)
	}
	var names []string
	for _, p := range rw.Timelines[0].RestorePoints {
		if !p.Reachable || p.Time.Before(*rg.StartTime) || p.Time.After(*rg.EndTime) {
			t.Errorf("restore point %+v outside the range %+v", p, rg)
		}
		names = append(names, p.Name)
	}
	var want []string
	for _, tg := range f.RestoreTargets {
		if tg.Kind == "name" {
			want = append(want, tg.RecoveryTargetName)
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("restore points %v, want %v", names, want)
	}
}

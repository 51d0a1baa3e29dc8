package e2e

import (
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
	"github.com/tusk-pg/tusk/internal/wal"
)

// A real PostgreSQL 15 history in file storage: a full backup and a delta,
// a permanent full backup, a full backup, a restore point, then a restored
// copy promoted to timeline 2 archiving into the same storage, with a full
// backup and a delta there. Each delete form runs on a copy; every kept
// backup then restores (to its end, and to the restore point) with the
// data it had, and what was deleted is gone.
func TestRetentionPG15Timelines(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=lz4", "WALG_DELTA_MAX_STEPS=3"}
	primary := archivingPrimary(t, tusk, "", env)
	primary.Exec("create table t (phase text)")
	phase := func(c *pgcluster.Cluster, p string) { c.Exec("insert into t values ('" + p + "')") }
	push := func(c *pgcluster.Cluster, args ...string) string {
		t.Helper()
		res := runAsServer(t, tusk, append(append([]string{}, env...), c.ConnEnv()...), append([]string{"backup-push", c.DataDir()}, args...)...)
		if res.code != 0 {
			t.Fatalf("backup-push %v exit %d:\n%s", args, res.code, res.output)
		}
		m := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F_D]+) `).FindStringSubmatch(res.output)
		if m == nil {
			t.Fatalf("backup-push output lacks the backup name:\n%s", res.output)
		}
		return m[1]
	}
	phase(primary, "a")
	b1 := push(primary, "--full")
	phase(primary, "b")
	b2 := push(primary)
	phase(primary, "c")
	b3 := push(primary, "--full", "--permanent")
	phase(primary, "d")
	b4 := push(primary, "--full")
	phase(primary, "e")
	primary.Exec("select pg_create_restore_point('rp_e')")
	phase(primary, "x") // after the restore point: never seen on timeline 2
	primary.WaitArchived(primary.SwitchWAL(), time.Minute)
	primary.Stop()

	// Timeline 2: b4 restored to rp_e and promoted, archiving as before.
	dest := filepath.Join(pgcluster.TempDir(t), "data")
	if res := runAsServer(t, tusk, env, "backup-fetch", dest, b4); res.code != 0 {
		t.Fatalf("backup-fetch: %s", res.output)
	}
	promoted := pgcluster.Open(t, dest, pgcluster.Options{Env: env, Conf: []string{
		fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk),
		"recovery_target_name = 'rp_e'", "recovery_target_action = 'promote'",
		"archive_mode = on", fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk),
	}})
	promoted.WriteDataFile("recovery.signal", nil)
	promoted.Start()
	promoted.WaitRecoveryDone(3 * time.Minute)
	phase(promoted, "f")
	b5 := push(promoted, "--full")
	phase(promoted, "g")
	b6 := push(promoted)
	promoted.WaitArchived(promoted.SwitchWAL(), time.Minute)
	promoted.Stop()
	if !strings.Contains(b2, "_D_") || !strings.Contains(b6, "_D_") || !strings.HasPrefix(b5, "base_00000002") {
		t.Fatalf("unexpected history: %s %s %s %s %s %s", b1, b2, b3, b4, b5, b6)
	}
	startSeg := func(name string) wal.Segment {
		s, err := wal.ParseSegment(name[len("base_"):len("base_")+24], 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sentinel := func(dir, name string) *backup.Sentinel {
		raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(backup.SentinelKey(name))))
		if err != nil {
			t.Fatal(err)
		}
		s, err := backup.ParseSentinel(raw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	permStart, permEnd := sentinel(store, b3).LSN-1, sentinel(store, b3).FinishLSN-1

	restore := func(dir, name, target, want string) {
		t.Helper()
		e := []string{"WALG_FILE_PREFIX=" + dir, "WALG_COMPRESSION_METHOD=lz4"}
		d := filepath.Join(pgcluster.TempDir(t), "data")
		if res := runAsServer(t, tusk, e, "backup-fetch", d, name); res.code != 0 {
			t.Fatalf("backup-fetch %s: %s", name, res.output)
		}
		c := pgcluster.Open(t, d, pgcluster.Options{Env: e, Conf: []string{
			fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk), target, "recovery_target_action = 'promote'"}})
		c.WriteDataFile("recovery.signal", nil)
		c.Start()
		c.WaitRecoveryDone(3 * time.Minute)
		var got string
		if err := c.QueryRow("select string_agg(phase, '' order by phase) from t").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s restored with %s has phases %q, want %q", name, target, got, want)
		}
		c.Stop()
	}
	copyStore := func() string {
		dir := filepath.Join(pgcluster.TempDir(t), "store")
		if out, err := exec.Command("cp", "-a", store, dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		return dir
	}
	exists := func(dir, key string) bool {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(key)))
		return err == nil
	}
	// walLeft checks every archived WAL segment of the original history:
	// gone exactly when deleted(segment) says so.
	walLeft := func(dir string, deleted func(s wal.Segment) bool) {
		t.Helper()
		entries, err := os.ReadDir(filepath.Join(store, "wal_005"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			s, err := wal.ParseSegment(name[:min(24, len(name))], 16<<20)
			if err != nil {
				if !exists(dir, "wal_005/"+name) {
					t.Errorf("%s (no segment) was deleted", name)
				}
				continue
			}
			if got := !exists(dir, "wal_005/"+name); got != deleted(s) {
				t.Errorf("wal_005/%s deleted=%v, want %v", name, got, deleted(s))
			}
		}
	}
	inPermanent := func(s wal.Segment) bool {
		return s.Timeline == 1 && s.No >= permStart.Segment(16<<20) && s.No <= permEnd.Segment(16<<20)
	}
	run := func(dir string, args ...string) {
		t.Helper()
		e := []string{"WALG_FILE_PREFIX=" + dir}
		if res := runTusk(t, tusk, e, args...); res.code != 0 {
			t.Fatalf("%v: %s", args, res.output)
		}
	}

	t.Run("retain FULL 2", func(t *testing.T) {
		dir := copyStore()
		run(dir, "delete", "retain", "FULL", "2") // dry run
		run(dir, "delete", "retain", "FULL", "2", "--confirm")
		for _, b := range []string{b1, b2} {
			if exists(dir, backup.SentinelKey(b)) || exists(dir, backup.FolderKey(b)) {
				t.Errorf("%s not deleted", b)
			}
		}
		b4s := startSeg(b4)
		walLeft(dir, func(s wal.Segment) bool { return s.Before(b4s) && !inPermanent(s) })
		restore(dir, b3, "recovery_target = 'immediate'", "abc")
		restore(dir, b4, "recovery_target = 'immediate'", "abcd")
		restore(dir, b4, "recovery_target_name = 'rp_e'", "abcde")
		restore(dir, b5, "recovery_target = 'immediate'", "abcdef")
		restore(dir, b6, "recovery_target = 'immediate'", "abcdefg")
	})
	t.Run("retain FULL 1 --after", func(t *testing.T) {
		dir := copyStore()
		// One full by count would keep only timeline 2's; --after b4 keeps
		// what is newer than b4 too, and the permanent b3 stays whatever.
		run(dir, "delete", "retain", "FULL", "1", "--after", b4, "--confirm")
		for _, b := range []string{b1, b2} {
			if exists(dir, backup.SentinelKey(b)) || exists(dir, backup.FolderKey(b)) {
				t.Errorf("%s not deleted", b)
			}
		}
		for _, b := range []string{b3, b5, b6} {
			if !exists(dir, backup.SentinelKey(b)) {
				t.Errorf("%s deleted", b)
			}
		}
		restore(dir, b3, "recovery_target = 'immediate'", "abc")
		if exists(dir, backup.SentinelKey(b4)) {
			restore(dir, b4, "recovery_target_name = 'rp_e'", "abcde")
		}
		restore(dir, b5, "recovery_target = 'immediate'", "abcdef")
		restore(dir, b6, "recovery_target = 'immediate'", "abcdefg")
	})
	t.Run("retain FIND_FULL 1", func(t *testing.T) {
		dir := copyStore()
		if res := runTusk(t, tusk, []string{"WALG_FILE_PREFIX=" + dir}, "delete", "retain", "1", "--confirm"); res.code == 0 {
			t.Fatalf("retain 1 with a delta newest was not refused:\n%s", res.output)
		}
		run(dir, "delete", "retain", "FIND_FULL", "1", "--confirm")
		for _, b := range []string{b1, b2, b4} {
			if exists(dir, backup.SentinelKey(b)) || exists(dir, backup.FolderKey(b)) {
				t.Errorf("%s not deleted", b)
			}
		}
		b5s := startSeg(b5)
		walLeft(dir, func(s wal.Segment) bool { return s.Before(b5s) && !inPermanent(s) })
		restore(dir, b3, "recovery_target = 'immediate'", "abc")
		restore(dir, b6, "recovery_target = 'immediate'", "abcdefg")
	})
	t.Run("before", func(t *testing.T) {
		dir := copyStore()
		run(dir, "delete", "before", b4, "--confirm")
		for _, b := range []string{b1, b2} {
			if exists(dir, backup.SentinelKey(b)) || exists(dir, backup.FolderKey(b)) {
				t.Errorf("%s not deleted", b)
			}
		}
		if !exists(dir, backup.SentinelKey(b3)) {
			t.Errorf("permanent %s deleted", b3)
		}
		b4s := startSeg(b4)
		walLeft(dir, func(s wal.Segment) bool { return s.Before(b4s) && !inPermanent(s) })
		restore(dir, b3, "recovery_target = 'immediate'", "abc")
		restore(dir, b4, "recovery_target_name = 'rp_e'", "abcde")
	})
	t.Run("target", func(t *testing.T) {
		dir := copyStore()
		// A delta named alone: only it goes, and no WAL, so its base still
		// restores through the whole of timeline 1.
		run(dir, "delete", "target", b2, "--confirm")
		if exists(dir, backup.SentinelKey(b2)) || exists(dir, backup.FolderKey(b2)) {
			t.Errorf("%s not deleted", b2)
		}
		for _, b := range []string{b1, b3, b4, b5, b6} {
			if !exists(dir, backup.SentinelKey(b)) {
				t.Errorf("%s deleted", b)
			}
		}
		walLeft(dir, func(wal.Segment) bool { return false })
		restore(dir, b1, "recovery_target_name = 'rp_e'", "abcde")
	})
	t.Run("garbage", func(t *testing.T) {
		dir := copyStore()
		run(dir, "delete", "garbage", "--confirm")
		b1s := startSeg(b1)
		walLeft(dir, func(s wal.Segment) bool { return s.Before(b1s) })
		restore(dir, b2, "recovery_target = 'immediate'", "ab")
	})
	t.Run("everything FORCE", func(t *testing.T) {
		dir := copyStore()
		if res := runTusk(t, tusk, []string{"WALG_FILE_PREFIX=" + dir}, "delete", "everything", "--confirm"); res.code == 0 {
			t.Fatalf("everything with a permanent backup was not refused:\n%s", res.output)
		}
		run(dir, "delete", "everything", "FORCE", "--confirm")
		var left []string
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("left after everything FORCE: %v", left)
		}
	})
}

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

type restoreTarget struct {
	Label              string `json:"label"`
	Kind               string `json:"kind"` // immediate, name, end
	Backup             string `json:"backup"`
	RecoveryTargetName string `json:"recovery_target_name"`
	Digests            map[string]struct {
		MD5  string `json:"md5"`
		Rows int64  `json:"rows"`
	} `json:"digests"`
}

// withBackups keeps the fixtures that have base backups.
func (m manifest) withBackups(t *testing.T) []fixture {
	var out []fixture
	for _, f := range m.Fixtures {
		if len(f.Backups) > 0 {
			out = append(out, f)
		}
	}
	if len(out) < 4 {
		t.Fatalf("manifest lists %d fixtures with backups, expected at least 4", len(out))
	}
	return out
}

// serverStorageCopy copies a fixture's storage (cp -a keeps the files'
// times) into a directory the PostgreSQL server user can read, since
// restore_command runs as that user.
func serverStorageCopy(t *testing.T, fixDir string) string {
	t.Helper()
	dst := filepath.Join(pgcluster.TempDir(t), "storage")
	if out, err := exec.Command("cp", "-a", filepath.Join(fixDir, "storage"), dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w,a+rX", dst).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	return dst
}

// fixtureSettings is the fixture's WAL-G environment with absolute paths.
func fixtureSettings(fixDir string, f fixture, storage string) []string {
	var env []string
	for k, v := range f.Env {
		switch k {
		case "WALG_FILE_PREFIX":
			v = storage
		case "WALG_PGP_KEY_PATH", "WALG_LIBSODIUM_KEY_PATH":
			v = filepath.Join(fixDir, v)
		}
		env = append(env, k+"="+v)
	}
	// No detached prefetcher outliving the test's directories.
	return append(env, "WALG_DOWNLOAD_CONCURRENCY=1")
}

// tuskRun is one tusk run with stdout and stderr apart.
type tuskRun struct {
	code           int
	stdout, stderr string
}

// runTuskAs runs tusk with exactly env, as the server's OS user when
// asServer (so restored files belong to it), else as the test's user.
func runTuskAs(t *testing.T, asServer bool, tusk string, env []string, args ...string) tuskRun {
	t.Helper()
	cmd := exec.Command(tusk, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + pgcluster.TempDir(t), "TZ=UTC"}, env...)
	if asServer {
		pgcluster.AsServerUser(t, cmd)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return tuskRun{0, out.String(), errOut.String()}
	case errors.As(err, &exitErr):
		return tuskRun{exitErr.ExitCode(), out.String(), errOut.String()}
	}
	t.Fatalf("running tusk %v: %v", args, err)
	return tuskRun{}
}

// TestFixtureBackupList compares backup-list's three documented outputs
// with what WAL-G printed for every fixture. The copied sentinels get the
// modification times WAL-G saw (the copy has the copier's), and the
// generator's work dir is replaced after rendering, as in the expected
// files.
func TestFixtureBackupList(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	for _, f := range loadManifest(t, fixRoot).withBackups(t) {
		t.Run(f.Name, func(t *testing.T) {
			fixDir := filepath.Join(fixRoot, f.Name)
			storage := serverStorageCopy(t, fixDir)
			env := fixtureSettings(fixDir, f, storage)
			raw, err := os.ReadFile(filepath.Join(fixDir, "expected", "backup-list-detail.json"))
			if err != nil {
				t.Fatal(err)
			}
			var exp []struct {
				Name string    `json:"backup_name"`
				Time time.Time `json:"time"`
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
			for file, args := range map[string][]string{
				"backup-list.txt":         {"backup-list"},
				"backup-list-detail.txt":  {"backup-list", "--detail"},
				"backup-list-detail.json": {"backup-list", "--detail", "--json"},
			} {
				r := runTuskAs(t, false, tusk, env, args...)
				if r.code != 0 {
					t.Errorf("%v: exit %d\n%s", args, r.code, r.stderr)
					continue
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
				if strings.Contains(strings.Join(args, " "), "--json") && !json.Valid([]byte(r.stdout)) {
					t.Errorf("--json output is not clean JSON: %q", r.stdout)
				}
			}
		})
	}
}

// restoreCase is one restore of a full backup followed by recovery.
type restoreCase struct {
	target restoreTarget
	// flags are backup-fetch's recovery flags; none means the recovery is
	// configured by hand as the fixtures README describes (WAL-G style).
	flags []string
	// suffix tells apart cases of one target restored from different
	// backups.
	suffix string
}

// restoreCases lists, for the full backups of a fixture, every manifest
// target whose backup is a full one, plus (when the fixture's later
// targets are on a delta) the same WAL end points reached by replaying
// from the full backup: the state at a restore point or at the end of WAL
// does not depend on which base backup recovery started from.
func restoreCases(f fixture) map[string][]restoreCase {
	full := map[string]bool{}
	var firstFull string
	for _, b := range f.Backups {
		if b.Kind == "full" {
			full[b.Name] = true
			if firstFull == "" {
				firstFull = b.Name
			}
		}
	}
	out := map[string][]restoreCase{}
	for _, tg := range f.RestoreTargets {
		backupName := tg.Backup
		if !full[backupName] {
			// Restored from the delta itself (full backup, then the
			// delta's increments) ...
			c := restoreCase{target: tg, suffix: "/from-delta"}
			switch tg.Kind {
			case "immediate":
				c.flags = []string{"--target-immediate", "--target-action", "promote"}
			case "name":
				c.flags = []string{"--target-name", tg.RecoveryTargetName, "--target-action", "promote"}
			case "end":
				c.flags = []string{"--target-timeline", "latest"}
			}
			out[backupName] = append(out[backupName], c)
			if tg.Kind == "immediate" {
				continue // the state at a delta's end is not reachable from its base alone by a target we have
			}
			// ... and by replaying WAL from the full backup.
			backupName = firstFull
		}
		var c restoreCase
		c.target = tg
		switch tg.Kind {
		case "immediate":
			c.flags = []string{"--target-immediate", "--target-action", "promote"}
		case "name":
			c.flags = []string{"--target-name", tg.RecoveryTargetName, "--target-action", "promote"}
		case "end":
			if !full[tg.Backup] {
				// Through tusk's flags: no stop point, latest timeline.
				c.flags = []string{"--target-timeline", "latest"}
			}
			// Otherwise configured by hand, exactly as the README says.
		}
		out[backupName] = append(out[backupName], c)
	}
	return out
}

// TestFixtureBackupFetchRecover restores every full backup of every fixture
// with tusk backup-fetch, recovers it with PostgreSQL 15 and tusk
// wal-fetch, and compares every user table with the digests WAL-G's own
// restores produced.
func TestFixtureBackupFetchRecover(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	for _, f := range loadManifest(t, fixRoot).withBackups(t) {
		fixDir := filepath.Join(fixRoot, f.Name)
		cases := restoreCases(f)
		if len(cases) == 0 {
			t.Errorf("fixture %s: no target restorable from a full backup", f.Name)
		}
		for backupName, cs := range cases {
			for _, c := range cs {
				t.Run(f.Name+"/"+c.target.Label+c.suffix, func(t *testing.T) {
					storage := serverStorageCopy(t, fixDir)
					env := fixtureSettings(fixDir, f, storage)
					cl := fetchAndRecover(t, tusk, env, storage, backupName, c)
					for _, table := range f.UserTables {
						want, ok := c.target.Digests[table]
						if !ok {
							t.Fatalf("manifest has no digest of %s for %s", table, c.target.Label)
						}
						md5, rows := cl.TableDigest(table)
						if md5 != want.MD5 || rows != want.Rows {
							t.Errorf("%s after %s: %d rows md5 %s, WAL-G's restore had %d rows md5 %s",
								table, c.target.Label, rows, md5, want.Rows, want.MD5)
						}
					}
					cl.Stop()
				})
			}
		}
	}
}

// fetchAndRecover restores backupName into a new directory (tablespaces
// remapped next to it), configures recovery for c, starts PostgreSQL and
// waits for the end of recovery.
func fetchAndRecover(t *testing.T, tusk string, env []string, storage, backupName string, c restoreCase) *pgcluster.Cluster {
	t.Helper()
	sb, err := os.ReadFile(filepath.Join(storage, filepath.FromSlash(backup.SentinelKey(backupName))))
	if err != nil {
		t.Fatal(err)
	}
	s, err := backup.ParseSentinel(sb)
	if err != nil {
		t.Fatal(err)
	}
	base := pgcluster.TempDir(t)
	dest := filepath.Join(base, "pgdata")
	args := []string{"backup-fetch", dest, backupName}
	if s.Spec != nil {
		spec := map[string]any{"base_prefix": dest}
		var names []string
		for _, ts := range s.Spec.Tablespaces {
			spec[ts.Name] = map[string]string{"loc": filepath.Join(base, "tblspc-"+ts.Name), "link": ts.Link}
			names = append(names, ts.Name)
		}
		spec["tablespaces"] = names
		specFile := filepath.Join(base, "restore-spec.json")
		b, _ := json.Marshal(spec)
		if err := os.WriteFile(specFile, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--restore-spec", specFile)
	}
	args = append(args, c.flags...)
	start := time.Now()
	r := runTuskAs(t, true, tusk, env, args...)
	if r.code != 0 {
		t.Fatalf("tusk %v: exit %d\n%s", args, r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("backup-fetch printed to stdout: %q", r.stdout)
	}
	t.Logf("backup-fetch %s: %v", backupName, time.Since(start).Round(time.Millisecond))
	for _, ts := range tablespacesOf(s) {
		link, err := os.Readlink(filepath.Join(dest, "pg_tblspc", ts))
		if err != nil || link != filepath.Join(base, "tblspc-"+ts) {
			t.Errorf("pg_tblspc/%s -> %q (%v)", ts, link, err)
		}
	}
	dropGeneratorSettings(t, dest)

	opts := pgcluster.Options{Conf: []string{"archive_mode = off"}}
	if len(c.flags) > 0 {
		// tusk wrote restore_command, the target and recovery.signal; the
		// server gets no tusk settings in its environment: restore_command
		// must find them in the file backup-fetch wrote.
		checkRecoveryFiles(t, dest)
	} else {
		opts.Env = env
		opts.Conf = append(opts.Conf,
			fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", tusk),
			"recovery_target_action = 'promote'")
	}
	cl := pgcluster.Open(t, dest, opts)
	if len(c.flags) == 0 {
		cl.WriteDataFile("recovery.signal", nil)
	}
	start = time.Now()
	cl.Start()
	cl.WaitRecoveryDone(3 * time.Minute)
	t.Logf("recovery to %s (%s): %v", c.target.Label, c.target.Kind, time.Since(start).Round(time.Millisecond))
	return cl
}

func tablespacesOf(s *backup.Sentinel) []string {
	var out []string
	if s.Spec != nil {
		for _, ts := range s.Spec.Tablespaces {
			out = append(out, ts.Name)
		}
	}
	return out
}

// dropGeneratorSettings removes the fixture generator's block at the end
// of postgresql.conf (its port, socket dir and WAL-G archive_command).
func dropGeneratorSettings(t *testing.T, dest string) {
	t.Helper()
	p := filepath.Join(dest, "postgresql.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(b, []byte("# --- fixture settings")); i >= 0 {
		b = b[:i]
	}
	// WriteFile keeps the file's owner.
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkRecoveryFiles checks what backup-fetch's recovery flags wrote: the
// restore_command's config file outside the data directory, private, with
// the abort-on-storage-error switch; no secrets in the data directory.
func checkRecoveryFiles(t *testing.T, dest string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dest, "recovery.signal")); err != nil {
		t.Errorf("recovery.signal: %v", err)
	}
	auto, err := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := dest + ".tusk-restore.json"
	if !strings.Contains(string(auto), "restore_command = ") || !strings.Contains(string(auto), cfgFile) {
		t.Errorf("postgresql.auto.conf has no restore_command using %s:\n%s", cfgFile, auto)
	}
	for _, secret := range []string{"LIBSODIUM_KEY=", "PGP_KEY", "e9234fc6"} {
		if strings.Contains(string(auto), secret) {
			t.Errorf("postgresql.auto.conf contains %q", secret)
		}
	}
	fi, err := os.Stat(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", cfgFile, fi.Mode().Perm())
	}
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]string
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", cfgFile, err)
	}
	if cfg["TUSK_FETCH_ABORT_ON_STORAGE_ERROR"] != "true" || !filepath.IsAbs(cfg["WALG_FILE_PREFIX"]) {
		t.Errorf("%s: %v", cfgFile, cfg)
	}
}

// TestBackupFetchFailures checks that failed restores exit non-zero with a
// clear error: a delta whose full backup is missing, a non-empty or unwritable
// destination, a wrong key, and a full file system.
func TestBackupFetchFailures(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	m := loadManifest(t, fixRoot)
	var lz4, sodium fixture
	for _, f := range m.Fixtures {
		switch {
		case f.Env["WALG_LIBSODIUM_KEY"] != "":
			sodium = f
		case f.LatestBackup != "" && strings.Contains(f.LatestBackup, "_D_"):
			lz4 = f
		}
	}
	if lz4.Name == "" || sodium.Name == "" {
		t.Fatal("manifest lacks a fixture with a delta backup or a libsodium fixture")
	}
	lzDir := filepath.Join(fixRoot, lz4.Name)
	storage := serverStorageCopy(t, lzDir)
	env := fixtureSettings(lzDir, lz4, storage)
	full := lz4.Backups[0].Name

	expectFailure := func(t *testing.T, r tuskRun, want string) {
		t.Helper()
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, want a failure saying %q:\n%s", r.code, want, r.stderr)
		}
	}

	t.Run("broken delta chain", func(t *testing.T) {
		broken := serverStorageCopy(t, lzDir)
		if err := os.Remove(filepath.Join(broken, filepath.FromSlash(backup.SentinelKey(full)))); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(pgcluster.TempDir(t), "pgdata")
		r := runTuskAs(t, true, tusk, fixtureSettings(lzDir, lz4, broken), "backup-fetch", dest, "LATEST")
		expectFailure(t, r, fmt.Sprintf("broken delta chain: backup %s is a delta of %s, which is not in", lz4.LatestBackup, full))
		if _, err := os.Stat(dest); err == nil {
			t.Error("a refused restore created the destination")
		}
	})
	t.Run("non-empty", func(t *testing.T) {
		dest := pgcluster.TempDir(t)
		if err := os.WriteFile(filepath.Join(dest, "keep"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runTuskAs(t, true, tusk, env, "backup-fetch", dest, full)
		expectFailure(t, r, "is not empty")
		if b, _ := os.ReadFile(filepath.Join(dest, "keep")); string(b) != "x" {
			t.Error("existing file changed")
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		parent := filepath.Join(pgcluster.TempDir(t), "ro")
		if err := os.Mkdir(parent, 0o555); err != nil {
			t.Fatal(err)
		}
		r := runTuskAs(t, true, tusk, env, "backup-fetch", filepath.Join(parent, "pgdata"), full)
		expectFailure(t, r, "permission denied")
	})
	t.Run("unknown-backup", func(t *testing.T) {
		r := runTuskAs(t, true, tusk, env, "backup-fetch", filepath.Join(pgcluster.TempDir(t), "x"), "base_0000000100000000000000FF")
		expectFailure(t, r, "backup not found")
	})
	t.Run("wrong-key", func(t *testing.T) {
		sDir := filepath.Join(fixRoot, sodium.Name)
		senv := fixtureSettings(sDir, sodium, serverStorageCopy(t, sDir))
		for i, kv := range senv {
			if strings.HasPrefix(kv, "WALG_LIBSODIUM_KEY=") {
				senv[i] = "WALG_LIBSODIUM_KEY=" + strings.Repeat("0", 63) + "1"
			}
		}
		dest := filepath.Join(pgcluster.TempDir(t), "pgdata")
		r := runTuskAs(t, true, tusk, senv, "backup-fetch", dest, "LATEST")
		expectFailure(t, r, "libsodium")
		if _, err := os.Stat(filepath.Join(dest, "global", "pg_control")); err == nil {
			t.Error("a failed restore left global/pg_control: PostgreSQL could start on it")
		}
	})
	t.Run("full-filesystem", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("mounting a small tmpfs needs root")
		}
		mnt := pgcluster.TempDir(t)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0777", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs (%v: %s)", err, bytes.TrimSpace(out))
		}
		t.Cleanup(func() {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v %s", mnt, err, out)
			}
		})
		dest := filepath.Join(mnt, "pgdata")
		r := runTuskAs(t, true, tusk, env, "backup-fetch", dest, full)
		expectFailure(t, r, "no space left on device")
		expectFailure(t, r, "the restore is incomplete: empty "+dest)
		if _, err := os.Stat(filepath.Join(dest, "global", "pg_control")); err == nil {
			t.Error("a failed restore left global/pg_control")
		}
	})
}

// TestBackupFetchRecoveryWithConfigFile restores with the settings in a
// --config file only: restore_command must refer to that file (so later
// edits apply), force TUSK_FETCH_ABORT_ON_STORAGE_ERROR, and recover to the
// fixture's restore point with nothing in the server's environment.
func TestBackupFetchRecoveryWithConfigFile(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	var f fixture
	var target restoreTarget
	for _, fx := range loadManifest(t, fixRoot).Fixtures {
		for _, tg := range fx.RestoreTargets {
			if tg.Kind == "name" && len(fx.Backups) > 0 && fx.Env["WALG_PGP_KEY_PATH"] == "" {
				f, target = fx, tg
			}
		}
	}
	if f.Name == "" {
		t.Fatal("manifest has no unencrypted fixture with a named restore point")
	}
	fixDir := filepath.Join(fixRoot, f.Name)
	storage := serverStorageCopy(t, fixDir)
	settings := map[string]string{}
	for _, kv := range fixtureSettings(fixDir, f, storage) {
		k, v, _ := strings.Cut(kv, "=")
		settings[k] = v
	}
	base := pgcluster.TempDir(t)
	cfgFile := filepath.Join(base, "tusk.json")
	b, _ := json.Marshal(settings)
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(base, "pgdata")
	r := runTuskAs(t, true, tusk, nil, "--config", cfgFile, "backup-fetch", dest, f.Backups[0].Name,
		"--target-name", target.RecoveryTargetName, "--target-action", "promote")
	if r.code != 0 {
		t.Fatalf("backup-fetch: exit %d\n%s", r.code, r.stderr)
	}
	auto, err := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"TUSK_FETCH_ABORT_ON_STORAGE_ERROR=''true''",
		"--config ''" + cfgFile + "''",
		"recovery_target_name = '" + target.RecoveryTargetName + "'",
		"recovery_target_action = 'promote'",
	} {
		if !strings.Contains(string(auto), want) {
			t.Errorf("postgresql.auto.conf lacks %q:\n%s", want, auto)
		}
	}
	if _, err := os.Stat(dest + ".tusk-restore.json"); err == nil {
		t.Error("a configuration file was written although --config had everything")
	}
	dropGeneratorSettings(t, dest)
	cl := pgcluster.Open(t, dest, pgcluster.Options{Conf: []string{"archive_mode = off"}})
	cl.Start()
	cl.WaitRecoveryDone(3 * time.Minute)
	for _, table := range f.UserTables {
		md5, rows := cl.TableDigest(table)
		if want := target.Digests[table]; md5 != want.MD5 || rows != want.Rows {
			t.Errorf("%s at %s: %d rows md5 %s, want %d rows md5 %s", table, target.Label, rows, md5, want.Rows, want.MD5)
		}
	}
	cl.Stop()
}

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// TestBackupVerifyFaults damages one object at a time in a copy of the
// lz4-delta fixture (a full backup and a delta on it) and checks that
// backup-verify names it, exits 2, and reports a clean copy as OK.
func TestBackupVerifyFaults(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	var f fixture
	for _, x := range loadManifest(t, fixRoot).Fixtures {
		if x.Name == "lz4-delta" {
			f = x
		}
	}
	fixDir := filepath.Join(fixRoot, f.Name)
	const (
		full  = "base_000000010000000000000002"
		delta = "base_000000010000000000000004_D_000000010000000000000002"
	)
	truncate := func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(p, b[:len(b)/2], 0o644)
	}
	corrupt := func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i := len(b) / 2; i < len(b)/2+64 && i < len(b); i++ {
			b[i] ^= 0x5A
		}
		return os.WriteFile(p, b, 0o644)
	}
	for _, c := range []struct {
		name   string
		object string // relative to the storage root
		damage func(string) error
	}{
		{"truncated tar part", "basebackups_005/" + full + "/tar_partitions/part_001.tar.lz4", truncate},
		{"corrupt tar part", "basebackups_005/" + full + "/tar_partitions/part_001.tar.lz4", corrupt},
		{"removed tar part", "basebackups_005/" + delta + "/tar_partitions/part_001.tar.lz4", os.Remove},
		{"removed pg_control tar", "basebackups_005/" + delta + "/tar_partitions/pg_control.tar.lz4", os.Remove},
		{"removed base sentinel", "basebackups_005/" + full + "_backup_stop_sentinel.json", os.Remove},
		{"removed files_metadata", "basebackups_005/" + delta + "/files_metadata.json", os.Remove},
		{"corrupt files_metadata", "basebackups_005/" + delta + "/files_metadata.json", truncate},
		{"removed WAL segment", "wal_005/000000010000000000000004.lz4", os.Remove},
		{"truncated WAL segment", "wal_005/000000010000000000000004.lz4", truncate},
		{"corrupt WAL segment", "wal_005/000000010000000000000004.lz4", corrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			storage := copyStorage(t, filepath.Join(fixDir, "storage"))
			env := fixtureEnv(fixDir, f, storage, "")
			if err := c.damage(filepath.Join(storage, filepath.FromSlash(c.object))); err != nil {
				t.Fatal(err)
			}
			r := runTuskAs(t, false, tusk, env, "backup-verify", "LATEST")
			// The fault line names the object, without the extension for
			// WAL (probed by name).
			want := strings.TrimSuffix(c.object, ".lz4")
			if r.code != 2 || !strings.Contains(r.stdout, "FAULT "+want) || !strings.Contains(r.stdout, ": FAILURE (") {
				t.Errorf("exit %d, want 2 and a fault naming %s\nstdout:\n%s\nstderr:\n%s", r.code, want, r.stdout, r.stderr)
			}
			r = runTuskAs(t, false, tusk, env, "backup-verify", "--json", "LATEST")
			var rep struct {
				Status string `json:"status"`
				Faults []struct {
					Object  string `json:"object"`
					Problem string `json:"problem"`
				} `json:"faults"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 2 || rep.Status != "FAILURE" || len(rep.Faults) == 0 {
				t.Errorf("--json: exit %d, %v\n%s", r.code, err, r.stdout)
			}
			for _, fl := range rep.Faults {
				if strings.Contains(fl.Problem, "\n") {
					t.Errorf("fault spans lines: %q", fl.Problem)
				}
			}
		})
	}
	t.Run("clean", func(t *testing.T) {
		storage := copyStorage(t, filepath.Join(fixDir, "storage"))
		env := fixtureEnv(fixDir, f, storage, "")
		for _, name := range []string{"LATEST", full} {
			r := runTuskAs(t, false, tusk, env, "backup-verify", "--json", name)
			if r.code != 0 || !strings.Contains(r.stdout, `"status":"OK"`) || !strings.Contains(r.stdout, `"faults":[]`) {
				t.Errorf("%s: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
			}
		}
		r := runTuskAs(t, false, tusk, env, "backup-verify", "LATEST")
		if r.code != 0 || !strings.Contains(r.stdout, "chain "+full+" <- "+delta+"; 6 tars") {
			t.Errorf("LATEST: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// Another backup name: a fault (no such complete backup), exit 2.
		r = runTuskAs(t, false, tusk, env, "backup-verify", "base_000000010000000000000009")
		if r.code != 2 || !strings.Contains(r.stdout, "FAULT basebackups_005/base_000000010000000000000009_backup_stop_sentinel.json") {
			t.Errorf("unknown backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("encrypted", func(t *testing.T) {
		for _, x := range loadManifest(t, fixRoot).Fixtures {
			if x.Name != "zstd-libsodium" {
				continue
			}
			dir := filepath.Join(fixRoot, x.Name)
			storage := copyStorage(t, filepath.Join(dir, "storage"))
			env := fixtureEnv(dir, x, storage, "")
			if r := runTuskAs(t, false, tusk, env, "backup-verify", "LATEST"); r.code != 0 {
				t.Errorf("libsodium: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			// Wrong key: every object fails to decrypt; named, exit 2.
			for i, e := range env {
				if strings.HasPrefix(e, "WALG_LIBSODIUM_KEY=") {
					env[i] = "WALG_LIBSODIUM_KEY=" + strings.Repeat("ab", 32)
				}
			}
			r := runTuskAs(t, false, tusk, env, "backup-verify", "LATEST")
			if r.code != 2 || !strings.Contains(r.stdout, "FAULT basebackups_005/base_000000010000000000000002/tar_partitions/part_001.tar.zst") {
				t.Errorf("wrong key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		}
	})
}

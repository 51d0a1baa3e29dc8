package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// manifest is the part of the fixtures' manifest.json the e2e tests read.
type manifest struct {
	Fixtures []fixture `json:"fixtures"`
}

type fixture struct {
	Name string            `json:"name"`
	Env  map[string]string `json:"env"`
	// Storage is a path, or (wal-only-codecs) a map method → path.
	Storage     json.RawMessage `json:"storage"`
	WALSegments []archivedFile  `json:"wal_segments"`
	// WALSegmentSizeMB is initdb's --wal-segsize; wal-fetch refuses a
	// segment of another size than WALG_PG_WAL_SIZE.
	WALSegmentSizeMB   int            `json:"wal_segment_size_mb"`
	OtherArchivedFiles []archivedFile `json:"other_archived_files"`
	// What the backup tests read.
	UserTables []string `json:"user_tables"`
	Backups    []struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"backups"`
	LatestBackup   string          `json:"latest_backup"`
	RestoreTargets []restoreTarget `json:"restore_targets"`
}

type archivedFile struct {
	Name      string `json:"name"`
	RawSHA256 string `json:"raw_sha256"`
}

func loadManifest(t *testing.T, dir string) manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parsing %s/manifest.json: %v", dir, err)
	}
	if len(m.Fixtures) == 0 {
		t.Fatalf("%s/manifest.json lists no fixtures", dir)
	}
	return m
}

// storages returns label → storage dir (relative to the fixture) and the
// compression method to announce for it ("" keeps the fixture's env).
func (f fixture) storages(t *testing.T) map[string][2]string {
	t.Helper()
	var one string
	if err := json.Unmarshal(f.Storage, &one); err == nil {
		return map[string][2]string{"": {one, ""}}
	}
	var many map[string]string
	if err := json.Unmarshal(f.Storage, &many); err != nil {
		t.Fatalf("fixture %s: storage is neither a path nor a map: %s", f.Name, f.Storage)
	}
	out := map[string][2]string{}
	for method, p := range many {
		out[method] = [2]string{p, method}
	}
	return out
}

// copyStorage copies a fixture storage tree with cp -a (mtimes kept, as
// listings depend on them) and makes the copy writable so it can be removed.
func copyStorage(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "storage")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", dst).CombinedOutput(); err != nil {
		t.Fatalf("chmod -R u+w %s: %v\n%s", dst, err, out)
	}
	return dst
}

// fixtureEnv is the fixture's WAL-G settings with paths made absolute:
// storage → the copy, key files → inside the (read-only) fixture dir.
func fixtureEnv(fixDir string, f fixture, storageCopy, method string) []string {
	var env []string
	for k, v := range f.Env {
		switch k {
		case "WALG_FILE_PREFIX":
			v = storageCopy
		case "WALG_PGP_KEY_PATH", "WALG_LIBSODIUM_KEY_PATH":
			v = filepath.Join(fixDir, v)
		case "WALG_COMPRESSION_METHOD":
			if method != "" {
				v = method
			}
		}
		env = append(env, k+"="+v)
	}
	// One process per fetch: no detached prefetcher outliving the test's
	// temp dirs (prefetch is exercised by the archive-restore tests).
	env = append(env, "WALG_DOWNLOAD_CONCURRENCY=1")
	if _, ok := f.Env["WALG_PG_WAL_SIZE"]; !ok && f.WALSegmentSizeMB > 0 {
		env = append(env, fmt.Sprintf("WALG_PG_WAL_SIZE=%d", f.WALSegmentSizeMB))
	}
	slices.Sort(env)
	return env
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func assertAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("a failed wal-fetch left %s behind (stat: %v)", path, err)
	}
}

// TestFixtureWALFetch fetches every WAL file WAL-G archived in the fixtures
// and compares it with the raw file PostgreSQL handed to WAL-G.
func TestFixtureWALFetch(t *testing.T) {
	fixDir := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	m := loadManifest(t, fixDir)
	for _, f := range m.Fixtures {
		for label, st := range f.storages(t) {
			name := f.Name
			if label != "" {
				name += "/" + label
			}
			t.Run(name, func(t *testing.T) {
				storage := copyStorage(t, filepath.Join(fixDir, f.Name, st[0]))
				env := fixtureEnv(filepath.Join(fixDir, f.Name), f, storage, st[1])
				files := append(slices.Clone(f.WALSegments), f.OtherArchivedFiles...)
				if len(f.WALSegments) == 0 {
					t.Fatalf("fixture %s lists no WAL segments", f.Name)
				}
				dir := t.TempDir()
				for _, af := range files {
					dest := filepath.Join(dir, af.Name)
					r := runTusk(t, tusk, env, "wal-fetch", af.Name, dest)
					if r.code != 0 {
						t.Errorf("wal-fetch %s: exit %d\n%s", af.Name, r.code, r.output)
						continue
					}
					if got := sha256File(t, dest); got != af.RawSHA256 {
						t.Errorf("wal-fetch %s: sha256 %s, want %s", af.Name, got, af.RawSHA256)
					}
				}

				// A name that is not in storage: exit 74, which tells
				// PostgreSQL "no such file" rather than "failure".
				missing := "0000000900000000000000AA"
				dest := filepath.Join(dir, missing)
				r := runTusk(t, tusk, env, "wal-fetch", missing, dest)
				if r.code != 74 {
					t.Errorf("wal-fetch of a missing segment: exit %d, want 74\n%s", r.code, r.output)
				}
				assertAbsent(t, dest)
			})
		}
	}
}

// TestFixtureWALFetchWrongKey checks that an encrypted archive fetched with
// the wrong key fails as an error (not as "missing") and leaves no file.
func TestFixtureWALFetchWrongKey(t *testing.T) {
	fixDir := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	m := loadManifest(t, fixDir)
	i := slices.IndexFunc(m.Fixtures, func(f fixture) bool { return f.Env["WALG_LIBSODIUM_KEY"] != "" })
	if i < 0 {
		t.Skip("no libsodium fixture in the manifest")
	}
	f := m.Fixtures[i]
	storage := copyStorage(t, filepath.Join(fixDir, f.Name, "storage"))
	env := fixtureEnv(filepath.Join(fixDir, f.Name), f, storage, "")
	key := f.Env["WALG_LIBSODIUM_KEY"]
	// Same length and transform, different key.
	wrong := strings.Repeat("0", len(key)-1) + "1"
	for j, kv := range env {
		if strings.HasPrefix(kv, "WALG_LIBSODIUM_KEY=") {
			env[j] = "WALG_LIBSODIUM_KEY=" + wrong
		}
	}
	seg := f.WALSegments[0].Name
	dest := filepath.Join(t.TempDir(), seg)
	r := runTusk(t, tusk, env, "wal-fetch", seg, dest)
	if r.code == 0 || r.code == 74 {
		t.Errorf("wal-fetch with a wrong key: exit %d, want a failure other than 74\n%s", r.code, r.output)
	}
	assertAbsent(t, dest)
}

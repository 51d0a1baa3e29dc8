package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/testenv"
)

// TestBackupVerifyFaults damages one object at a time in a copy of the
// lz4-delta fixture (a full backup and a delta on it) and checks that
// backup-verify names it, exits 2, and reports a clean copy as OK.
func TestBackupVerifyFaults(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	f := fixtureNamed(t, fixRoot, "lz4-delta")
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
		{"corrupt base sentinel", "basebackups_005/" + full + "_backup_stop_sentinel.json", corrupt},
		{"truncated sentinel", "basebackups_005/" + delta + "_backup_stop_sentinel.json", truncate},
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

// fixtureNamed is the manifest entry of the fixture called name.
func fixtureNamed(t *testing.T, fixRoot, name string) fixture {
	t.Helper()
	for _, x := range loadManifest(t, fixRoot).Fixtures {
		if x.Name == name {
			return x
		}
	}
	t.Fatalf("no fixture %s in %s", name, fixRoot)
	return fixture{}
}

// rewriteTar decodes the lz4 tar object at p, passes each member's bytes
// through edit, and stores the result re-encoded, so the object still
// decodes and only the contents changed.
func rewriteTar(t *testing.T, p string, edit func(name string, body []byte) []byte) {
	t.Helper()
	lz4, err := codec.ByName(codec.LZ4)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dec, err := lz4.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	enc, err := lz4.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	tr, tw := tar.NewReader(dec), tar.NewWriter(enc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		body = edit(h.Name, body)
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBackupVerifyPageChecksums changes one byte of one data page inside
// the stored tars of the lz4-delta fixture (a cluster initdb'd with
// --data-checksums, backed up by WAL-G): in the full backup's file, and in
// a page of one of the delta's increments. backup-verify names the object,
// file and block of each; with pg_control saying the cluster has no data
// checksums, the same damaged page is not judged.
func TestBackupVerifyPageChecksums(t *testing.T) {
	fixRoot := testenv.Fixtures(t)
	tusk := testenv.BuildTusk(t)
	f := fixtureNamed(t, fixRoot, "lz4-delta")
	fixDir := filepath.Join(fixRoot, f.Name)
	const (
		full      = "base_000000010000000000000002"
		delta     = "base_000000010000000000000004_D_000000010000000000000002"
		fullStart = 2 << 24 // the backups start in their names' segments
		deltaFrom = 4 << 24
		bs        = 8192
	)
	tarPath := func(storage, backup, tarName string) string {
		return filepath.Join(storage, "basebackups_005", backup, "tar_partitions", tarName)
	}
	// damagePage flips a byte in the first judged page (initialised,
	// older than start) of the first data file in the object stored whole
	// or as an increment, and returns the fault line backup-verify must
	// print.
	damagePage := func(storage, backupName string, start uint64, increment bool) string {
		key := "basebackups_005/" + backupName + "/tar_partitions/part_001.tar.lz4"
		var line string
		rewriteTar(t, filepath.Join(storage, filepath.FromSlash(key)), func(name string, body []byte) []byte {
			rel := strings.TrimPrefix(name, "/")
			if _, ok := pgdata.PagedFile(rel); !ok || line != "" || backup.IsIncrement(body) != increment {
				return body
			}
			pagesAt, blockOf := 0, func(i int) int { return i }
			if backup.IsIncrement(body) {
				n := int(binary.LittleEndian.Uint32(body[12:]))
				pagesAt = backup.IncrementHeaderSize + 4*n
				blockOf = func(i int) int { return int(binary.LittleEndian.Uint32(body[16+4*i:])) }
			}
			for i := 0; pagesAt+(i+1)*bs <= len(body); i++ {
				p := body[pagesAt+i*bs : pagesAt+(i+1)*bs]
				if pgdata.PageIsNew(p) || pgdata.PageLSN(p) >= start {
					continue
				}
				p[bs/2] ^= 0x40
				line = fmt.Sprintf("FAULT %s: %s block %d: page checksum does not match\n", key, rel, blockOf(i))
				break
			}
			return body
		})
		if line == "" {
			t.Fatalf("no judged page in %s", key)
		}
		t.Logf("damaged: %s", line)
		return line
	}
	run := func(env []string, name string) tuskRun {
		return runTuskAs(t, false, tusk, env, "backup-verify", name)
	}

	t.Run("full", func(t *testing.T) {
		t.Parallel()
		storage := copyStorage(t, filepath.Join(fixDir, "storage"))
		env := fixtureEnv(fixDir, f, storage, "")
		want := damagePage(storage, full, fullStart, false)
		for _, name := range []string{full, "LATEST"} { // LATEST: the delta's chain holds the full
			r := run(env, name)
			if r.code != 2 || !strings.Contains(r.stdout, want) || strings.Count(r.stdout, "FAULT ") != 1 {
				t.Errorf("%s: exit %d, want 2 and only\n%s\ngot\n%s%s", name, r.code, want, r.stdout, r.stderr)
			}
		}
		// The same damage, with pg_control saying data checksums are off:
		// no page is judged.
		rewriteTar(t, tarPath(storage, full, "pg_control.tar.lz4"), func(name string, body []byte) []byte {
			if strings.TrimPrefix(name, "/") != "global/pg_control" {
				return body
			}
			binary.LittleEndian.PutUint32(body[252:], 0)
			binary.LittleEndian.PutUint32(body[288:], crc32.Checksum(body[:288], crc32.MakeTable(crc32.Castagnoli)))
			return body
		})
		r := runTuskAs(t, false, tusk, env, "backup-verify", "--json", full)
		if r.code != 0 || !strings.Contains(r.stdout, `"pages_checked":0,`) {
			t.Errorf("checksums off: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("delta increment", func(t *testing.T) {
		t.Parallel()
		storage := copyStorage(t, filepath.Join(fixDir, "storage"))
		env := fixtureEnv(fixDir, f, storage, "")
		want := damagePage(storage, delta, deltaFrom, true)
		r := run(env, "LATEST")
		if r.code != 2 || !strings.Contains(r.stdout, want) || strings.Count(r.stdout, "FAULT ") != 1 {
			t.Errorf("exit %d, want 2 and only\n%s\ngot\n%s%s", r.code, want, r.stdout, r.stderr)
		}
		if r := run(env, full); r.code != 0 {
			t.Errorf("the full backup is intact: exit %d\n%s", r.code, r.stdout)
		}
	})
}

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
	"github.com/tusk-pg/tusk/internal/testenv/sshserver"
)

// configFile writes settings (NAME=value) as a WAL-G JSON config file the
// server user can read, and returns its path.
func configFile(t *testing.T, dir, name string, settings []string) string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range settings {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCopyS3ToFileAndSFTP archives a PostgreSQL 15 cluster to S3
// (versitygw) with a full and a delta backup, copies the delta with
// `tusk copy -b LATEST -w` to file storage and restores the copy there to
// a restore point with matching tables; a second run copies nothing;
// `tusk copy` from the file copy to SFTP stores the same bytes; and a copy
// stopped by SIGTERM ends promptly and leaves no backup backup-list shows.
func TestCopyS3ToFileAndSFTP(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	began := time.Now()
	srv := s3server.Start(t, s3server.Options{Prefix: "clusters/copy"})
	env := append(srv.Env(), "WALG_COMPRESSION_METHOD=lz4")
	primary := archivingPrimary(t, tusk, "", env)
	if out, err := primary.Command("pgbench", "-i", "-q", "-s", "2").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	pushEnv = append(pushEnv, "WALG_STOP_BACKUP_TIMEOUT=2m", "WALG_DELTA_MAX_STEPS=3")
	for i := 0; i < 2; i++ { // a full backup, then a delta on it
		if res := runAsServer(t, tusk, pushEnv, "backup-push", primary.DataDir()); res.code != 0 {
			t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
		}
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
	primary.Stop()
	t.Logf("archive with two backups ready in %v", time.Since(began).Round(time.Millisecond))

	dir := pgcluster.TempDir(t)
	fileRoot := filepath.Join(dir, "file-copy")
	from := configFile(t, dir, "from.json", srv.Env())
	toFile := configFile(t, dir, "to-file.json", []string{"WALG_FILE_PREFIX=" + fileRoot})

	start := time.Now()
	res := runAsServer(t, tusk, nil, "copy", "--from", from, "--to", toFile, "-b", "LATEST", "-w")
	if res.code != 0 {
		t.Fatalf("copy exit %d:\n%s", res.code, res.output)
	}
	t.Logf("copy took %v: %s", time.Since(start).Round(time.Millisecond), lastLine(res.output))
	copied := regexp.MustCompile(`msg="Success copy." copied=(\d+) bytes=(\d+) skipped=0`).FindStringSubmatch(res.output)
	if copied == nil {
		t.Fatalf("copy output lacks its summary:\n%s", res.output)
	}

	// Every object of the source but the WAL before the full backup is on
	// the target, byte for byte.
	src := map[string][]byte{}
	for _, k := range s3Keys(t, srv, "clusters/copy/") {
		src[k] = s3Get(t, srv, "clusters/copy/"+k)
	}
	dst := readTree(t, fileRoot)
	var sentinels []string
	for k, b := range dst {
		if !bytes.Equal(b, src[k]) {
			t.Errorf("%s: %d bytes on the target, %d in S3", k, len(b), len(src[k]))
		}
		if _, ok := backup.NameFromSentinelKey(k); ok {
			sentinels = append(sentinels, k)
		}
	}
	if len(sentinels) != 2 {
		t.Errorf("sentinels on the target: %v", sentinels)
	}
	for k := range src {
		if _, ok := dst[k]; !ok && (strings.HasPrefix(k, backup.Prefix) || k >= "wal_005/"+newestBackupStart(t, dst)) {
			t.Errorf("%s: not copied", k)
		}
	}

	// Again: nothing new.
	res = runAsServer(t, tusk, nil, "copy", "-f", from, "-t", toFile, "-b", "LATEST", "-w")
	if res.code != 0 || !strings.Contains(res.output, `msg="Success copy." copied=0 bytes=0 skipped=`+copied[1]) {
		t.Errorf("second copy, exit %d, should copy nothing and skip %s:\n%s", res.code, copied[1], res.output)
	}

	// The copy restores, from file storage alone.
	fileEnv := []string{"WALG_FILE_PREFIX=" + fileRoot}
	list := runAsServer(t, tusk, fileEnv, "backup-list")
	names := regexp.MustCompile(`base_[0-9A-F]{24}_D_[0-9A-F]{24}`).FindAllString(list.output, -1)
	if list.code != 0 || len(names) != 1 {
		t.Fatalf("backup-list on the copy, exit %d:\n%s", list.code, list.output)
	}
	sentinel, err := backup.ParseSentinel(dst[backup.SentinelKey(names[0])])
	if err != nil {
		t.Fatal(err)
	}
	named := restoreFromBackup(t, tusk, fileEnv, names[0], sentinel, "recovery_target_name = 'after_load'")
	for tbl, w := range want {
		if got := anyDigest(t, named, tbl); got != w {
			t.Errorf("table %s: restored from the copy %v, primary had %v", tbl, got, w)
		}
	}
	checkPgbenchInvariant(t, named, "restored from the copy")
	named.Stop()
	t.Logf("restored at %v", time.Since(began).Round(time.Millisecond))

	// From the file copy on to SFTP. Every backup is refused: the copy
	// holds only the delta's WAL, not its full backup's, and nothing is
	// written. The delta with --with-history arrives byte for byte.
	if err := sshserver.Usable(); err == nil {
		ssh := sshserver.Start(t)
		sshRoot := filepath.Join(ssh.Dir, "copy")
		toSSH := configFile(t, dir, "to-ssh.json", ssh.Env(sshRoot))
		res = runAsServer(t, tusk, nil, "copy", "--from", toFile, "--to", toSSH)
		if line := lastLine(res.output); res.code == 0 || !strings.Contains(line, "first required WAL segment") || countFiles(sshRoot) != 0 {
			t.Errorf("copy of every backup without their WAL: exit %d, %d files written, last line %q", res.code, countFiles(sshRoot), line)
		}
		res = runAsServer(t, tusk, nil, "copy", "--from", toFile, "--to", toSSH, "-b", names[0], "--with-history")
		if res.code != 0 {
			t.Fatalf("copy to SFTP exit %d:\n%s", res.code, res.output)
		}
		got := readTree(t, sshRoot)
		for k, b := range dst {
			if !bytes.Equal(got[k], b) {
				t.Errorf("SFTP copy of %s: %d bytes, want %d", k, len(got[k]), len(b))
			}
		}
		if len(got) != len(dst) {
			t.Errorf("SFTP holds %d objects, the file copy %d", len(got), len(dst))
		}
	} else {
		t.Logf("SFTP part skipped: %v", err)
	}

	t.Logf("SFTP done at %v", time.Since(began).Round(time.Millisecond))

	// SIGTERM midway: out promptly, and no backup on the target.
	slowFrom := configFile(t, dir, "slow.json", append(srv.Env(), "WALG_NETWORK_RATE_LIMIT=4194304"))
	stopRoot := filepath.Join(dir, "stopped")
	toStop := configFile(t, dir, "to-stopped.json", []string{"WALG_FILE_PREFIX=" + stopRoot})
	p := startBackground(t, tusk, nil, filepath.Join(dir, "stopped.log"), "copy", "--from", slowFrom, "--to", toStop)
	deadline := time.Now().Add(30 * time.Second)
	for countFiles(stopRoot) < 3 && time.Now().Before(deadline) && p.running() {
		time.Sleep(50 * time.Millisecond)
	}
	if !p.running() {
		b, _ := os.ReadFile(p.log)
		t.Fatalf("the rate-limited copy ended before SIGTERM:\n%s", b)
	}
	t.Logf("%d objects copied %v before SIGTERM", countFiles(stopRoot), time.Until(deadline.Add(-30*time.Second)).Abs().Round(time.Millisecond))
	p.cmd.Process.Signal(syscall.SIGTERM)
	termAt := time.Now()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("copy still running 10 s after SIGTERM")
	}
	t.Logf("copy ended %v after SIGTERM: %v", time.Since(termAt).Round(time.Millisecond), p.err)
	if p.err == nil {
		t.Errorf("copy stopped by SIGTERM exited 0")
	}
	left := readTree(t, stopRoot)
	for k := range left {
		if _, ok := backup.NameFromSentinelKey(k); ok || strings.Contains(k, ".tmp") {
			t.Errorf("a stopped copy left %s", k)
		}
	}
	list = runAsServer(t, tusk, []string{"WALG_FILE_PREFIX=" + stopRoot}, "backup-list")
	if strings.Contains(list.output, "base_") {
		t.Errorf("backup-list after a stopped copy:\n%s", list.output)
	}
	t.Logf("a stopped copy left %d objects, no sentinel", len(left))

}

// newestBackupStart is the start segment of the newest backup among objs:
// the WAL a copy of it with --with-history brings begins there at the
// latest.
func newestBackupStart(t *testing.T, objs map[string][]byte) string {
	t.Helper()
	newest := ""
	for k := range objs {
		if name, ok := backup.NameFromSentinelKey(k); ok {
			n, err := backup.ParseName(name)
			if err != nil {
				t.Fatal(err)
			}
			newest = max(newest, n.Start)
		}
	}
	return newest
}

// countFiles counts the files below root, which may not exist yet and
// changes while it is read.
func countFiles(root string) int {
	n := 0
	filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestStCopy copies objects between file storages with tusk st copy: as
// stored, everything under a prefix, overwriting; and re-encrypted from
// one libsodium key to another (--decrypt-source, --encrypt-source), which
// the target's key then reads back. A wrong source key writes nothing.
func TestStCopy(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	dir := t.TempDir()
	srcRoot, dstRoot := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	keyA := []string{"WALG_LIBSODIUM_KEY=" + strings.Repeat("a", 32)}
	keyB := []string{"WALG_LIBSODIUM_KEY=" + strings.Repeat("b", 32)}
	srcEnv := append([]string{"WALG_FILE_PREFIX=" + srcRoot}, keyA...)
	dstEnv := append([]string{"WALG_FILE_PREFIX=" + dstRoot}, keyB...)
	from := configFile(t, dir, "from.json", srcEnv)
	to := configFile(t, dir, "to.json", dstEnv)
	plain := bytes.Repeat([]byte("tusk st copy\n"), 50000)
	local := filepath.Join(dir, "local")
	if err := os.WriteFile(local, plain, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"keep/one", "keep/two", "other/three"} {
		if res := runTusk(t, tusk, srcEnv, "st", "put", local, key); res.code != 0 {
			t.Fatalf("st put: %s", res.output)
		}
	}
	if err := os.MkdirAll(filepath.Join(dstRoot, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dstRoot, "keep", "one.lz4"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}

	// As stored: same bytes, the stale object replaced, other/ left out.
	if res := runTusk(t, tusk, nil, "st", "copy", "--from", from, "--to", to, "-p", "keep/"); res.code != 0 {
		t.Fatalf("st copy exit %d:\n%s", res.code, res.output)
	}
	src, dst := readTree(t, srcRoot), readTree(t, dstRoot)
	if len(dst) != 2 || !bytes.Equal(dst["keep/one.lz4"], src["keep/one.lz4"]) || !bytes.Equal(dst["keep/two.lz4"], src["keep/two.lz4"]) {
		t.Errorf("st copy -p keep/: target holds %d objects, want keep/one.lz4 and keep/two.lz4 as in the source", len(dst))
	}

	// Re-encrypted for the target's key.
	if res := runTusk(t, tusk, nil, "st", "copy", "--from", from, "--to", to, "-d", "-e"); res.code != 0 {
		t.Fatalf("st copy -d -e exit %d:\n%s", res.code, res.output)
	}
	got := filepath.Join(dir, "got")
	if res := runTusk(t, tusk, dstEnv, "st", "get", "other/three.lz4", got); res.code != 0 {
		t.Fatalf("st get with the target's key, exit %d:\n%s", res.code, res.output)
	}
	if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, plain) {
		t.Errorf("re-encrypted object reads back as %d bytes (%v), want %d", len(b), err, len(plain))
	}
	if bytes.Equal(readTree(t, dstRoot)["other/three.lz4"], src["other/three.lz4"]) {
		t.Errorf("re-encrypted object has the source's bytes")
	}

	// The wrong key for the source: refused, nothing written.
	wrong := configFile(t, dir, "wrong.json", []string{"WALG_FILE_PREFIX=" + srcRoot, "WALG_LIBSODIUM_KEY=" + strings.Repeat("c", 32)})
	empty := configFile(t, dir, "empty.json", []string{"WALG_FILE_PREFIX=" + filepath.Join(dir, "empty")})
	res := runTusk(t, tusk, nil, "st", "copy", "--from", wrong, "--to", empty, "-d")
	if res.code == 0 || countFiles(filepath.Join(dir, "empty")) != 0 {
		t.Errorf("st copy -d with the wrong key: exit %d, %d files written:\n%s", res.code, countFiles(filepath.Join(dir, "empty")), res.output)
	}
	t.Logf("wrong key: %s", lastLine(res.output))
}

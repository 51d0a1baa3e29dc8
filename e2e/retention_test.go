package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
	"github.com/tusk-pg/tusk/internal/wal"
)

func retentionFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(testenv.Fixtures(t)), "walg-retention")
	if _, err := os.Stat(filepath.Join(dir, "expected", "delete-cases.tsv")); err != nil {
		t.Skipf("retention fixture not found at %s", dir)
	}
	return dir
}

// s3PutAll uploads objects (key → body) under prefix with a few workers.
func s3PutAll(t *testing.T, srv *s3server.Server, prefix string, objects map[string][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cl := srv.Client()
	keys := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(prefix + k),
					Body: bytes.NewReader(objects[k])}); err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
					return
				}
			}
		}()
	}
	for k := range objects {
		keys <- k
	}
	close(keys)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sortedS3Keys(t *testing.T, srv *s3server.Server, prefix string) []string {
	k := s3Keys(t, srv, prefix)
	slices.Sort(k)
	return k
}

// WAL-G's retention fixture on S3: dry runs change nothing; --confirm leaves
// exactly WAL-G's objects; refusals delete nothing; backup-mark writes
// WAL-G's bytes.
func TestDeleteS3MatchesWALG(t *testing.T) {
	fixture := retentionFixture(t)
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{TLS: true})
	objects := readTree(t, filepath.Join(fixture, "storage"))
	before := strings.Fields(string(mustRead(t, filepath.Join(fixture, "expected", "objects-before.txt"))))
	cases := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(string(mustRead(t, filepath.Join(fixture, "expected", "delete-cases.tsv")))), "\n") {
		if i > 0 {
			f := strings.Split(line, "\t")
			cases[f[0]] = f[1]
		}
	}
	for _, name := range []string{"retain-2", "retain-find-full-3", "before-delta", "before-find-full-delta", "target-find-full", "target-permanent", "everything", "everything-force", "garbage"} {
		t.Run(name, func(t *testing.T) {
			prefix := "ret/" + name + "/"
			env := append(srv.Env(), "WALG_S3_PREFIX="+srv.URL(prefix))
			s3PutAll(t, srv, prefix, objects)
			args := append([]string{"delete"}, strings.Fields(cases[name])...)
			dry := runTusk(t, tusk, env, args...)
			if got := sortedS3Keys(t, srv, prefix); !slices.Equal(got, before) {
				t.Fatalf("dry run (exit %d) changed storage:\n%s", dry.code, dry.output)
			}
			res := runTusk(t, tusk, env, append(args, "--confirm")...)
			want := strings.Fields(string(mustRead(t, filepath.Join(fixture, "expected", "delete-"+name+".objects-after.txt"))))
			if got := sortedS3Keys(t, srv, prefix); !slices.Equal(got, want) {
				t.Fatalf("after %v --confirm (exit %d):\n got %v\nwant %v\n%s", args, res.code, got, want, res.output)
			}
			if refused := slices.Equal(want, before); refused != (res.code != 0) || refused != (dry.code != 0) {
				t.Fatalf("exit statuses %d (dry run) and %d: refused=%v\n%s", dry.code, res.code, refused, res.output)
			}
		})
	}
	t.Run("backup-mark", func(t *testing.T) {
		prefix := "ret/backup-mark/"
		s3PutAll(t, srv, prefix, objects)
		name := "base_000000010000000000000003"
		if res := runTusk(t, tusk, append(srv.Env(), "WALG_S3_PREFIX="+srv.URL(prefix)), "backup-mark", name); res.code != 0 {
			t.Fatalf("backup-mark: %s", res.output)
		}
		want := mustRead(t, filepath.Join(fixture, "expected", "backup-mark-"+name, "changed", "basebackups_005", name, "metadata.json"))
		if got := s3Get(t, srv, prefix+backup.MetadataKey(name)); !bytes.Equal(got, want) {
			t.Fatalf("metadata.json\n got %s\nwant %s", got, want)
		}
		if got := s3Get(t, srv, prefix+backup.SentinelKey(name)); !bytes.Equal(got, objects[backup.SentinelKey(name)]) {
			t.Fatal("backup-mark changed the sentinel")
		}
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// killedRepo is a synthetic repository on S3 with thousands of WAL objects:
// full backups at segments 0xB00, 0xC00, 0xD00 and a delta at 0xC80 on
// 0xC00; WAL from segment 1 to 0xD10.
func killedRepo(t *testing.T) (objects map[string][]byte, backups []string) {
	const seg = 16 << 20
	objects = map[string][]byte{}
	add := func(name, from string, start uint64) {
		s := &backup.Sentinel{LSN: pg.LSN(start*seg + 40), FinishLSN: pg.LSN((start+2)*seg + 400), PgVersion: 150000, Version: 2,
			StartTime: time.Unix(int64(start), 0).UTC(), FinishTime: time.Unix(int64(start)+1, 0).UTC(), DateFmt: backup.DateFmt}
		if from != "" {
			s.DeltaFrom, s.DeltaFullName, s.DeltaLSN, s.DeltaCount = from, from, 1, 1
		}
		sb, err := backup.EncodeSentinel(s)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := backup.EncodeMetadata(backup.MetadataFromSentinel(s))
		if err != nil {
			t.Fatal(err)
		}
		objects[backup.SentinelKey(name)] = sb
		objects[backup.MetadataKey(name)] = mb
		for i := 1; i <= 3; i++ {
			objects[backup.TarKey(name, fmt.Sprintf("part_%03d.tar.lz4", i))] = []byte("tar")
		}
		backups = append(backups, name)
	}
	w := func(no uint64) string { return wal.Segment{Timeline: 1, No: no}.Name(seg) }
	add(backup.FullName(w(0xB00)), "", 0xB00)
	add(backup.FullName(w(0xC00)), "", 0xC00)
	d, _ := backup.DeltaName(w(0xC80), backup.FullName(w(0xC00)))
	add(d, backup.FullName(w(0xC00)), 0xC80)
	add(backup.FullName(w(0xD00)), "", 0xD00)
	for no := uint64(1); no <= 0xD10; no++ {
		objects[wal.Folder+w(no)+".lz4"] = []byte("wal")
	}
	return objects, backups
}

// checkListed fails when backup-list lists a backup whose objects or WAL
// (start to finish) are not all in storage.
func checkListed(t *testing.T, tusk string, env []string, srv *s3server.Server, prefix string, objects map[string][]byte) {
	t.Helper()
	res := runTusk(t, tusk, env, "backup-list", "--json")
	if res.code != 0 {
		t.Fatalf("backup-list: %s", res.output)
	}
	var listed []struct {
		Name string `json:"backup_name"`
	}
	if err := json.Unmarshal([]byte(lastLine(res.output)), &listed); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, res.output)
	}
	have := map[string]bool{}
	for _, k := range s3Keys(t, srv, prefix) {
		have[k] = true
	}
	for _, b := range listed {
		s, err := backup.ParseSentinel(objects[backup.SentinelKey(b.Name)])
		if err != nil {
			t.Fatal(err)
		}
		for k := range objects {
			if strings.HasPrefix(k, backup.FolderKey(b.Name)) && !have[k] {
				t.Fatalf("%s is listed but %s is gone", b.Name, k)
			}
		}
		for no := s.LSN.Segment(16 << 20); no <= s.FinishLSN.Segment(16<<20); no++ {
			if k := wal.Folder + (wal.Segment{Timeline: 1, No: no}).Name(16<<20) + ".lz4"; !have[k] {
				t.Fatalf("%s is listed but its WAL %s is gone", b.Name, k)
			}
		}
	}
}

// delete --confirm killed with SIGKILL at several points (while sentinels,
// backup data and WAL go) leaves backup-list listing only whole backups,
// and the same delete run again finishes the job.
func TestDeleteKilledS3(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{})
	objects, backups := killedRepo(t)
	args := []string{"delete", "retain", "FULL", "2", "--confirm"}
	// retain FULL 2 keeps the full backup at 0xC00 (and what follows).
	var want []string
	for k := range objects {
		if strings.HasPrefix(k, backup.FolderKey(backups[0])) || k == backup.SentinelKey(backups[0]) {
			continue
		}
		if seg, ok := strings.CutPrefix(k, wal.Folder); ok {
			if s, err := wal.ParseSegment(seg[:24], 16<<20); err == nil && s.No < 0xC00 {
				continue
			}
		}
		want = append(want, k)
	}
	slices.Sort(want)
	for _, kill := range []struct {
		name string
		// at reports whether to kill on this log line (n: its number).
		at func(line string, n int) bool
	}{
		{"first sentinel", func(l string, _ int) bool { return strings.Contains(l, "_backup_stop_sentinel.json") }},
		{"first backup object", func(l string, _ int) bool { return strings.Contains(l, "tar_partitions/") }},
		{"first WAL", func(l string, _ int) bool { return strings.Contains(l, "wal_005/") }},
		{"WAL 1500", func(l string, n int) bool { return strings.Contains(l, "wal_005/") && n > 1500 }},
	} {
		t.Run(kill.name, func(t *testing.T) {
			prefix := "kill/" + strings.ReplaceAll(kill.name, " ", "-") + "/"
			env := append(srv.Env(), "WALG_S3_PREFIX="+srv.URL(prefix))
			s3PutAll(t, srv, prefix, objects)
			cmd := exec.Command(tusk, args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TZ=UTC"}, env...)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stderr)
			n, killed := 0, false
			for sc.Scan() {
				n++
				if !killed && kill.at(sc.Text(), n) {
					cmd.Process.Kill()
					killed = true
				}
			}
			cmd.Wait()
			if !killed {
				t.Fatalf("the delete ended before the kill point (%d lines)", n)
			}
			left := len(s3Keys(t, srv, prefix))
			t.Logf("killed at line %d: %d of %d objects left", n, left, len(objects))
			checkListed(t, tusk, env, srv, prefix, objects)
			if res := runTusk(t, tusk, env, args...); res.code != 0 {
				t.Fatalf("run again: %s", res.output)
			}
			if got := sortedS3Keys(t, srv, prefix); !slices.Equal(got, want) {
				t.Fatalf("after running again: %d objects, want %d", len(got), len(want))
			}
			checkListed(t, tusk, env, srv, prefix, objects)
		})
	}
}

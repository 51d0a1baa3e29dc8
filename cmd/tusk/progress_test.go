package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

const progressTestBackup = "base_000000010000000000000002"

// putProgressBackup stores a small full backup (lz4, no encryption) in file
// storage at prefix and returns the bytes of its files.
func putProgressBackup(t *testing.T, prefix string) int64 {
	t.Helper()
	st, err := file.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	m, err := codec.ByName(codec.LZ4)
	if err != nil {
		t.Fatal(err)
	}
	enc := pipe.NewEncoder(m, nil)
	ctx := context.Background()
	var total int64
	put := func(tarName string, files map[string][]byte) {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for name, body := range files {
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
			total += int64(len(body))
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		var z bytes.Buffer
		if _, err := enc.Encode(&z, &b); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, backup.TarKey(progressTestBackup, tarName), &z, int64(z.Len())); err != nil {
			t.Fatal(err)
		}
	}
	put("part_001.tar.lz4", map[string][]byte{
		"/PG_VERSION": []byte("15\n"),
		"/base/1/1":   bytes.Repeat([]byte("tusk"), 75000),
	})
	put("pg_control.tar.lz4", map[string][]byte{"/global/pg_control": make([]byte, 8192)})
	data, err := backup.EncodeSentinel(&backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2, PgVersion: 150000, UncompressedSize: total})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, backup.SentinelKey(progressTestBackup), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return total
}

// runTusk runs one command in this process with stdout and stderr going to
// files (not terminals, as under cron or systemd) and returns what each
// received. env is the whole configuration: the process environment is
// restored afterwards, since loading the configuration exports settings.
func runTusk(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	stdout, stderr = inProcess(t, env, func(outF, errF *os.File) {
		root := newRootCommand()
		root.SetArgs(args)
		root.SetOut(outF)
		root.SetErr(errF)
		err = root.ExecuteContext(context.Background())
	})
	return stdout, stderr, err
}

// runMain is runTusk through main's run: what a person sees, "ERROR:"
// lines included, and the exit status.
func runMain(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr = inProcess(t, env, func(*os.File, *os.File) {
		code = run(context.Background(), append([]string{"tusk"}, args...))
	})
	return stdout, stderr, code
}

// inProcess runs fn with env as the whole environment and os.Stdout and
// os.Stderr sent to files, and returns what they received.
func inProcess(t *testing.T, env map[string]string, fn func(outF, errF *os.File)) (stdout, stderr string) {
	t.Helper()
	saved := os.Environ()
	os.Clearenv()
	t.Cleanup(func() {
		os.Clearenv()
		for _, kv := range saved {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	})
	os.Setenv("HOME", t.TempDir()) // no ~/.walg.json of the machine's
	for k, v := range env {
		os.Setenv(k, v)
	}
	dir := t.TempDir()
	outF, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outF, errF
	func() {
		defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
		fn(outF, errF)
	}()
	o, err := os.ReadFile(outF.Name())
	if err != nil {
		t.Fatal(err)
	}
	e, err := os.ReadFile(errF.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(o), string(e)
}

// Machine-readable output is the JSON alone: no progress, no bar.
func TestBackupListJSONHasNoProgress(t *testing.T) {
	prefix := t.TempDir()
	putProgressBackup(t, prefix)
	stdout, stderr, err := runTusk(t, map[string]string{"WALG_FILE_PREFIX": prefix}, "backup-list", "--json")
	if err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, stderr)
	}
	var list []map[string]any
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&list); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%q", err, stdout)
	}
	if rest := strings.TrimSpace(stdout[dec.InputOffset():]); rest != "" {
		t.Errorf("after the JSON: %q", rest)
	}
	if len(list) != 1 || list[0]["backup_name"] != progressTestBackup {
		t.Errorf("list: %v", list)
	}
	if strings.Contains(stderr, "\r") || regexp.MustCompile(`(?m)B/s`).MatchString(stderr) {
		t.Errorf("progress on stderr: %q", stderr)
	}
}

// Without a terminal, backup-fetch reports progress as log lines on
// stderr (here the last one, as the restore takes well under the interval)
// and never draws a bar; stdout stays empty.
func TestBackupFetchProgressLines(t *testing.T) {
	prefix := t.TempDir()
	total := putProgressBackup(t, prefix)
	dest := filepath.Join(t.TempDir(), "restore")
	stdout, stderr, err := runTusk(t, map[string]string{"WALG_FILE_PREFIX": prefix}, "backup-fetch", dest, "LATEST")
	if err != nil {
		t.Fatalf("backup-fetch: %v\n%s", err, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout: %q", stdout)
	}
	if strings.Contains(stderr, "\r") {
		t.Errorf("a bar drawn on a file: %q", stderr)
	}
	line := regexp.MustCompile(`msg="backup-fetch: 301\.0 KiB in \d+s, [0-9.]+ [KMG]?i?B/s" bytes=(\d+)`)
	mt := line.FindStringSubmatch(stderr)
	if mt == nil || mt[1] != "308195" || total != 308195 {
		t.Errorf("no final progress line for %d bytes in:\n%s", total, stderr)
	}
	if st, err := os.Stat(filepath.Join(dest, "base/1/1")); err != nil || st.Size() != 300000 {
		t.Errorf("restored file: %v %v", st, err)
	}
}

// --memory-plan prints the plan and touches neither the destination nor
// storage.
func TestBackupFetchMemoryPlan(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "restore")
	prefix := filepath.Join(t.TempDir(), "no-storage-here")
	env := map[string]string{"WALG_FILE_PREFIX": prefix, "WALG_DOWNLOAD_CONCURRENCY": "3"}
	stdout, stderr, err := runTusk(t, env, "backup-fetch", "--memory-plan", "--json", dest, "LATEST")
	if err != nil {
		t.Fatalf("backup-fetch --memory-plan --json: %v\n%s", err, stderr)
	}
	var plan struct {
		Process string `json:"process"`
		Items   []struct {
			Component string `json:"component"`
			Count     int    `json:"count"`
			Each      int64  `json:"each_bytes"`
		} `json:"items"`
		Live int64 `json:"live_bytes"`
	}
	if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
		t.Fatalf("stdout is not one JSON plan: %v\n%q", err, stdout)
	}
	if plan.Process != "tusk backup-fetch" || plan.Live <= 0 {
		t.Errorf("plan: %+v", plan)
	}
	var decoders int
	var sum int64
	for _, it := range plan.Items {
		sum += int64(it.Count) * it.Each
		if strings.HasPrefix(it.Component, "decompressor") {
			decoders = it.Count
			// The largest decoder any tar extension can need: lzma's and
			// zstd's windows are 8 MiB.
			if it.Each < 8<<20 {
				t.Errorf("decompressor estimate %d bytes", it.Each)
			}
		}
	}
	if decoders != 3 {
		t.Errorf("%d decompressors for WALG_DOWNLOAD_CONCURRENCY=3", decoders)
	}
	if sum != plan.Live {
		t.Errorf("items sum to %d, live says %d", sum, plan.Live)
	}
	for _, p := range []string{dest, prefix} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s touched: %v", p, err)
		}
	}

	stdout, _, err = runTusk(t, env, "backup-fetch", "--memory-plan")
	if err != nil || !strings.Contains(stdout, "decompressor (largest: ") || !strings.Contains(stdout, "bound: resident memory") {
		t.Errorf("table: %v\n%s", err, stdout)
	}
	if _, _, err := runTusk(t, env, "backup-fetch", "--json", dest, "LATEST"); err == nil {
		t.Error("--json without --memory-plan accepted")
	}
}

// backup-push without a terminal: its progress goes through the log, and
// the last line counts every byte read from the data directory, which is
// what the backup stored less the backup_label tar (not read from disk).
func TestBackupPushProgressLines(t *testing.T) {
	c := pgcluster.New(t, pgcluster.Options{})
	c.Start()
	c.Exec(`CREATE TABLE t AS SELECT g, repeat('x', 200) AS v FROM generate_series(1, 50000) g; CHECKPOINT`)
	prefix := t.TempDir()
	env := map[string]string{"WALG_FILE_PREFIX": prefix}
	for _, kv := range c.ConnEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	stdout, stderr, err := runTusk(t, env, "backup-push", c.DataDir())
	if err != nil {
		t.Fatalf("backup-push: %v\n%s", err, stderr)
	}
	if stdout != "" || strings.Contains(stderr, "\r") {
		t.Errorf("stdout %q; a bar drawn on a file: %v", stdout, strings.Contains(stderr, "\r"))
	}
	mt := regexp.MustCompile(`msg="backup-push: [0-9.]+ MiB in \d+s, [0-9.]+ [KMG]?i?B/s" bytes=(\d+)`).FindStringSubmatch(stderr)
	if mt == nil {
		t.Fatalf("no final progress line in:\n%s", stderr)
	}
	st, err := file.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := backup.List(context.Background(), st)
	if err != nil || len(infos) != 1 {
		t.Fatalf("backups: %v %v", infos, err)
	}
	s, err := backup.FetchSentinel(context.Background(), st, infos[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	var read int64
	if _, err := fmt.Sscan(mt[1], &read); err != nil {
		t.Fatal(err)
	}
	// The label tar holds backup_label and tablespace_map, well under 4 KiB.
	if read > s.UncompressedSize || read < s.UncompressedSize-4096 {
		t.Errorf("progress counted %d bytes read; the backup stored %d", read, s.UncompressedSize)
	}
}

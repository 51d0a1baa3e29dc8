package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// TestStFile and TestStS3 run the storage tools against file storage and
// an S3 server: every subcommand, with WAL-G's output and refusals.
func TestStFile(t *testing.T) {
	testSt(t, map[string]string{"WALG_FILE_PREFIX": t.TempDir()})
}

func TestStS3(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{Prefix: "st/root"})
	env := map[string]string{}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	testSt(t, env)
}

func testSt(t *testing.T, env map[string]string) {
	dir := t.TempDir()
	data := make([]byte, 300<<10)
	rand.Read(data[:100<<10]) // part random, part compressible
	local := filepath.Join(dir, "local.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st := func(args ...string) (string, error) {
		t.Helper()
		out, _, err := runTusk(t, env, append([]string{"st"}, args...)...)
		return out, err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := st(args...)
		if err != nil {
			t.Fatalf("st %v: %v", args, err)
		}
		return out
	}
	wantErr := func(want string, args ...string) {
		t.Helper()
		if _, err := st(args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("st %v: %v, want an error containing %q", args, err, want)
		}
	}

	// put compresses with the configured method (lz4 by default) and
	// appends its extension; a second put needs -f.
	must("put", local, "dir/obj")
	wantErr("object dir/obj.lz4 already exists. To overwrite it, add the -f flag", "put", local, "dir/obj")
	must("put", "-f", local, "dir/obj")
	must("put", "--no-compress", local, "dir/sub/raw")
	must("put", "--no-compress", local, "top")

	// ls: one level, folders first, as WAL-G prints it.
	out := must("ls")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^type +size +last modified +name$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^dir +0 +0001-01-01 00:00:00 \+0000 UTC +dir/ +$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^obj +307200 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.* +top +$`).MatchString(lines[2]) {
		t.Errorf("st ls:\n%s", out)
	}
	out = must("ls", "dir")
	if !strings.Contains(out, " sub/ ") || !regexp.MustCompile(`(?m)^obj +\d+ .* obj\.lz4 +$`).MatchString(out) {
		t.Errorf("st ls dir:\n%s", out)
	}
	out = must("ls", "-r", "/dir/")
	if !regexp.MustCompile(`(?m) obj\.lz4 +$`).MatchString(out) || !regexp.MustCompile(`(?m) sub/raw +$`).MatchString(out) || strings.Contains(out, "dir ") {
		t.Errorf("st ls -r dir:\n%s", out)
	}

	// stat: one row in the same format; a missing object fails.
	if out := must("stat", "top"); !regexp.MustCompile(`(?m)^obj +307200 .* top +$`).MatchString(out) {
		t.Errorf("st stat top:\n%s", out)
	}
	wantErr(`stat object "nope"`, "stat", "nope")

	// cat: raw by default, decompressed on request.
	if out := must("cat", "dir/obj.lz4"); !strings.HasPrefix(out, "\x04\x22\x4d\x18") || len(out) >= len(data) {
		t.Errorf("st cat: %d bytes starting %q, want an lz4 frame", len(out), out[:min(4, len(out))])
	}
	if out := must("cat", "--decompress", "dir/obj.lz4"); out != string(data) {
		t.Errorf("st cat --decompress: %d bytes, not the file", len(out))
	}

	// get: decompressed by default, into a new file, never over one.
	dst := filepath.Join(dir, "got")
	must("get", "dir/obj.lz4", dst)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Errorf("st get: %d bytes, not the file", len(got))
	}
	wantErr("file already exists", "get", "dir/obj.lz4", dst)
	into := t.TempDir()
	must("get", "--no-decompress", "dir/obj.lz4", into)
	if got, _ := os.ReadFile(filepath.Join(into, "obj.lz4")); len(got) == 0 || bytes.Equal(got, data) {
		t.Errorf("st get --no-decompress into a directory: %d bytes", len(got))
	}
	wantErr("not found", "get", "missing.lz4", filepath.Join(dir, "missing"))
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Error("a failed get left a file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("left in the destination directory: %v", entries)
	}

	// Encryption with the configured key: stored encrypted, read back.
	enc := map[string]string{"WALG_LIBSODIUM_KEY": strings.Repeat("k", 32)}
	for k, v := range env {
		enc[k] = v
	}
	if _, _, err := runTusk(t, enc, "st", "put", local, "secret"); err != nil {
		t.Fatal(err)
	}
	raw, _, _ := runTusk(t, enc, "st", "cat", "secret.lz4")
	plain, _, err := runTusk(t, enc, "st", "cat", "--decrypt", "--decompress", "secret.lz4")
	if err != nil || plain != string(data) || strings.Contains(raw, "\x04\x22\x4d\x18") {
		t.Errorf("encrypted put: cat --decrypt --decompress %d bytes, %v; raw holds an lz4 frame: %v", len(plain), err, strings.Contains(raw, "\x04\x22\x4d\x18"))
	}

	// check.
	must("check", "read", "top", "dir/obj.lz4")
	wantErr("files are missing: nope, dir/nope", "check", "read", "top", "nope", "dir/nope")
	if _, stderr, err := runTusk(t, env, "st", "check", "write"); err != nil || !strings.Contains(stderr, "Write check OK") {
		t.Errorf("check write: %v\n%s", err, stderr)
	}

	// rm: an object, else a folder; nothing there is an error.
	must("rm", "top")
	wantErr(`object or folder "top" does not exist`, "rm", "top")
	must("rm", "dir")
	if out := must("ls", "-r"); strings.Contains(out, "dir/") || !strings.Contains(out, "secret.lz4") {
		t.Errorf("after rm dir:\n%s", out)
	}

	// What tusk does not do is refused, not ignored.
	wantErr(`storage "backup2" is not configured; the storages are default`, "ls", "--target", "backup2")
	wantErr("--glob is not supported", "ls", "-g", "*")
	wantErr("not supported", "rm", "--all-versions", "x")
	wantErr(`--source: storage "a" is not configured`, "transfer", "files", "x", "--source", "a")
	wantErr(`--source and --target are both "default"`, "transfer", "pg-wals", "--source", "default")
	wantErr("--source: the storage to move files from must be given", "transfer", "backups")
}

package file

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
)

func newTemp(t *testing.T) *Storage {
	t.Helper()
	s, err := New(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return newTemp(t) })
}

func TestNewPrefixForms(t *testing.T) {
	good := map[string]string{
		"/var/backups":                  "/var/backups",
		"/var/backups/":                 "/var/backups",
		"file:///var/backups":           "/var/backups",
		"file://localhost/var/backups/": "/var/backups",
		"/a/./b/../c":                   "/a/c",
	}
	for in, want := range good {
		s, err := New(in)
		if err != nil {
			t.Errorf("New(%q): %v", in, err)
			continue
		}
		if s.Root() != want {
			t.Errorf("New(%q).Root() = %q, want %q", in, s.Root(), want)
		}
	}
	if s, _ := New("file:///var/backups"); s.String() != "file:///var/backups" {
		t.Errorf("String() = %q", s.String())
	}
	for _, in := range []string{"", "relative/dir", "file://host/var", "file://relative", "file://"} {
		if _, err := New(in); err == nil {
			t.Errorf("New(%q) succeeded, want an error", in)
		}
	}
}

// rawEntries lists every name under dir, hidden ones included.
func rawEntries(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestFailedPutLeavesNoFile(t *testing.T) {
	s := newTemp(t)
	ctx := context.Background()
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(make([]byte, 300<<10)), iotestErrReader{boom})
	if err := s.Put(ctx, "wal_005/seg", r, -1); !errors.Is(err, boom) {
		t.Fatalf("Put: %v", err)
	}
	// The directory may stay (it was created for the object) but must hold no file.
	for _, name := range rawEntries(t, s.Root()) {
		if name != "wal_005" {
			t.Fatalf("left behind: %s (all: %q)", name, rawEntries(t, s.Root()))
		}
	}
	// An existing object is not damaged by a failed overwrite.
	if err := s.Put(ctx, "wal_005/seg", strings.NewReader("good"), 4); err != nil {
		t.Fatal(err)
	}
	r = io.MultiReader(strings.NewReader("partial"), iotestErrReader{boom})
	if err := s.Put(ctx, "wal_005/seg", r, -1); !errors.Is(err, boom) {
		t.Fatalf("Put: %v", err)
	}
	if got := storagetest.ReadAll(t, s, "wal_005/seg"); string(got) != "good" {
		t.Fatalf("after failed overwrite: %q", got)
	}
	if got := rawEntries(t, s.Root()); !slices.Equal(got, []string{"wal_005", filepath.Join("wal_005", "seg")}) {
		t.Fatalf("entries: %q", got)
	}
}

type iotestErrReader struct{ err error }

func (e iotestErrReader) Read([]byte) (int, error) { return 0, e.err }

func TestInFlightPutIsInvisible(t *testing.T) {
	s := newTemp(t)
	ctx := context.Background()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Put(ctx, "dir/obj", pr, -1) }()
	if _, err := pw.Write([]byte("first half ")); err != nil {
		t.Fatal(err)
	}
	// The Put is blocked reading; its temporary file exists on disk.
	var tmp []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		tmp = rawEntries(t, filepath.Join(s.Root(), "dir"))
		if len(tmp) > 0 {
			break
		}
	}
	if len(tmp) != 1 || !isTempName(tmp[0]) {
		t.Fatalf("expected one temporary file, found %q", tmp)
	}
	if keys := storagetest.Keys(t, s, ""); len(keys) != 0 {
		t.Fatalf("List shows an in-flight Put: %q", keys)
	}
	if _, err := s.Stat(ctx, "dir/obj"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat during Put: %v", err)
	}
	if _, err := pw.Write([]byte("second half")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadAll(t, s, "dir/obj"); string(got) != "first half second half" {
		t.Fatalf("got %q", got)
	}
	if got := rawEntries(t, filepath.Join(s.Root(), "dir")); !slices.Equal(got, []string{"obj"}) {
		t.Fatalf("entries after Put: %q", got)
	}
}

func TestKeysCannotEscapeRoot(t *testing.T) {
	parent := t.TempDir()
	s, err := New(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"../secret", "a/../../secret", "..", "a/./b", "a/..", "x\x00y"} {
		err := s.Put(ctx, key, strings.NewReader("x"), 1)
		if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Put(%q): %v, want an invalid key error", key, err)
		}
		if _, err := s.Get(ctx, key); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q): %v, want an invalid key error", key, err)
		}
		if _, err := s.Stat(ctx, key); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q): %v, want an invalid key error", key, err)
		}
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded", key)
		}
	}
	if err := s.List(ctx, "../", func(storage.ObjectInfo) error { return nil }); err == nil {
		t.Error("List(../) succeeded")
	}
	if b, err := os.ReadFile(filepath.Join(parent, "secret")); err != nil || string(b) != "s" {
		t.Fatalf("file outside the root changed: %q %v", b, err)
	}
	if got := rawEntries(t, parent); !slices.Equal(got, []string{"secret"}) {
		t.Fatalf("entries outside the root: %q", got)
	}
	for _, key := range []string{"", "/", "dir/", ".x.tmp-123"} {
		if err := s.Put(ctx, key, strings.NewReader("x"), 1); err == nil {
			t.Errorf("Put(%q) succeeded", key)
		}
	}
}

// The choice documented in the package comment: ENOENT, ENOTDIR and
// directories are "not found"; other errors are not.
func TestNotFoundVersusOtherErrors(t *testing.T) {
	s := newTemp(t)
	ctx := context.Background()
	if err := s.Put(ctx, "obj", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"obj/child", "nodir/x"} {
		if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q): %v, want ErrNotFound", key, err)
		}
	}
	// A symlink loop is a broken store, not a missing object.
	if err := os.Symlink("loop", filepath.Join(s.Root(), "loop")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 300) // over NAME_MAX
	for _, key := range []string{"loop", "loop/x", long} {
		_, err := s.Get(ctx, key)
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q): %v, want an error that is not ErrNotFound", key, err)
		}
		_, err = s.Stat(ctx, key)
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q): %v, want an error that is not ErrNotFound", key, err)
		}
		if ok, err := storage.Exists(ctx, s, key); ok || err == nil {
			t.Errorf("Exists(%q) = %v, %v; want an error", key, ok, err)
		}
	}
	// Non-regular files are errors too.
	if err := syscall.Mkfifo(filepath.Join(s.Root(), "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "fifo"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(fifo): %v", err)
	}
}

func TestPermissionDeniedIsNotNotFound(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("skipped: permission bits do not restrict root")
	}
	s := newTemp(t)
	ctx := context.Background()
	if err := s.Put(ctx, "locked/obj", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Root(), "locked")
	if err := os.Chmod(dir, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	if _, err := s.Get(ctx, "locked/obj"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.List(ctx, "", func(storage.ObjectInfo) error { return nil }); err == nil {
		t.Fatal("List through an unreadable directory succeeded")
	}
}

// makeReadOnly makes dir unwritable for this process: permission bits for a
// normal user, the immutable attribute for root.
func makeReadOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return
	}
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: running as root and chattr +i is unavailable here (%v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", dir).Run() })
}

func TestReadOnlyDestination(t *testing.T) {
	s := newTemp(t)
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(s.Root(), "wal_005"), 0o755); err != nil {
		t.Fatal(err)
	}
	makeReadOnly(t, filepath.Join(s.Root(), "wal_005"))
	err := s.Put(ctx, "wal_005/000000010000000000000001", strings.NewReader("x"), 1)
	if err == nil {
		t.Fatal("Put into a read-only directory succeeded")
	}
	if errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Put error wraps ErrNotFound: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "wal_005/000000010000000000000001") ||
		!(errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS)) {
		t.Fatalf("unclear error: %v", err)
	}
	if got := rawEntries(t, filepath.Join(s.Root(), "wal_005")); len(got) != 0 {
		t.Fatalf("left behind: %q", got)
	}
	// Creating a missing directory under a read-only one fails the same way.
	err = s.Put(ctx, "wal_005/sub/x", strings.NewReader("x"), 1)
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Put into a new subdirectory of a read-only one: %v", err)
	}
}

func TestRootIsAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Put(context.Background(), "k", strings.NewReader("x"), 1)
	if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Put under a file root: %v", err)
	}
}

func TestPutOverDirectoryFails(t *testing.T) {
	s := newTemp(t)
	ctx := context.Background()
	if err := s.Put(ctx, "a/b", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a", strings.NewReader("y"), 1); err == nil {
		t.Fatal("Put over a directory succeeded")
	}
	if got := rawEntries(t, s.Root()); !slices.Equal(got, []string{"a", filepath.Join("a", "b")}) {
		t.Fatalf("entries: %q", got)
	}
}

func TestDeleteRemovesEmptyDirectoriesButNotRoot(t *testing.T) {
	s := newTemp(t)
	ctx := context.Background()
	for _, k := range []string{"basebackups_005/b1/tar_partitions/part_001.tar", "basebackups_005/b2/metadata.json"} {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "basebackups_005/b1/tar_partitions/part_001.tar"); err != nil {
		t.Fatal(err)
	}
	want := []string{"basebackups_005", filepath.Join("basebackups_005", "b2"), filepath.Join("basebackups_005", "b2", "metadata.json")}
	if got := rawEntries(t, s.Root()); !slices.Equal(got, want) {
		t.Fatalf("entries: %q, want %q", got, want)
	}
	if err := s.Delete(ctx, "basebackups_005/b2/metadata.json"); err != nil {
		t.Fatal(err)
	}
	if got := rawEntries(t, s.Root()); len(got) != 0 {
		t.Fatalf("entries: %q", got)
	}
	if fi, err := os.Stat(s.Root()); err != nil || !fi.IsDir() {
		t.Fatalf("root removed: %v", err)
	}
}

func TestListFollowsSymlinkedDirectory(t *testing.T) {
	s := newTemp(t)
	ctx := context.Background()
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "000000010000000000000001.lz4"), []byte("wal"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.Root(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, filepath.Join(s.Root(), "wal_005")); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.Keys(t, s, "wal_005/"); !slices.Equal(got, []string{"wal_005/000000010000000000000001.lz4"}) {
		t.Fatalf("List: %q", got)
	}
	if got := storagetest.ReadAll(t, s, "wal_005/000000010000000000000001.lz4"); string(got) != "wal" {
		t.Fatalf("Get: %q", got)
	}
	// A symlink loop ends the listing with an error rather than recursing forever.
	if err := os.Symlink("..", filepath.Join(other, "up")); err != nil {
		t.Fatal(err)
	}
	err := s.List(ctx, "", func(storage.ObjectInfo) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "symlink loop") {
		t.Fatalf("List through a loop: %v", err)
	}
}

func TestListMissingRoot(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "never", "created"))
	if err != nil {
		t.Fatal(err)
	}
	if got := storagetest.Keys(t, s, ""); len(got) != 0 {
		t.Fatalf("List: %q", got)
	}
	if _, err := s.Get(context.Background(), "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
}

func TestNewFilesHonourUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	s := newTemp(t)
	if err := s.Put(context.Background(), "d/f", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(s.Root(), "d", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640 under umask 027", fi.Mode().Perm())
	}
}

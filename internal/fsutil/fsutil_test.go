package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// A symlink planted at the name is never written through.
func TestCreateRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "file")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if f, err := Create(link, 0o600); err == nil {
		f.Close()
		t.Fatal("Create opened a planted symlink")
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if f, err := CreateIn(root, "file", 0o600); err == nil {
		f.Close()
		t.Fatal("CreateIn opened a planted symlink")
	}
	if f, err := CreateReadWriteIn(root, "file", 0o600); err == nil {
		f.Close()
		t.Fatal("CreateReadWriteIn opened a planted symlink")
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("victim changed: %q", b)
	}
}

// Replace swaps a symlink at the final name for the new file and leaves
// the link's target alone; the mode is the one asked for, umask aside.
func TestReplaceOverSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "conf")
	if err := os.Symlink(victim, name); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(name, Options{Perm: 0o640}, func(f *os.File) error {
		_, err := f.WriteString("new")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("written through the symlink: victim is %q", b)
	}
	fi, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
		t.Fatalf("%s: mode %v", name, fi.Mode())
	}
	if b, _ := os.ReadFile(name); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	assertOnly(t, dir, "conf", "victim")
}

// A failed write leaves the old file and no temporary file.
func TestReplaceFailureLeavesOld(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "conf")
	if err := os.WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFile(name, Options{}, func(f *os.File) error {
		f.WriteString("half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "old" {
		t.Fatalf("content %q", b)
	}
	assertOnly(t, dir, "conf")
}

// Replace works on a name in a subdirectory of the root.
func TestReplaceInSubdirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := Replace(root, "sub/f", Options{NoSync: true}, func(*os.File) error { return nil }); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, filepath.Join(dir, "sub"), "f")
	if err := Replace(root, "../f", Options{}, func(*os.File) error { return nil }); err == nil {
		t.Fatal("Replace left its root")
	}
}

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(dir, "absent")); err == nil {
		t.Fatal("no error for a missing directory")
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
	for i := range got {
		if got[i] != names[i] {
			t.Fatalf("%s holds %v, want %v", dir, got, names)
		}
	}
}

// OpenRoot refuses a symlink at the directory's own name.
func TestOpenRootRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if r, err := OpenRoot(link); err == nil {
		r.Close()
		t.Fatal("opened a symlinked directory")
	}
	r, err := OpenRoot(real)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

// OpenIn does not follow a symlink, even one that stays inside the root.
func TestOpenInRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if f, err := OpenIn(root, "link", os.O_RDWR); err == nil {
		f.Close()
		t.Fatal("opened through a symlink")
	}
	f, err := OpenIn(root, "file", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestCheckPrivateDir(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := CheckPrivateDir(root); err != nil {
		t.Fatalf("own 0700 directory refused: %v", err)
	}
	for _, mode := range []os.FileMode{0o770, 0o757, 0o777 | os.ModeSticky} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := CheckPrivateDir(root); err == nil {
			t.Errorf("mode %v accepted", mode)
		}
	}
}

func TestCommit(t *testing.T) {
	dir := t.TempDir()
	tmp, final := filepath.Join(dir, "running"), filepath.Join(dir, "final")
	if err := os.WriteFile(final, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(tmp, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new and whole"); err != nil {
		t.Fatal(err)
	}
	if err := Commit(f, final); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(final); err != nil || string(got) != "new and whole" {
		t.Fatalf("final = %q, %v", got, err)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("temporary file still there: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("Commit left the file open")
	}
}

// A file that cannot be synced or closed is never published.
func TestCommitFailureRenamesNothing(t *testing.T) {
	dir := t.TempDir()
	tmp, final := filepath.Join(dir, "running"), filepath.Join(dir, "final")
	f, err := Create(tmp, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // the fsync fails now
	if err := Commit(f, final); err == nil {
		t.Fatal("Commit of a file that failed to sync succeeded")
	}
	if _, err := os.Lstat(final); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("final published after a failed sync: %v", err)
	}
	if _, err := os.Lstat(tmp); err != nil {
		t.Fatalf("the temporary file is the caller's to remove: %v", err)
	}
}

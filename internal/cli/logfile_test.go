package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tusk.log")
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write([]byte("before\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("still the old file\n"))
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("after\n"))
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "before\nstill the old file\n" || string(cur) != "after\n" {
		t.Errorf("rotated file %q, new file %q", old, cur)
	}
	// A path that cannot be reopened (now a directory) keeps the current
	// file in use.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Error("reopening a directory as the log file succeeded")
	}
	l.Write([]byte("kept\n"))
	if b, _ := os.ReadFile(path + ".2"); string(b) != "after\nkept\n" {
		t.Errorf("after a failed reopen the log holds %q", b)
	}
}

package wal

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Ready lists what PostgreSQL's archiver would take, in its order: history
// files first, then segments in WAL order; other files are ignored.
func TestStatusReadyOrder(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{
		"000000020000000000000003.ready",
		"000000010000000000000002.ready",
		"00000002.history.ready",
		"000000010000000000000002.00000028.backup.ready",
		"000000010000000000000001.done",
		"not-wal.ready",
		"000000010000000000000001.ready",
	} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Status{Dir: dir}.Ready()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"00000002.history",
		"000000010000000000000001",
		"000000010000000000000002",
		"000000010000000000000002.00000028.backup",
		"000000020000000000000003",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Ready() = %q, want %q", got, want)
	}
}

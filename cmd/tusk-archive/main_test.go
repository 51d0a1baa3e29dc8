package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestMain: wal-fetch starts `tusk-archive wal-prefetch` detached, as
// os.Executable(), which is this test binary here; that run does nothing
// rather than run the tests again, and outlive them in their temporary
// directories.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "wal-prefetch" {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tusk-archive pushes a segment to file storage and fetches it back, as
// tusk does, through the same settings; a storage it does not link, or a
// command it does not have, fails with exit status 1 before anything is
// stored.
func TestArchiveFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pgdata, store := filepath.Join(dir, "data"), filepath.Join(dir, "store")
	status := filepath.Join(pgdata, "pg_wal", "archive_status")
	if err := os.MkdirAll(status, 0o700); err != nil {
		t.Fatal(err)
	}
	seg := make([]byte, 16<<20)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(seg[:1<<20]) // some entropy, the rest compresses
	const name = "000000010000000000000007"
	src := filepath.Join(pgdata, "pg_wal", name)
	if err := os.WriteFile(src, seg, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", dir)
	t.Setenv("PGDATA", pgdata)
	t.Setenv("WALG_FILE_PREFIX", store)
	t.Setenv("WALG_COMPRESSION_METHOD", "zstd")
	ctx := context.Background()
	if code := run(ctx, []string{"tusk-archive", "wal-push", src}); code != 0 {
		t.Fatalf("wal-push: exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(store, "wal_005", name+".zst")); err != nil {
		t.Errorf("segment not stored as WAL-G names it: %v", err)
	}
	dest := filepath.Join(dir, "restored")
	if code := run(ctx, []string{"tusk-archive", "wal-fetch", name, dest}); code != 0 {
		t.Fatalf("wal-fetch: exit %d", code)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, seg) {
		t.Errorf("wal-fetch gave %d bytes (%v), different from the pushed segment", len(got), err)
	}
	if code := run(ctx, []string{"tusk-archive", "wal-fetch", "000000010000000000000009", dest + "2"}); code != 74 {
		t.Errorf("wal-fetch of a segment not archived: exit %d, want 74", code)
	}

	for _, tc := range []struct {
		name string
		env  [2]string
		args []string
	}{
		{"GCS storage", [2]string{"WALG_GS_PREFIX", "gs://bucket/p"}, []string{"wal-push", src}},
		{"SSH storage", [2]string{"WALE_SSH_PREFIX", "ssh://host/p"}, []string{"wal-fetch", name, dest + "3"}},
		{"another command", [2]string{"WALG_FILE_PREFIX", store}, []string{"backup-list"}},
	} {
		t.Setenv("WALG_FILE_PREFIX", "")
		t.Setenv(tc.env[0], tc.env[1])
		if code := run(ctx, append([]string{"tusk-archive"}, tc.args...)); code != 1 {
			t.Errorf("%s: exit %d, want 1", tc.name, code)
		}
		t.Setenv(tc.env[0], "")
	}
	if _, err := os.Stat(dest + "3"); !os.IsNotExist(err) {
		t.Errorf("a refused wal-fetch left %s (%v)", dest+"3", err)
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// backup-fetch writes its restore configuration (which holds secrets)
// without following anything planted next to DEST: a symlink at the old
// fixed temporary name keeps its target untouched, and the file itself
// is a new regular file readable by its owner only.
func TestBackupFetchRestoreConfigIgnoresPlantedSymlinks(t *testing.T) {
	prefix := t.TempDir()
	putProgressBackup(t, prefix)
	parent := t.TempDir()
	dest := filepath.Join(parent, "restore")
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("root's file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{dest + restoreConfigSuffix + ".tmp", dest + restoreConfigSuffix} {
		if err := os.Symlink(victim, name); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"WALG_FILE_PREFIX": prefix, "AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "PGPASSWORD": "pw-value"}
	_, stderr, err := runTusk(t, env, "backup-fetch", dest, "LATEST", "--target-immediate")
	if err != nil {
		t.Fatalf("backup-fetch: %v\n%s", err, stderr)
	}
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "root's file\n" {
		t.Fatalf("the restore configuration was written through a planted symlink into %s:\n%s", victim, b)
	}
	fi, err := os.Lstat(dest + restoreConfigSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %v, want a regular file with 0600", dest+restoreConfigSuffix, fi.Mode())
	}
	if cfg, _ := os.ReadFile(dest + restoreConfigSuffix); !strings.Contains(string(cfg), "s3cr3t-value") {
		t.Fatalf("restore configuration lacks the settings:\n%s", cfg)
	}
}

// The restore configuration holds secrets: backup-fetch refuses, before
// restoring anything, to write it into a directory others may write, where
// they could plant, swap or remove it.
func TestBackupFetchRefusesSharedConfigDirectory(t *testing.T) {
	prefix := t.TempDir()
	putProgressBackup(t, prefix)
	parent := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o1777); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(parent, "restore")
	env := map[string]string{"WALG_FILE_PREFIX": prefix, "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
	_, stderr, err := runTusk(t, env, "backup-fetch", dest, "LATEST", "--target-immediate")
	if err == nil {
		t.Fatalf("backup-fetch wrote its configuration into a world-writable directory\n%s", stderr)
	}
	if msg := err.Error(); !strings.Contains(msg, parent) || strings.Contains(msg, "\n") || strings.Contains(msg, "s3cr3t") {
		t.Errorf("error is not one line naming %s: %q", parent, msg)
	}
	if _, err := os.Lstat(dest); err == nil {
		t.Errorf("%s was restored before the refusal", dest)
	}
	if _, err := os.Lstat(dest + restoreConfigSuffix); err == nil {
		t.Errorf("%s written", dest+restoreConfigSuffix)
	}
}

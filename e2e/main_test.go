// Package e2e runs the tusk binary the way PostgreSQL does: as
// archive_command and restore_command of real PostgreSQL 15 clusters, and
// against archives written by WAL-G itself.
package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// tuskResult is one finished tusk run.
type tuskResult struct {
	code   int
	output string // stdout and stderr, interleaved
}

// runTusk runs the tusk binary with exactly env on top of a minimal base (no
// inherited WALG_*/AWS_* settings; HOME is a temp dir so no ~/.walg.json or
// cache of the developer's is read or written).
func runTusk(t *testing.T, tusk string, env []string, args ...string) tuskResult {
	t.Helper()
	cmd := exec.Command(tusk, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TZ=UTC"}, env...)
	return runCmd(t, cmd)
}

// runCmd runs a prepared tusk command and returns its exit status and
// combined output; only a failure to start it fails the test.
func runCmd(t *testing.T, cmd *exec.Cmd) tuskResult {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return tuskResult{0, out.String()}
	case errors.As(err, &exitErr):
		return tuskResult{exitErr.ExitCode(), out.String()}
	default:
		t.Fatalf("running %v: %v", cmd.Args, err)
		return tuskResult{}
	}
}

//go:build linux && amd64

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tusk-pg/tusk/internal/daemon/wire/wiretest"
	"github.com/tusk-pg/tusk/internal/testenv"
)

// The binary linked with its own entry point (as the Makefile builds it)
// behaves as the one without: the same frames reach the daemon, and the
// same exit status and output come back, whether the request is settled
// before the runtime starts or handed over to main.
func TestEntryPointMatchesPlainBuild(t *testing.T) {
	dir := t.TempDir()
	plain, entry := filepath.Join(dir, "plain"), filepath.Join(dir, "entry")
	for bin, flags := range map[string][]string{plain: nil, entry: testenv.DaemonClientBuildFlags()} {
		cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, flags...), ".")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", flags, err, out)
		}
	}

	frames := make(chan []byte, 100)
	sock := func(name string, reply byte) string {
		return wiretest.Listen(t, name, wiretest.Replier(reply, frames))
	}
	ok, notFound, failed, hangUp := sock("ok", 'O'), sock("n", 'N'), sock("e", 'E'), sock("eof", 0)
	const seg = "000000010000000000000001"
	for _, args := range [][]string{
		{ok, "wal-push", seg},
		{ok, "Wal-Fetch", seg, "pg_wal/RECOVERYXLOG"},
		{ok, "wal-push", seg, "-timeout", "5s", "-connection-timeout=1s"},
		{notFound, "wal-fetch", seg, "pg_wal/RECOVERYXLOG"},
		{failed, "wal-push", seg},
		{hangUp, "wal-push", seg},
		{filepath.Join(dir, "missing"), "wal-push", seg},
		{ok, "wal-push"},
		{ok, "backup-push", seg},
		{"--version"},
		{},
	} {
		var got [2]string
		for i, bin := range []string{plain, entry} {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			status := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("%q: %v", args, err)
			}
			var frame []byte
			select {
			case frame = <-frames:
			default:
			}
			got[i] = string(rune('0'+status)) + "|" + stdout.String() + "|" + stderr.String() + "|" + string(frame)
		}
		if got[0] != got[1] {
			t.Errorf("%q:\n plain %q\n entry %q", args, got[0], got[1])
		}
	}
}

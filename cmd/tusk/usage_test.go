package main

import (
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"
)

// An argument or flag error is one ERROR line naming the command, then the
// command's usage line, and exit status 1.
func TestArgumentErrorsShowUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"wal-push"}, "ERROR: wal-push: takes 1 argument, got 0\nUsage: tusk wal-push WAL_FILE_PATH [flags]\n"},
		{[]string{"wal-fetch", "x"}, "ERROR: wal-fetch: takes 2 arguments, got 1\nUsage: tusk wal-fetch WAL_NAME DESTINATION [flags]\n"},
		{[]string{"backup-list", "extra"}, "ERROR: backup-list: takes no arguments, got 1\nUsage: tusk backup-list [flags]\n"},
		{[]string{"delete", "retain"}, "ERROR: delete retain: takes 1 to 2 arguments, got 0\nUsage: tusk delete retain [FULL|FIND_FULL] N [flags]\n"},
		{[]string{"delete", "bogus"}, "ERROR: delete: unknown command \"bogus\"\nUsage: tusk delete before|everything|garbage|retain|target ...\n"},
		{[]string{"wal-push", "--no-such-flag", "x"}, "ERROR: wal-push: unknown flag: --no-such-flag\nUsage: tusk wal-push WAL_FILE_PATH [flags]\n"},
	} {
		stdout, stderr, code := runMain(t, nil, tc.args...)
		if code != 1 || stderr != tc.want || stdout != "" {
			t.Errorf("tusk %s: exit %d, stdout %q, stderr %q; want exit 1 and %q",
				strings.Join(tc.args, " "), code, stdout, stderr, tc.want)
		}
	}
}

// Every command's argument check, whatever it tests, gives a cli.UsageError
// with a one-line message in tusk's words, never Cobra's "arg(s)".
func TestEveryArgumentErrorIsAUsageError(t *testing.T) {
	root := newRootCommand()
	var checked int
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
		if cmd.Args == nil || cmd.DisableFlagParsing {
			return
		}
		for _, args := range [][]string{nil, strings.Fields("x y z u v w")} {
			err := cmd.ValidateArgs(args)
			if err == nil {
				continue
			}
			checked++
			var ue *cli.UsageError
			msg := err.Error()
			if !errors.As(err, &ue) || strings.Contains(msg, "arg(s)") || strings.Contains(msg, "\n") ||
				!strings.HasPrefix(msg, cli.CommandName(cmd)+": ") {
				t.Errorf("%s with %d arguments: %T %q", cmd.CommandPath(), len(args), err, msg)
			}
		}
	}
	walk(root)
	if checked < 10 {
		t.Errorf("only %d argument errors seen; the walk missed the commands", checked)
	}
}

// Each of WAL-G's commands tusk lacks answers that it is not implemented,
// whatever its arguments and flags, without reading the configuration.
func TestMissingWALGCommands(t *testing.T) {
	root := newRootCommand()
	var missing int
	for _, wc := range walgCommands {
		cmd, _, err := root.Find([]string{wc.name})
		if err != nil || cmd == root {
			t.Errorf("WAL-G's %s: not in tusk's command tree (%v)", wc.name, err)
			continue
		}
		if cmd.Annotations[missingAnnotation] == "" {
			continue
		}
		missing++
		// A bad setting does not matter: the answer is the same.
		env := map[string]string{"WALG_COMPRESSION_METHOD": "no-such-codec"}
		stdout, stderr, code := runMain(t, env, wc.name, "ls", "--some-flag", "x")
		want := `ERROR: WAL-G's "` + wc.name + `" is not implemented in tusk yet` + "\n"
		if code != 1 || stderr != want || stdout != "" {
			t.Errorf("tusk %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", wc.name, code, stdout, stderr, want)
		}
	}
	if missing == 0 {
		t.Log("every WAL-G command is implemented")
	}
	// A placeholder never hides a real command.
	names := map[string]int{}
	for _, c := range root.Commands() {
		names[c.Name()]++
	}
	for n, k := range names {
		if k > 1 {
			t.Errorf("%d commands named %s", k, n)
		}
	}
	// An unknown name that is not WAL-G's stays Cobra's unknown command.
	_, stderr, code := runMain(t, nil, "no-such-command")
	if code != 1 || !strings.HasPrefix(stderr, `ERROR: unknown command "no-such-command"`) {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
}

// A command that fails before it moved a byte prints its error and no
// summary of zero bytes.
func TestNoSummaryWhenNothingRan(t *testing.T) {
	prefix := t.TempDir()
	// A stopped server: nothing listens on the socket directory and port,
	// nor on localhost at that port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	sockDir := t.TempDir()
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{"WALG_FILE_PREFIX": prefix, "PGHOST": sockDir, "PGPORT": port}, []string{"backup-push", sockDir}},
		{map[string]string{"WALG_FILE_PREFIX": prefix}, []string{"backup-fetch", filepath.Join(t.TempDir(), "dest"), "LATEST"}},
		{map[string]string{"WALG_FILE_PREFIX": prefix}, []string{"wal-push", filepath.Join(sockDir, "000000010000000000000001")}},
	} {
		_, stderr, code := runMain(t, tc.env, tc.args...)
		if code != 1 || !strings.Contains(stderr, "ERROR: ") {
			t.Errorf("tusk %s: exit %d, %q; want a failure", strings.Join(tc.args, " "), code, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if strings.Contains(line, "0 B in") || strings.Contains(line, tc.args[0]+": 0 B") {
				t.Errorf("tusk %s printed a summary of nothing: %q", tc.args[0], line)
			}
		}
	}
}

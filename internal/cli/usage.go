package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// UsageError is a command line a command cannot take (arguments, flags).
// run prints it as one "ERROR:" line followed by the command's usage line,
// so the person who typed it sees what the command expects.
type UsageError struct {
	cmd *cobra.Command
	err error
}

func (e *UsageError) Error() string { return CommandName(e.cmd) + ": " + e.err.Error() }
func (e *UsageError) Unwrap() error { return e.err }

// usageLine is what run prints under a UsageError: for a command made of
// subcommands (delete), their names.
func (e *UsageError) usageLine() string {
	if !e.cmd.HasAvailableSubCommands() {
		return "Usage: " + e.cmd.UseLine()
	}
	var subs []string
	for _, c := range e.cmd.Commands() {
		if c.IsAvailableCommand() && c.Name() != "help" {
			subs = append(subs, c.Name())
		}
	}
	return "Usage: " + e.cmd.CommandPath() + " " + strings.Join(subs, "|") + " ..."
}

// commandName is the command's path without the program name: "wal-push",
// "delete retain".
func CommandName(cmd *cobra.Command) string {
	path := cmd.CommandPath()
	if i := strings.IndexByte(path, ' '); i >= 0 {
		return path[i+1:]
	}
	return path
}

// argCount accepts between lo and hi positional arguments (hi < 0: no
// upper bound), with a message that counts in words rather than Cobra's
// "accepts 1 arg(s), received 0". Commands use it instead of Cobra's
// validators; markUsageErrors adds the usage line.
func ArgCount(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		n := len(args)
		if n >= lo && (hi < 0 || n <= hi) {
			return nil
		}
		if hi == 0 && cmd.HasSubCommands() {
			return fmt.Errorf("unknown command %q", args[0])
		}
		var want string
		switch {
		case hi == 0:
			want = "takes no arguments"
		case lo == hi:
			want = "takes " + plural(lo, "argument")
		case hi < 0:
			want = "takes at least " + plural(lo, "argument")
		case lo == 0:
			want = "takes at most " + plural(hi, "argument")
		default:
			want = fmt.Sprintf("takes %d to %d arguments", lo, hi)
		}
		return fmt.Errorf("%s, got %d", want, n)
	}
}

func ExactArgs(n int) cobra.PositionalArgs { return ArgCount(n, n) }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// markUsageErrors makes every argument and flag error of the tree under
// root a UsageError.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &UsageError{cmd: cmd, err: err}
	})
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		if check := cmd.Args; check != nil {
			cmd.Args = func(c *cobra.Command, args []string) error {
				if err := check(c, args); err != nil {
					return &UsageError{cmd: c, err: err}
				}
				return nil
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

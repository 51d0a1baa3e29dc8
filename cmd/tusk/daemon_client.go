package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/daemon"
)

// walgClientName is WAL-G's separate client binary: tusk invoked under this
// name (a symlink) behaves exactly like it, so archive_commands keep working.
const walgClientName = "walg-daemon-client"

func newDaemonClientCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "daemon-client SOCKET_PATH wal-push WAL_NAME | wal-fetch WAL_NAME DESTINATION [-timeout D] [-connection-timeout D]",
		Short: "Send one wal-push or wal-fetch to a running daemon (WAL-G's walg-daemon-client)",
		Long: `Sends one request to a tusk or WAL-G daemon and exits with its answer:
0 done, 74 the file is not archived (wal-fetch), 1 any other failure.
As with WAL-G's walg-daemon-client, -timeout (default 60s) and
-connection-timeout (default 5s) come after the command's arguments.
A tusk binary invoked as walg-daemon-client behaves like this command.`,
		DisableFlagParsing: true,
		// The client needs no storage configuration.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDaemonClient(cmd.Context(), args, cmd.OutOrStdout())
		},
	}
}

// runDaemonClient implements walg-daemon-client's command line:
// SOCKET COMMAND ARGS... [-timeout D] [-connection-timeout D].
func runDaemonClient(ctx context.Context, args []string, stdout io.Writer) error {
	for _, a := range args {
		if a == "--version" || a == "-version" {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", walgClientName, version, gitCommit, buildDate)
			return nil
		}
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprintln(stdout, "usage: "+walgClientName+" SOCKET_PATH wal-push WAL_NAME | wal-fetch WAL_NAME DESTINATION [-timeout 60s] [-connection-timeout 5s]")
			return nil
		}
	}
	// Positional arguments first, then Go flag syntax, as WAL-G's client.
	var positional []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = append(positional, args[0]), args[1:]
	}
	fs := flag.NewFlagSet(walgClientName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 60*time.Second, "")
	connTimeout := fs.Duration("connection-timeout", 5*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", walgClientName, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments after flags: %q", walgClientName, fs.Args())
	}
	if len(positional) < 2 {
		return errors.New("usage: " + walgClientName + " SOCKET_PATH wal-push WAL_NAME | wal-fetch WAL_NAME DESTINATION")
	}
	socketPath, command, rest := positional[0], strings.ToLower(positional[1]), positional[2:]
	var typ byte
	switch {
	case command == "wal-push" && len(rest) == 1:
		typ = daemon.TypeWalPush
	case command == "wal-fetch" && len(rest) == 2:
		typ = daemon.TypeWalFetch
	default:
		return fmt.Errorf("%s: expected 'wal-push WAL_NAME' or 'wal-fetch WAL_NAME DESTINATION', got %q", walgClientName, positional[1:])
	}
	reply, err := daemon.Request(ctx, socketPath, typ, rest, *connTimeout, *timeout)
	if err != nil {
		return err
	}
	switch reply {
	case daemon.ReplyOK:
		return nil
	case daemon.ReplyNotFound:
		fmt.Fprintf(stdout, "WAL file %s is not archived\n", rest[0])
		return &exitError{code: exitNotFound, err: fmt.Errorf("%s: %s not found in storage", command, rest[0])}
	default:
		return fmt.Errorf("%s %s failed in the daemon (reply %q); see the daemon's log", command, rest[0], reply)
	}
}

// runAsWALGClient is main's path when invoked as walg-daemon-client.
func runAsWALGClient(ctx context.Context, args []string) int {
	if err := runDaemonClient(ctx, args, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "ERROR: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/daemon/clientcmd"
)

// daemonClientArgs returns the client's arguments when tusk was started as
// WAL-G's client (a symlink named walg-daemon-client) or as `tusk
// daemon-client`: main then runs the client before anything else is set
// up (no configuration, command tree or storage), since archive_command
// starts one client per WAL segment.
func daemonClientArgs(args []string) ([]string, bool) {
	if filepath.Base(args[0]) == clientcmd.Name {
		return args[1:], true
	}
	if len(args) >= 2 && args[1] == "daemon-client" {
		return args[2:], true
	}
	return nil, false
}

func runDaemonClient(ctx context.Context, args []string) int {
	return clientcmd.Run(ctx, args, os.Stdout, os.Stderr, versionLine())
}

func versionLine() string { return fmt.Sprintf("%s\t%s\t%s", version, gitCommit, buildDate) }

// newDaemonClientCommand is the client's entry in the command tree, for
// help and for global flags given before it (main takes the direct path
// otherwise).
func newDaemonClientCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "daemon-client " + clientcmd.Usage,
		Short: "Send one wal-push or wal-fetch to a running daemon (WAL-G's walg-daemon-client)",
		Long: `Sends one request to a tusk or WAL-G daemon and exits with its answer:
0 done, 74 the file is not archived (wal-fetch), 1 any other failure.
As with WAL-G's walg-daemon-client, -timeout (default 60s) and
-connection-timeout (default 5s) come after the command's arguments.
A tusk binary invoked as walg-daemon-client behaves like this command, and
the small tusk-daemon-client binary is this command alone.`,
		DisableFlagParsing: true,
		// The client needs no storage configuration.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			err := clientcmd.Exec(cmd.Context(), args, cmd.OutOrStdout(), versionLine())
			var ee *clientcmd.ExitError
			if errors.As(err, &ee) {
				return &cli.ExitError{Code: ee.Code, Err: ee.Err}
			}
			return err
		},
	}
}

package main

import (
	"fmt"
	"strconv"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/backup/restore"
)

func newCatchupReceiveCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "catchup-receive PGDATA PORT",
		Short: "Receive a catch-up from catchup-send onto a stopped standby",
		Long: `Waits on TCP port PORT (every interface, as WAL-G listens) for one
catchup-send (tusk's or WAL-G's) and applies what it sends to the stopped
standby whose data directory is PGDATA. It first tells the sender the
standby's system identifier, timeline and REDO point and its files with
their modification times. Whole files are written under a temporary name
and renamed into place, page increments are written into the files,
removed files are deleted; names from the sender are checked and written
only inside PGDATA and the tablespaces its pg_tblspc links name, never
through a symlink. backup_label, tablespace_map and pg_control come last,
pg_control once everything else is synced, so a catch-up cut off midway
leaves the standby's own pg_control and no backup_label: run it again.
Keep standby.signal and primary_conninfo; on start the standby recovers from
the primary's backup and streams from it again. Encryption settings make
it refuse, as for catchup-send.`,
		Args: cli.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := strconv.ParseUint(args[1], 10, 16)
			if err != nil {
				return fmt.Errorf("port %q: want a TCP port number", args[1])
			}
			if err := catchupUnencrypted(a); err != nil {
				return err
			}
			res, err := restore.CatchupReceive(cmd.Context(), restore.ReceiveOptions{
				DataDir: args[0],
				Listen:  fmt.Sprintf(":%d", port),
				NoFsync: a.Cfg.TarDisableFsync(),
				Log:     a.Log,
			})
			if err != nil {
				return fmt.Errorf("catchup-receive into %s: %w", args[0], err)
			}
			a.Log.Info("catchup-receive: done", "sender", res.Sender, "full_files", res.Full,
				"increments", res.Increments, "deleted", res.Deleted, "bytes", res.Bytes)
			return nil
		},
	}
}

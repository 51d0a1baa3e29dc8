package main

import (
	"github.com/spf13/cobra"
	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/tusk-pg/tusk/internal/restorewindow"
	"github.com/tusk-pg/tusk/internal/walindex"
)

func newRestoreWindowCommand(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "restore-window",
		Short: "Show what a point-in-time restore can reach: ranges, gaps, restore points",
		Long: `Shows, per timeline, the ranges a point-in-time restore can reach (from a
backup's consistency point to the last complete WAL record before the next
gap, as LSN and time), the backups each range starts from, the gaps and
damaged WAL that end ranges, and the named restore points
(pg_create_restore_point) with their LSN and time.

Times and restore points are read from the WAL records in storage, from the
earliest backup's first segment on, one segment at a time. A range's start
time is the earliest --target-time that works from its backups; a
--target-time must be earlier than its end time, since PostgreSQL stops only
at a commit after the target. A timeline's ranges include its ancestors' WAL
up to where it branched (recovery_target_timeline).

--json prints the same as one JSON document. The exit status is 0 whenever
the report could be made, whatever it shows.`,
		Args: cli.ArgCount(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			w, err := a.NewWALReader(ctx)
			if err != nil {
				return err
			}
			segSize := a.Cfg.WalSegmentSize()
			ix, err := walindex.Build(ctx, w.Store, segSize)
			if err != nil {
				return err
			}
			rep, err := restorewindow.Compute(ctx, w.Store, ix, w.Restorer, restorewindow.Options{SegmentSize: segSize, Log: a.Log})
			if err != nil {
				return err
			}
			if asJSON {
				return restorewindow.WriteJSON(cmd.OutOrStdout(), rep)
			}
			return restorewindow.WriteText(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

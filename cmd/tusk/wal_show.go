package main

import (
	"github.com/spf13/cobra"
	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/walcheck"
	"github.com/tusk-pg/tusk/internal/walindex"
)

func newWalShowCommand(a *app) *cobra.Command {
	var detailedJSON, withoutBackups bool
	cmd := &cobra.Command{
		Use:   "wal-show",
		Short: "Show the archived WAL segments by timeline, with gaps and backups",
		Long: `Lists wal_005/ in storage and prints one row per timeline: its parent timeline
and switch point (from the timeline's .history file; 0 when there is none), the
first and last archived segment, how many segments that range spans and how
many are archived, and the status: OK, or LOST_SEGMENTS when some are missing
in between. Unless --without-backups, it counts the backups whose WAL from
start to finish lies within each timeline's range.

--detailed-json prints WAL-G's JSON instead: the same fields, every missing
segment by name, and each backup with its metadata (as backup-list --detail
--json shows it).`,
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
			var backups []backup.Detail
			if !withoutBackups {
				backups, err = walcheck.LoadBackups(ctx, w.Store)
				if err != nil {
					return err
				}
				if len(backups) == 0 {
					a.Log.Info("No backups found in storage.")
				}
			}
			tls, err := walcheck.Show(ctx, ix, w.Restorer, backups)
			if err != nil {
				return err
			}
			if detailedJSON {
				return walcheck.WriteShowJSON(cmd.OutOrStdout(), tls, segSize)
			}
			return walcheck.WriteShowTable(cmd.OutOrStdout(), tls, segSize, !withoutBackups)
		},
	}
	cmd.Flags().BoolVar(&detailedJSON, "detailed-json", false, "print JSON with every missing segment and each backup's metadata")
	cmd.Flags().BoolVar(&withoutBackups, "without-backups", false, "do not look up the backups of each timeline")
	return cmd
}

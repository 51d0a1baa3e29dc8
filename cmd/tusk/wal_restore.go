package main

import (
	"strings"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/walrestore"
)

func newWalRestoreCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-restore TARGET_PGDATA SOURCE_PGDATA",
		Short: "Fetch the archived WAL a source cluster lacks before pg_rewind",
		Long: `Prepares pg_rewind of TARGET_PGDATA (a former primary) from SOURCE_PGDATA (the
cluster that replaced it), both local and stopped, as WAL-G's wal-restore
does: they must have the same system identifier and their latest checkpoints
different timelines. From pg_control and the timeline history files in
pg_wal it finds where the two diverged, lists the source's WAL segments from
there to its end (on each of its timelines) that its pg_wal lacks, and
fetches each from storage into the source's pg_wal, as wal-fetch writes
files. pg_rewind then copies them to the target. A segment not in storage
is reported and skipped, as WAL-G does; other errors stop it (exit 1).`,
		Args: cli.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			segSize := a.Cfg.WalSegmentSize()
			target, err := walrestore.Inspect(args[0], segSize)
			if err != nil {
				return err
			}
			source, err := walrestore.Inspect(args[1], segSize)
			if err != nil {
				return err
			}
			names, err := walrestore.Missing(target, source, segSize)
			if err != nil {
				return err
			}
			if len(names) == 0 {
				a.Log.Info("wal-restore: no WAL files to restore")
				return nil
			}
			w, err := a.NewWALReader(ctx)
			if err != nil {
				return err
			}
			a.Log.Info("wal-restore: WAL files to restore", "count", len(names), "files", strings.Join(names, ","))
			fetched, absent, err := walrestore.Restore(ctx, w.Restorer, source.WALDir, names)
			for _, name := range absent {
				a.Log.Warn("wal-restore: not in storage", "file", name)
			}
			if err != nil {
				return err
			}
			a.Log.Info("wal-restore: done", "fetched", len(fetched), "absent", len(absent), "dir", source.WALDir)
			return nil
		},
	}
}

package cli

import (
	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/wal"
)

func newWalPrefetchCommand(a *App) *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:    "wal-prefetch WAL_NAME PREFETCH_LOCATION",
		Short:  "Download the segments after WAL_NAME ahead of replay (started by wal-fetch)",
		Hidden: true,
		Args:   ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			w, err := a.NewWAL(ctx, UseMerge, target)
			if err != nil {
				return err
			}
			dir := wal.PrefetchDir(a.Cfg.PrefetchDir(), args[1])
			return w.Restorer.Prefetch(ctx, args[0], dir, a.Cfg.DownloadConcurrency())
		},
	}
	AddTargetStorageFlag(cmd, &target)
	return cmd
}

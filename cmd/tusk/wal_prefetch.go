package main

import (
	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/wal"
)

func newWalPrefetchCommand(a *app) *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:    "wal-prefetch WAL_NAME PREFETCH_LOCATION",
		Short:  "Download the segments after WAL_NAME ahead of replay (started by wal-fetch)",
		Hidden: true,
		Args:   exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			w, err := a.newWAL(ctx, useMerge, target)
			if err != nil {
				return err
			}
			dir := wal.PrefetchDir(a.cfg.PrefetchDir(), args[1])
			return w.restorer.Prefetch(ctx, args[0], dir, a.cfg.DownloadConcurrency())
		},
	}
	addTargetStorageFlag(cmd, &target)
	return cmd
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/wal"
)

func newWalPushCommand(a *app) *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:   "wal-push WAL_FILE_PATH",
		Short: "Archive one WAL file (archive_command = 'tusk wal-push %p')",
		Long: `Compresses, encrypts (when a key is configured) and uploads one WAL file to
wal_005/ in storage. It exits 0 only once the object is durably stored.

With WALG_UPLOAD_CONCURRENCY > 1 it also uploads the following .ready files in
the background, as WAL-G does, so PostgreSQL's later calls for them return at
once. A segment must be exactly WALG_PG_WAL_SIZE MiB. With
WALG_PREVENT_WAL_OVERWRITE (always for .history files) an existing object is
compared first: equal content succeeds, different content fails, and the
object is created only if its name is still free (atomically on file storage
and on S3 servers that honour If-None-Match).

With WALG_FAILOVER_STORAGES it uploads to the first alive storage (the primary
if alive, else the failovers by name), or to --target-storage.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			w, err := a.newWAL(ctx, useWrite, target)
			if err != nil {
				return err
			}
			path := args[0]
			return w.archiver.Push(ctx, path, wal.PushOptions{
				Concurrency:     a.cfg.UploadConcurrency(),
				BackgroundLimit: a.cfg.TotalBGUploadedLimit(),
				ReadyRename:     a.cfg.PGReadyRename(),
				MarkerDir:       wal.MarkerDir(a.cfg.PGData(), path),
			})
		},
	}
	addTargetStorageFlag(cmd, &target)
	return cmd
}

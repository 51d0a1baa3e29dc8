package cli

import (
	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/wal"
)

func newWalPushCommand(a *App) *cobra.Command {
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
		Args: ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			w, err := a.NewWAL(ctx, UseWrite, target)
			if err != nil {
				return err
			}
			path := args[0]
			return w.Archiver.Push(ctx, path, wal.PushOptions{
				Concurrency:     a.Cfg.UploadConcurrency(),
				BackgroundLimit: a.Cfg.TotalBGUploadedLimit(),
				ReadyRename:     a.Cfg.PGReadyRename(),
				MarkerDir:       wal.MarkerDir(a.Cfg.PGData(), path),
			})
		},
	}
	AddTargetStorageFlag(cmd, &target)
	return cmd
}

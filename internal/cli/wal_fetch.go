package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// Exit statuses of wal-fetch. PostgreSQL treats any status up to 125 as
// "file not available" and, without a recovery target, ends recovery there;
// above 125 it aborts recovery instead.
const (
	exitNotFound     = 74  // EX_IOERR, as WAL-G: the file is not archived
	exitAbortRecover = 128 // TUSK_FETCH_ABORT_ON_STORAGE_ERROR: stop recovery loudly
)

func newWalFetchCommand(a *App) *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:   "wal-fetch WAL_NAME DESTINATION",
		Short: "Restore one archived WAL file (restore_command = 'tusk wal-fetch %f %p')",
		Long: `Downloads, decrypts and decompresses one archived WAL file into DESTINATION.
The file appears there only complete and fsynced; a failed fetch leaves nothing.

A segment must decode to exactly WALG_PG_WAL_SIZE MiB (other WAL files to at
most that), checked while it streams.

Exit status: 0 done; 74 the file is not in storage (PostgreSQL then knows the
archive has no more WAL); 1 any other error, after retrying transient storage
errors (WALG_DOWNLOAD_FILE_RETRIES times; the whole fetch ends within
TUSK_FETCH_RETRY_TIMEOUT). On SIGTERM or SIGINT it cleans up and ends as
killed by that signal.

Caution: PostgreSQL treats exit statuses up to 125 alike, as "not available".
In archive recovery without a target, that ends recovery and promotes, so a
storage outage would silently drop the newest transactions. With
TUSK_FETCH_ABORT_ON_STORAGE_ERROR=true, any failure other than "not found" exits
128 instead, and PostgreSQL stops recovery (restart it when storage is back).

After a fetch, the next WALG_DOWNLOAD_CONCURRENCY segments are prefetched in the
background into <destination dir>/.wal-g/prefetch (or WALG_PREFETCH_DIR).

With WALG_FAILOVER_STORAGES each file is read from the first alive storage that
holds it, or from --target-storage alone.`,
		Args: ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, dest := args[0], args[1]
			w, err := a.NewWAL(ctx, UseMerge, target)
			if err != nil {
				return a.fetchExit(err)
			}
			err = w.Restorer.Restore(ctx, name, dest, wal.PrefetchOptions{
				Dir:   wal.PrefetchDir(a.Cfg.PrefetchDir(), dest),
				Count: a.Cfg.DownloadConcurrency(),
				Start: func(name string) { a.spawnPrefetch(name, dest, target) },
			})
			if err != nil {
				return a.fetchExit(err)
			}
			a.Log.Info("wal-fetch: restored", "file", name, "destination", dest)
			return nil
		},
	}
	AddTargetStorageFlag(cmd, &target)
	return cmd
}

// addTargetStorageFlag adds WAL-G's --target-storage.
func AddTargetStorageFlag(cmd *cobra.Command, target *string) {
	cmd.Flags().StringVar(target, "target-storage", "",
		`name of the storage to run the command on: "default" for the primary, or a WALG_FAILOVER_STORAGES name (default: WALG_TARGET_STORAGE, else WAL-G's choice among the alive storages)`)
}

func (a *App) fetchExit(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return &ExitError{Code: exitNotFound, Err: err}
	}
	if a.Cfg != nil && a.Cfg.FetchAbortOnStorageError() {
		return &ExitError{Code: exitAbortRecover, Err: fmt.Errorf("%w (exit %d: recovery must stop, not end early)", err, exitAbortRecover)}
	}
	return err
}

// spawnPrefetch starts `tusk wal-prefetch` detached, with the same
// configuration, so replay does not wait for the following downloads.
func (a *App) spawnPrefetch(name, dest, target string) {
	self, err := os.Executable()
	if err != nil {
		return
	}
	args := []string{"wal-prefetch", name, dest}
	if f := a.Cfg.ConfigFileUsed(); f != "" {
		args = append(args, "--config", f)
	}
	if a.StoragePrefix != "" {
		args = append(args, "--walg-storage-prefix", a.StoragePrefix)
	}
	if target != "" {
		args = append(args, "--target-storage", target)
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		a.Log.Debug("cannot start prefetch", "error", err)
		return
	}
	_ = cmd.Process.Release()
}

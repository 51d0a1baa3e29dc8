package main

import (
	"fmt"
	"strconv"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/backup/restore"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
)

// catchupPrefix is WAL-G's folder of catch-up backups (utility.CatchupPath).
const catchupPrefix = "catchup_005/"

// catchupStore shows catchup_005/ where the backup code reads and writes
// basebackups_005/: a catch-up backup has a base backup's layout.
func catchupStore(s storage.Storage) storage.Storage {
	return storage.Remap(s, backup.Prefix, catchupPrefix)
}

// parseFromLSN reads --from-lsn: WAL-G takes a decimal integer; tusk also
// takes PostgreSQL's X/Y form.
func parseFromLSN(s string) (pg.LSN, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			return 0, fmt.Errorf("--from-lsn must be after 0/0")
		}
		return pg.LSN(n), nil
	}
	l, err := pg.ParseLSN(s)
	if err != nil || l == 0 {
		return 0, fmt.Errorf("--from-lsn %q: want an LSN, as a decimal number (WAL-G) or X/Y", s)
	}
	return l, nil
}

func newCatchupPushCommand(a *app) *cobra.Command {
	var from string
	var fl backupPushFlags
	cmd := &cobra.Command{
		Use:   "catchup-push PGDATA --from-lsn LSN",
		Short: "Take a catch-up backup of a primary for a standby that fell behind",
		Long: `Takes a backup of the running primary whose data directory is PGDATA, as
backup-push does, but stores it under catchup_005/ (WAL-G's catch-up folder)
and as a delta from LSN rather than from a stored backup: every relation file
is stored as the pages whose LSN is at or after LSN, other files whole, and
pg_hba.conf, postgresql.conf and postgresql.auto.conf are left out so the
standby keeps its own. LSN is where the standby stands: the REDO location of
its latest checkpoint (pg_controldata "Latest checkpoint's REDO location", or
SELECT redo_lsn FROM pg_control_checkpoint() on the standby), a decimal
number as WAL-G takes it or X/Y. Apply it with catchup-fetch.`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := parseFromLSN(from)
			if err != nil {
				return err
			}
			fl.catchupFrom = l
			return a.backupPush(cmd, args, &fl)
		},
	}
	cmd.Flags().StringVar(&from, "from-lsn", "", "the standby's LSN: the catch-up holds what changed from there (required)")
	_ = cmd.MarkFlagRequired("from-lsn")
	return cmd
}

func newCatchupFetchCommand(a *app) *cobra.Command {
	var useNewUnwrap bool
	cmd := &cobra.Command{
		Use:   "catchup-fetch PGDATA BACKUP_NAME",
		Short: "Apply a catch-up backup onto a stopped standby",
		Long: `Applies the catch-up backup BACKUP_NAME (from catchup-list, or LATEST) onto
the stopped standby whose data directory is PGDATA, as WAL-G does: whole
files replace the standby's, page increments are written into its files (a
file it lacks is created from the increment), tablespaces are reached
through the standby's own pg_tblspc links, and backup_label and pg_control
come last. Files the primary dropped stay behind. Keep standby.signal and
primary_conninfo; on start the standby recovers from the catch-up's
checkpoint and streams from the primary again.`,
		Args: cli.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if useNewUnwrap {
				a.Log.Info("catchup-fetch: --use-new-unwrap has no effect: tusk has one way to apply a catch-up")
			}
			cr, err := a.Crypter()
			if err != nil {
				return err
			}
			store, err := a.OpenStorage(ctx)
			if err != nil {
				return err
			}
			store = catchupStore(store)
			info, err := backup.Find(ctx, store, args[1])
			if err != nil {
				return fmt.Errorf("catch-up backup: %w", err)
			}
			rep, log := a.startProgress("catchup-fetch")
			defer rep.Stop()
			rep.SetTotal(restoreSize(ctx, store, info.Name))
			res, err := a.fetcher(store, cr, log).Fetch(ctx, info.Name, args[0], restore.FetchOptions{Catchup: true, Progress: rep})
			if err != nil {
				rep.Stop()
				return fmt.Errorf("catchup-fetch %s into %s: %w", info.Name, args[0], err)
			}
			rep.Finish()
			log.Info("catchup-fetch: applied", "backup", info.Name, "destination", args[0],
				"tars", res.Tars, "files", res.Files, "bytes", res.Bytes)
			return nil
		},
	}
	cmd.Flags().BoolVar(&useNewUnwrap, "use-new-unwrap", false, "accepted for WAL-G compatibility; no effect")
	return cmd
}

func newCatchupListCommand(a *app) *cobra.Command {
	return newListCommand(a, &cobra.Command{
		Use:   "catchup-list",
		Short: "Print the list of catch-up backups in storage",
		Long: `Lists the catch-up backups (catchup_005/) as backup-list lists base backups:
the same columns, --detail, --json and --pretty.`,
	}, catchupStore)
}

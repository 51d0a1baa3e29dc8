package main

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/storage/multi"
	"github.com/tusk-pg/tusk/internal/storecopy"
	"github.com/tusk-pg/tusk/internal/wal"
)

// transferFlags are WAL-G's st transfer flags.
type transferFlags struct {
	source             string
	overwrite          bool
	preserve           bool
	failFast           bool
	concurrency        int
	maxFiles           uint
	appearanceChecks   uint
	appearanceInterval time.Duration
	maxBackups         uint
}

func newStTransferCommand(a *app, st *stFlags) *cobra.Command {
	fl := &transferFlags{}
	cmd := &cobra.Command{
		Use:   "transfer",
		Short: "Move objects from one storage to another (failover storages)",
		Long: `Moves objects from the storage --source names to the one --target names
("default" is the primary, other names are WALG_FAILOVER_STORAGES entries),
usually to bring back to the primary what was archived to a failover storage
while the primary was down. Each object is copied (streamed), checked to have
appeared in the target, then deleted from the source (kept with --preserve),
so at every moment it is in one storage or the other. Objects the target
holds already are neither overwritten nor deleted from the source unless
--overwrite is given. Failures are logged and the others go on, unless
--fail-fast.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&fl.source, "source", "s", "", `storage to move files from ("default" for the primary)`)
	pf.BoolVarP(&fl.overwrite, "overwrite", "o", false, "overwrite objects the target holds, and remove them from the source")
	pf.BoolVarP(&fl.preserve, "preserve", "p", false, "keep the objects in the source storage: copy them only")
	pf.BoolVar(&fl.failFast, "fail-fast", false, "stop at the first object that fails")
	pf.IntVarP(&fl.concurrency, "concurrency", "c", 10, "objects moved at once (1: one at a time)")
	pf.UintVarP(&fl.maxFiles, "max-files", "m", math.MaxInt, "move at most this many objects in this run")
	pf.UintVar(&fl.appearanceChecks, "appearance-checks", 3, "times to check that a copied object appeared in the target (0: do not check)")
	pf.DurationVar(&fl.appearanceInterval, "appearance-checks-interval", time.Second, "least time between two appearance checks")

	run := func(cmd *cobra.Command, do func(c *storecopy.Copier, o storecopy.TransferOptions) error) error {
		ctx := cmd.Context()
		switch {
		case fl.source == "":
			return errors.New("--source: the storage to move files from must be given")
		case fl.source == multi.All || st.target == multi.All:
			return fmt.Errorf("st transfer: name one storage, not %q, in --source and --target", multi.All)
		case fl.source == st.target:
			return fmt.Errorf("st transfer: --source and --target are both %q", st.target)
		case fl.concurrency < 1:
			return fmt.Errorf("--concurrency %d: must be at least 1", fl.concurrency)
		case st.glob:
			return errors.New("--glob is not supported by tusk yet: give exact paths")
		}
		src, err := a.NamedStorage(ctx, fl.source)
		if err != nil {
			return fmt.Errorf("--source: %w", err)
		}
		dst, err := a.NamedStorage(ctx, st.target)
		if err != nil {
			return fmt.Errorf("--target: %w", err)
		}
		c := &storecopy.Copier{
			From: src, To: dst, Workers: fl.concurrency,
			Overwrite: fl.overwrite, KeepExisting: !fl.overwrite,
			Limit: int64(min(fl.maxFiles, math.MaxInt64)), KeepGoing: !fl.failFast, Log: a.Log,
		}
		err = do(c, storecopy.TransferOptions{
			Preserve: fl.preserve, AppearanceChecks: fl.appearanceChecks, AppearanceInterval: fl.appearanceInterval,
		})
		s := c.Stats()
		if err != nil {
			return fmt.Errorf("transfer from %q to %q (%d objects moved): %w", fl.source, st.target, s.Copied, err)
		}
		a.Log.Info("transfer done", "moved", s.Copied, "bytes", s.Bytes, "skipped", s.Skipped)
		return nil
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "files PREFIX --source SOURCE [--target TARGET]",
			Short: "Move every object under PREFIX",
			Args:  cli.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return run(cmd, func(c *storecopy.Copier, o storecopy.TransferOptions) error {
					return c.TransferFiles(cmd.Context(), args[0], o)
				})
			},
		},
		&cobra.Command{
			Use:   "pg-wals --source SOURCE [--target TARGET]",
			Short: "Move every archived WAL file (" + wal.Folder + ")",
			Args:  cli.ExactArgs(0),
			RunE: func(cmd *cobra.Command, args []string) error {
				return run(cmd, func(c *storecopy.Copier, o storecopy.TransferOptions) error {
					return c.TransferFiles(cmd.Context(), wal.Folder, o)
				})
			},
		},
	)
	backups := &cobra.Command{
		Use:   "backups [BACKUP_NAME] --source SOURCE [--target TARGET]",
		Short: "Move every backup, or the one named, each whole",
		Long: `Moves backups: their files first, their stop sentinel once the files have
appeared in the target, so the target never lists an incomplete backup; the
source loses the sentinel first, then the files, only once all of the backup
reached the target.`,
		Args: cli.ArgCount(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return run(cmd, func(c *storecopy.Copier, o storecopy.TransferOptions) error {
				return c.TransferBackups(cmd.Context(), name, int(min(fl.maxBackups, math.MaxInt32)), o)
			})
		},
	}
	backups.Flags().UintVar(&fl.maxBackups, "max-backups", math.MaxInt, "move at most this many backups in this run (ignored with BACKUP_NAME)")
	cmd.AddCommand(backups)
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/config"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storecopy"
)

func newCopyCommand(a *app) *cobra.Command {
	var from, to, name string
	var withHistory, showPlan, planJSON bool
	cmd := &cobra.Command{
		Use:   "copy --from FROM_CONFIG --to TO_CONFIG",
		Short: "copy specific or all backups",
		Long: `Copies backups from one storage to another without transforming them, as
WAL-G's copy does. FROM_CONFIG and TO_CONFIG are config files (WAL-G's
format) naming each storage; only the file is read for them, not the
environment.

Every backup is copied, or with --backup-name one (LATEST: the newest),
each with the backups its delta chain needs and the WAL it needs to be
restored: from its start to its end, or with --with-history through the
latest archived when the copy starts. Objects are copied byte for byte
under the same keys; one the target holds with the same size is skipped,
one with another size stops the copy. Before anything is written the
source is checked: each backup's chain complete, its WAL present without a
gap. Backup data and WAL are written first, then metadata.json, then the
sentinels, a delta's after its base's: a copy stopped midway (SIGTERM, a
failure) leaves no backup that backup-list shows on the target, and
running it again resumes it.

4 objects are copied at once, streamed: --memory-plan prints the bound.`,
		Args: cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, dst, err := a.copyEnds(from, to, planJSON, showPlan)
			if err != nil {
				return err
			}
			if done, err := showCopyPlan(cmd, copyMemoryPlan(src, dst, memplan.Copy{}), showPlan, planJSON); done {
				return err
			}
			return a.runCopy(ctx, src, dst, false, nil, func(c *storecopy.Copier) error {
				return c.Backups(ctx, storecopy.BackupOptions{Backup: name, WithHistory: withHistory, SegmentSize: a.Cfg.WalSegmentSize()})
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "backup-name", "b", "", "Copy specific backup")
	f.StringVarP(&from, "from", "f", "", "Storage config from where should copy backup")
	f.StringVarP(&to, "to", "t", "", "Storage config to where should copy backup")
	f.BoolVarP(&withHistory, "with-history", "w", false, "Synchronize WAL from the backup recovery point through the latest continuous archive")
	copyPlanFlags(cmd, &showPlan, &planJSON)
	return cmd
}

// configuredStorage is a storage named by a config file (copy's --from and
// --to), read and checked, not yet connected.
type configuredStorage struct {
	what string // the flag that named it
	cfg  *config.Config
	conf storage.Configured
}

// storageFromConfig reads the config file path, and only it (WAL-G's
// StorageFromConfig reads no environment), for the storage it selects.
func (a *app) storageFromConfig(flag, path string) (*configuredStorage, error) {
	if path == "" {
		return nil, fmt.Errorf("%s: a config file is required", flag)
	}
	cfg, warnings, err := config.Load(config.LoadOptions{ConfigFile: path, ConfigFileFlag: flag, Backends: a.Backends})
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		a.Log.Warn(w, "config", path)
	}
	conf, err := cfg.Storage()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return &configuredStorage{what: flag, cfg: cfg, conf: conf}, nil
}

func (s *configuredStorage) open(ctx context.Context, a *app) (storage.Storage, error) {
	st, err := storage.Open(ctx, s.conf, storage.Wrappers{NetworkRateLimit: s.cfg.NetworkRateLimit()}, a.Log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.what, err)
	}
	return st, nil
}

// crypter is the encryption its config file sets, or nil.
func (s *configuredStorage) crypter(ctx context.Context) (crypt.Crypter, error) {
	cr, err := crypt.FromSettings(ctx, s.cfg.Crypt())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.what, err)
	}
	return cr, nil
}

// copyPlanFlags adds --memory-plan and --json, and makes --from and --to
// required.
func copyPlanFlags(cmd *cobra.Command, show, asJSON *bool) {
	cmd.Flags().BoolVar(show, "memory-plan", false, "print the memory bound of this copy and exit")
	cmd.Flags().BoolVar(asJSON, "json", false, "with --memory-plan: print it as JSON")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
}

// copyEnds reads the config files of --from and --to.
func (a *app) copyEnds(from, to string, planJSON, showPlan bool) (src, dst *configuredStorage, err error) {
	if planJSON && !showPlan {
		return nil, nil, errors.New("--json goes with --memory-plan")
	}
	if src, err = a.storageFromConfig("--from", from); err != nil {
		return nil, nil, err
	}
	if dst, err = a.storageFromConfig("--to", to); err != nil {
		return nil, nil, err
	}
	return src, dst, nil
}

// showCopyPlan prints the plan when asked (done: nothing else to do), and
// otherwise sets the collector's limit from it.
func showCopyPlan(cmd *cobra.Command, plan *memplan.Plan, show, asJSON bool) (done bool, err error) {
	switch {
	case show && asJSON:
		return true, plan.JSON(cmd.OutOrStdout())
	case show:
		return true, plan.Table(cmd.OutOrStdout())
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(plan.HeapLimit())
	}
	return false, nil
}

// copyMemoryPlan is the memory plan of a copy between the two storages.
func copyMemoryPlan(from, to *configuredStorage, c memplan.Copy) *memplan.Plan {
	c.Workers = storecopy.DefaultWorkers
	c.Batch = storecopy.BatchBytes
	return memplan.CopyPlan(from.conf.Memory, to.conf.Memory, c)
}

// runCopy connects both storages and runs do with a Copier between them.
// overwrite and tr are storecopy.Copier's Overwrite and Transform.
func (a *app) runCopy(ctx context.Context, from, to *configuredStorage, overwrite bool, tr storecopy.Transform, do func(*storecopy.Copier) error) error {
	src, err := from.open(ctx, a)
	if err != nil {
		return err
	}
	dst, err := to.open(ctx, a)
	if err != nil {
		return err
	}
	c := &storecopy.Copier{From: src, To: dst, Transform: tr, Overwrite: overwrite, Log: a.Log}
	err = do(c)
	st := c.Stats()
	if err != nil {
		return fmt.Errorf("copy from %s to %s (%d objects copied): %w", src, dst, st.Copied, err)
	}
	a.Log.Info("Success copy.", "copied", st.Copied, "bytes", st.Bytes, "skipped", st.Skipped)
	return nil
}

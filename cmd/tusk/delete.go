package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/retention"
)

// deleteFlags are the flags every delete form shares.
type deleteFlags struct {
	confirm         bool
	useSentinelTime bool
}

func newDeleteCommand(a *app) *cobra.Command {
	var df deleteFlags
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete old backups and WAL (a dry run unless --confirm)",
		Long: `Deletes backups and WAL with WAL-G's rules. Without --confirm nothing is
deleted: every object that would go is listed.

Permanent backups (backup-push --permanent, backup-mark) and the WAL they need
are kept by retain, before and garbage; everything refuses while they exist
unless FORCE; target deletes a permanent backup only when it is named.

A delete removes the backups' stop sentinels first, then their data, then the
WAL no kept backup needs: stopped at any point it leaves no listed backup
without its data, and running it again finishes.`,
		Args: cli.ArgCount(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.BoolVar(&df.confirm, "confirm", false, "delete (otherwise only list what would be deleted)")
	pf.BoolVar(&df.useSentinelTime, "use-sentinel-time", false, "order backups by their start time in metadata.json instead of their WAL position")

	run := func(a *app, cmd *cobra.Command, choose func(*retention.Repo) (*retention.Plan, error)) error {
		return runDelete(a, cmd, df, choose)
	}
	// WAL-G's garbage always orders by WAL position.
	runWALOrder := func(a *app, cmd *cobra.Command, choose func(*retention.Repo) (*retention.Plan, error)) error {
		f := df
		f.useSentinelTime = false
		return runDelete(a, cmd, f, choose)
	}
	cmd.AddCommand(
		newDeleteRetainCommand(a, run),
		newDeleteBeforeCommand(a, run),
		newDeleteEverythingCommand(a, run),
		newDeleteTargetCommand(a, run),
		newDeleteGarbageCommand(a, runWALOrder),
	)
	return cmd
}

type deleteRunner func(a *app, cmd *cobra.Command, choose func(*retention.Repo) (*retention.Plan, error)) error

func runDelete(a *app, cmd *cobra.Command, df deleteFlags, choose func(*retention.Repo) (*retention.Plan, error)) error {
	ctx := cmd.Context()
	// WAL-G deletes across every alive storage.
	store, err := a.OpenStorageFor(ctx, cli.UseUniteWrite, "")
	if err != nil {
		return err
	}
	repo, err := retention.Load(ctx, store, retention.Options{
		SegmentSize:     a.Cfg.WalSegmentSize(),
		UseSentinelTime: df.useSentinelTime,
		Confirm:         df.confirm,
		Log:             a.Log,
	})
	if err != nil {
		return err
	}
	plan, err := choose(repo)
	if errors.Is(err, retention.ErrNothingToDelete) {
		a.Log.Info("No backup found for deletion")
		return nil
	}
	if err != nil {
		return err
	}
	_, err = repo.Sweep(ctx, plan)
	return err
}

// modifierArgs splits "[MODIFIER] VALUE" as WAL-G's retain and before do.
func modifierArgs(args []string, allowed ...string) (retention.Modifier, string, error) {
	if len(args) == 1 {
		return retention.NoModifier, args[0], nil
	}
	if !slices.Contains(allowed, args[0]) {
		return 0, "", fmt.Errorf("expected to get one of modifiers: %v as first argument", allowed)
	}
	if args[0] == "FULL" {
		return retention.Full, args[1], nil
	}
	return retention.FindFull, args[1], nil
}

func newDeleteRetainCommand(a *app, run deleteRunner) *cobra.Command {
	var after string
	cmd := &cobra.Command{
		Use:   "retain [FULL|FIND_FULL] N",
		Short: "Keep the N newest backups, delete older backups and WAL",
		Example: `  retain 5                      keep 5 backups
  retain FULL 5                 keep 5 full backups and all deltas of them
  retain FIND_FULL 5            find the full backup the 5th needs and keep everything after it
  retain 5 --after 2019-12-12T12:12:12Z   keep 5 backups and every backup made after that time`,
		Args: cli.ArgCount(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mod, count, err := modifierArgs(args, "FULL", "FIND_FULL")
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(count)
			if err != nil {
				return fmt.Errorf("expected to get a number as retention count, but got: %q", count)
			}
			if n <= 0 {
				return fmt.Errorf("cannot retain less than one backup. Check out delete everything")
			}
			if t, ok := retention.ParseTime(after); ok && t.After(time.Now()) {
				return fmt.Errorf("cannot delete retain future date")
			}
			return run(a, cmd, func(r *retention.Repo) (*retention.Plan, error) { return r.Retain(mod, n, after) })
		},
	}
	cmd.Flags().StringVarP(&after, "after", "a", "", "also keep every backup made at or after this time (RFC 3339) or backup")
	return cmd
}

func newDeleteBeforeCommand(a *app, run deleteRunner) *cobra.Command {
	return &cobra.Command{
		Use:   "before [FIND_FULL] NAME|TIME",
		Short: "Delete the backups and WAL older than a backup or a time",
		Example: `  before base_0123              keep everything after base_0123 including itself
  before FIND_FULL base_0123    keep everything after the full backup of base_0123
  before 2024-05-01T00:00:00Z   keep the backups made since then`,
		Args: cli.ArgCount(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mod, arg, err := modifierArgs(args, "FULL", "FIND_FULL")
			if err != nil {
				return err
			}
			if mod == retention.Full {
				return fmt.Errorf("unsupported modifier FULL for delete before")
			}
			if t, ok := retention.ParseTime(arg); ok && t.After(time.Now()) {
				return fmt.Errorf("cannot delete before future date")
			}
			return run(a, cmd, func(r *retention.Repo) (*retention.Plan, error) { return r.Before(mod, arg) })
		},
	}
}

func newDeleteEverythingCommand(a *app, run deleteRunner) *cobra.Command {
	return &cobra.Command{
		Use:   "everything [FORCE]",
		Short: "Delete every backup and all WAL (FORCE: permanent backups too)",
		Args:  cli.ArgCount(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] != "FORCE" {
				return fmt.Errorf("expected to get one of modifiers: [FORCE] as first argument")
			}
			force := len(args) == 1
			return run(a, cmd, func(r *retention.Repo) (*retention.Plan, error) { return r.Everything(force) })
		},
	}
}

func newDeleteTargetCommand(a *app, run deleteRunner) *cobra.Command {
	var userData string
	cmd := &cobra.Command{
		Use:   "target [FIND_FULL] NAME | --target-user-data JSON",
		Short: "Delete one backup and the deltas that depend on it",
		Example: `  target base_0000000100000000000000C4       delete a backup (and the deltas built on it)
  target --target-user-data '{"x": [3]}'     delete the backup with this user data
  target FIND_FULL base_0000000100000000000000C9_D_0000000100000000000000C4
                                             delete the whole chain of its full backup`,
		Args: cli.ArgCount(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := retention.TargetSpec{}
			switch {
			case len(args) == 0 && !cmd.Flags().Changed("target-user-data"):
				return fmt.Errorf("incorrect arguments: a backup name or --target-user-data is needed")
			case len(args) == 2 && args[0] != "FIND_FULL":
				return fmt.Errorf("incorrect arguments: the only modifier of delete target is FIND_FULL")
			}
			if len(args) > 0 && args[0] == "FIND_FULL" {
				spec.FindFull = true
				args = args[1:]
			}
			if len(args) > 0 {
				spec.Name = args[0]
			}
			if cmd.Flags().Changed("target-user-data") {
				if !json.Valid([]byte(userData)) {
					return fmt.Errorf("--target-user-data is not valid JSON")
				}
				spec.UserData = json.RawMessage(userData)
			}
			return run(a, cmd, func(r *retention.Repo) (*retention.Plan, error) { return r.Target(cmd.Context(), spec) })
		},
	}
	cmd.Flags().StringVar(&userData, "target-user-data", "", "delete the backup whose user data (backup-push --add-user-data) is this JSON")
	return cmd
}

func newDeleteGarbageCommand(a *app, run deleteRunner) *cobra.Command {
	var withoutBackupCheck bool
	cmd := &cobra.Command{
		Use:   "garbage [ARCHIVES|BACKUPS]",
		Short: "Delete WAL and unfinished backup folders older than the oldest backup",
		Long: `Deletes the WAL and the leftover backup objects (folders without a sentinel)
older than the oldest non-permanent backup. ARCHIVES: WAL only; BACKUPS:
backup objects only.`,
		Args: cli.ArgCount(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			scope := retention.ScopeAll
			if len(args) == 1 {
				switch args[0] {
				case "ARCHIVES":
					scope = retention.ScopeWAL
					a.Log.Info("Archive-only mode selected. Will remove only outdated WAL files.")
				case "BACKUPS":
					scope = retention.ScopeBackups
					a.Log.Info("Backups-only mode selected. Will remove only leftover backup files.")
				default:
					return fmt.Errorf("expected to get one of modifiers: [ARCHIVES BACKUPS] as first argument")
				}
			} else {
				a.Log.Info("Running in default mode. Will remove outdated WAL files and leftover backup files.")
			}
			return run(a, cmd, func(r *retention.Repo) (*retention.Plan, error) { return r.Garbage(scope, withoutBackupCheck) })
		},
	}
	cmd.Flags().BoolVar(&withoutBackupCheck, "without-backup-check", false, "with no non-permanent backup, delete all WAL and backup objects that are not permanent")
	return cmd
}

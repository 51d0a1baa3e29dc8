package main

import (
	"fmt"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
)

func newBackupListCommand(a *app) *cobra.Command {
	return newListCommand(a, &cobra.Command{
		Use:   "backup-list",
		Short: "Print the list of base backups in storage",
		Long: `Lists every complete base backup (one with a stop sentinel) in storage, oldest
first by the time its sentinel was written; the last one is LATEST.

Columns, JSON keys, ordering and time formats are WAL-G's: --detail adds the
fields of each backup's metadata.json (ordered by start time), --json prints a
JSON array (indented with --pretty), --pretty alone draws a table.`,
	}, nil)
}

// newListCommand completes cmd as a listing of the backups in storage, or
// in view(storage) when view is set (catchup-list).
func newListCommand(a *app, cmd *cobra.Command, view func(storage.Storage) storage.Storage) *cobra.Command {
	var pretty, asJSON, detail bool
	var target string
	*cmd = cobra.Command{
		Use: cmd.Use, Short: cmd.Short, Long: cmd.Long,
		Args: cli.ArgCount(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			use := cli.UseUnite
			if view != nil {
				use = cli.UsePrimary // catchup-list: WAL-G has no failover for it
				if err := checkTargetStorage(target); err != nil {
					return err
				}
			}
			store, err := a.OpenStorageFor(ctx, use, target)
			if err != nil {
				return err
			}
			if view != nil {
				store = view(store)
			}
			infos, err := backup.List(ctx, store)
			if err != nil {
				return err
			}
			if len(infos) == 0 && !asJSON {
				// WAL-G logs this and succeeds; JSON gets a clean "[]".
				a.Log.Info("No backups found")
			}
			format := backup.ListFormat{Pretty: pretty, JSON: asJSON}
			out := cmd.OutOrStdout()
			if !detail {
				return backup.WriteList(out, infos, format)
			}
			details, err := backup.Details(ctx, store, infos)
			if err != nil {
				return err
			}
			return backup.WriteDetails(out, details, format)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&pretty, "pretty", false, "print a table (or indented JSON with --json)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&detail, "detail", false, "add each backup's metadata (start/finish time, host, data dir, LSNs, permanence)")
	cli.AddTargetStorageFlag(cmd, &target)
	return cmd
}

// checkTargetStorage accepts --target-storage only for the primary storage,
// for commands that WAL-G runs on it alone.
func checkTargetStorage(name string) error {
	if name != "" && name != backup.DefaultStorageName {
		return fmt.Errorf("--target-storage %q: this command uses the primary storage %q only", name, backup.DefaultStorageName)
	}
	return nil
}

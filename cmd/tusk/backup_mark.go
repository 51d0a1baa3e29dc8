package main

import (
	"github.com/spf13/cobra"
	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/tusk-pg/tusk/internal/retention"
)

func newBackupMarkCommand(a *app) *cobra.Command {
	var impermanent bool
	cmd := &cobra.Command{
		Use:   "backup-mark NAME",
		Short: "Mark a backup permanent (or impermanent with -i)",
		Long: `Marks a backup permanent, with every backup its delta chain needs, so that
delete keeps it and the WAL it needs. -i marks it impermanent again; refused
while a delta built directly on it is permanent. Only the backup's
metadata.json changes, as with WAL-G.`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.OpenStorage(ctx)
			if err != nil {
				return err
			}
			_, err = retention.Mark(ctx, store, args[0], !impermanent, a.Log)
			return err
		},
	}
	cmd.Flags().BoolVarP(&impermanent, "impermanent", "i", false, "mark the backup impermanent")
	return cmd
}

package main

import (
	"fmt"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"
)

func newStStatCommand(a *app, fl *stFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "stat OBJECT",
		Short: "Prints metadata of the specified storage object",
		Long: `Prints one object's metadata in the format of st ls, from a single stat
(HEAD) request; fails if the object does not exist.`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			o, err := store.Stat(ctx, args[0])
			if err != nil {
				return fmt.Errorf("stat object %q: %w", args[0], err)
			}
			out, err := newListWriter(cmd.OutOrStdout())
			if err == nil {
				err = out.object(o, args[0])
			}
			if ferr := out.flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
}

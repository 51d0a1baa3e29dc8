package main

import (
	"fmt"
	"io"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/pipe"
)

func newStCatCommand(a *app, fl *stFlags) *cobra.Command {
	var decrypt, decompress bool
	cmd := &cobra.Command{
		Use:   "cat OBJECT",
		Short: "Cat the specified storage object to STDOUT",
		Long: `Writes the object to standard output: as stored by default, decrypted with
the configured key with --decrypt, decompressed by its extension with
--decompress.`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := fl.open(ctx, a)
			if err != nil {
				return err
			}
			r, err := a.openObject(ctx, store, args[0], decrypt, decompress)
			if err != nil {
				return fmt.Errorf("download the file: %w", err)
			}
			_, err = io.CopyBuffer(struct{ io.Writer }{cmd.OutOrStdout()}, struct{ io.Reader }{r}, make([]byte, pipe.CopyBufferSize))
			if cerr := r.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("download the file: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&decrypt, "decrypt", false, "decrypt the object")
	cmd.Flags().BoolVar(&decompress, "decompress", false, "decompress the object")
	return cmd
}

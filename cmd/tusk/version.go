package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/cli"
)

// versionString is the root command's Version, in WAL-G's shape: fields
// separated by tabs.
func versionString() string { return cli.VersionString(version, gitCommit, buildDate) }

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tusk's version, commit and build date (as --version does)",
		Args:  cli.ArgCount(0, 0),
		// No configuration is loaded: the version is printable whatever the
		// settings say.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "tusk version %s\n", versionString())
			return err
		},
	}
}

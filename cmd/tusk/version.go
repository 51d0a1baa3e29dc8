package main

import (
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk"
)

// buildDateLayout is WAL-G's build date format (date -u +%Y.%m.%d_%H:%M:%S).
const buildDateLayout = "2006.01.02_15:04:05"

// buildVersion is what the binary reports: the values make build stamps
// (git describe, the commit, the build time), else the VERSION file and
// the commit and commit time go build records from the checkout.
func buildVersion() (ver, commit, date string) {
	ver, commit, date = version, gitCommit, buildDate
	if ver == "devel" {
		ver = tusk.Version()
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ver, commit, date
	}
	// go install github.com/tusk-pg/tusk/cmd/tusk@vX.Y.Z knows its release.
	if version == "devel" && strings.HasPrefix(bi.Main.Version, "v") {
		ver = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if commit == "unknown" && len(s.Value) >= 7 {
				commit = s.Value[:7]
			}
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil && date == "unknown" {
				date = t.UTC().Format(buildDateLayout)
			}
		}
	}
	return ver, commit, date
}

// versionString is the root command's Version, in WAL-G's shape: fields
// separated by tabs.
func versionString() string {
	ver, commit, date := buildVersion()
	return fmt.Sprintf("%s\t%s\t%s", ver, commit, date)
}

// versionTemplate makes --version print "tusk version v0.1.0\t<commit>\t<date>"
// as WAL-G prints "wal-g version ...".
const versionTemplate = "tusk version {{.Version}}\n"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tusk's version, commit and build date (as --version does)",
		Args:  argCount(0, 0),
		// No configuration is loaded: the version is printable whatever the
		// settings say.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "tusk version %s\n", versionString())
			return err
		},
	}
}

package cli

import (
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tusk-pg/tusk"
)

// buildDateLayout is WAL-G's build date format (date -u +%Y.%m.%d_%H:%M:%S).
const buildDateLayout = "2006.01.02_15:04:05"

// buildVersion is what the binary reports: the values make build stamps
// (git describe, the commit, the build time), else the VERSION file and
// the commit and commit time go build records from the checkout.
func buildVersion(version, gitCommit, buildDate string) (ver, commit, date string) {
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

// VersionString is a program's --version, in WAL-G's shape: fields
// separated by tabs. version, gitCommit and buildDate are what the build
// stamped into the program's main ("devel", "unknown" unstamped).
func VersionString(version, gitCommit, buildDate string) string {
	ver, commit, date := buildVersion(version, gitCommit, buildDate)
	return fmt.Sprintf("%s\t%s\t%s", ver, commit, date)
}

// Package tusk holds the release this source tree is, or follows: the
// VERSION file, which a build from a clone without tags reports.
package tusk

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var versionFile string

// Version is the VERSION file's release, e.g. "v0.1.0".
func Version() string { return strings.TrimSpace(versionFile) }

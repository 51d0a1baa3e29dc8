// Command tusk archives PostgreSQL WAL and base backups in WAL-G's storage
// format, with WAL-G's commands and settings, in bounded memory.
package main

import (
	"context"

	"github.com/tusk-pg/tusk/internal/cli"
)

// Set by the build (-ldflags "-X main.version=...").
var (
	version   = "devel"
	gitCommit = "unknown"
	buildDate = "unknown"
)

func main() { cli.Main(run) }

func run(ctx context.Context, args []string) int {
	if clientArgs, ok := daemonClientArgs(args); ok {
		return runDaemonClient(ctx, clientArgs)
	}
	return cli.Run(ctx, args, program())
}

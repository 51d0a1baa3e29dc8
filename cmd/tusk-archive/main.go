// Command tusk-archive is tusk's wal-push and wal-fetch alone, for
// PostgreSQL's archive_command and restore_command, which start one process
// per WAL segment. It runs the same commands as tusk (package cli), with
// the same flags, settings and config file, and stores to file or S3
// storage only: not linking the other backends, nor tusk's other commands
// (backups, PostgreSQL connections, the daemon), spares each start their
// package initialisers and keeps fewer of the executable's pages resident
// (docs/benchmarks.md). A configuration selecting another storage is
// refused in one line naming its setting; run tusk for it.
package main

import (
	"context"

	"github.com/tusk-pg/tusk/internal/cli"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/storage/s3"
)

// Set by the build (-ldflags "-X main.version=...").
var (
	version   = "devel"
	gitCommit = "unknown"
	buildDate = "unknown"
)

func main() { cli.Main(run) }

func run(ctx context.Context, args []string) int { return cli.Run(ctx, args, program()) }

func program() cli.Program {
	return cli.Program{
		Name:  "tusk-archive",
		Short: "tusk's wal-push and wal-fetch alone, for archive_command and restore_command",
		Long: `tusk-archive runs tusk's wal-push and wal-fetch, with the same flags, settings
and config file, linking only file and S3 storage: a smaller process for the
commands PostgreSQL starts once per WAL segment. For any other storage, and
every other command, use tusk.

In postgresql.conf:
  archive_command = 'tusk-archive wal-push %p'
  restore_command = 'tusk-archive wal-fetch %f %p'`,
		Version:  cli.VersionString(version, gitCommit, buildDate),
		Backends: storage.Registry{file.Backend(), s3.Backend()},
	}
}

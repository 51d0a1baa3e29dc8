package main

import (
	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/cli"
	"github.com/tusk-pg/tusk/internal/storage/all"
)

// app is what tusk's commands get: the core shared with tusk-archive
// (configuration, logger, storage) and the methods only tusk's commands use.
type app struct{ *cli.App }

// program is tusk: every backend and every command.
func program() cli.Program {
	return cli.Program{
		Name:  "tusk",
		Short: "PostgreSQL WAL archiving and backups in WAL-G's format, in bounded memory",
		Long: `tusk archives PostgreSQL WAL and base backups to file, S3, GCS, Azure or SFTP storage.
It is a drop-in replacement for WAL-G: WAL-G's commands (one it lacks yet says
so), the same WALG_* / AWS_* / PG* settings (environment, --config FILE,
WALG_CONFIG_PATH or ~/.walg.json; "tusk settings" lists them all, with what
tusk does with each), and the same objects in storage, so either tool
restores what the other archived.

In postgresql.conf:
  archive_command = 'tusk wal-push %p'
  restore_command = 'tusk wal-fetch %f %p'`,
		Version:  versionString(),
		Backends: all.Registry(),
		Commands: func(c *cli.App) []*cobra.Command {
			a := &app{c}
			return []*cobra.Command{
				newWalShowCommand(a),
				newWalVerifyCommand(a),
				newWalReceiveCommand(a),
				newWalRestoreCommand(a),
				newBackupVerifyCommand(a),
				newRestoreWindowCommand(a),
				newBackupListCommand(a),
				newCatchupPushCommand(a),
				newCatchupFetchCommand(a),
				newCatchupListCommand(a),
				newCatchupSendCommand(a),
				newCatchupReceiveCommand(a),
				newBackupFetchCommand(a),
				newBackupPushCommand(a),
				newBackupMarkCommand(a),
				newDeleteCommand(a),
				newDaemonCommand(a),
				newDaemonClientCommand(),
				newStCommand(a),
				newCopyCommand(a),
				newVersionCommand(),
				newSettingsCommand(),
			}
		},
		Extra: missingWALGCommands,
	}
}

// newApp returns tusk's command tree and the app its commands share.
func newApp() (*cobra.Command, *app) {
	root, c := cli.NewApp(program())
	return root, &app{c}
}

func newRootCommand() *cobra.Command {
	root, _ := newApp()
	return root
}

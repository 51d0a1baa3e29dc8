package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// walgCommand is one of WAL-G's PostgreSQL commands.
type walgCommand struct {
	name string
	what string // one line, for the README's command table
}

// walgCommands are WAL-G v3.0.9's PostgreSQL commands (cmd/pg, cmd/common),
// the one list of them: the README's command table is generated from it and
// the command tree, and each name tusk lacks gets a placeholder that says
// so. Adding a command to tusk needs no change here: a name becomes
// "implemented" once the tree has a command of that name.
var walgCommands = []walgCommand{
	{"wal-push", "archive one WAL file (archive_command)"},
	{"wal-fetch", "restore one WAL file (restore_command)"},
	{"wal-prefetch", "fetch the following WAL files ahead of wal-fetch (started by wal-fetch)"},
	{"wal-show", "the archived WAL per timeline, with gaps"},
	{"wal-verify", "check the archived WAL (integrity, timeline)"},
	{"wal-receive", "stream WAL over a replication connection into storage"},
	{"wal-restore", "fetch the WAL a diverged cluster needs to rejoin (for pg_rewind)"},
	{"backup-push", "take a base backup, full or delta"},
	{"backup-fetch", "restore a base backup, optionally to a recovery target"},
	{"backup-list", "list the backups"},
	{"backup-mark", "make a backup permanent or impermanent"},
	{"delete", "retention: delete old backups and WAL"},
	{"daemon", "serve wal-push and wal-fetch over a Unix socket"},
	{"catchup-push", "an incremental backup from an LSN, to catch a standby up"},
	{"catchup-fetch", "apply a catch-up backup to a standby"},
	{"catchup-list", "list the catch-up backups"},
	{"catchup-send", "send a catch-up backup straight to a standby over the network"},
	{"catchup-receive", "receive a catch-up backup sent by catchup-send"},
	{"copy", "copy backups and WAL from one storage to another"},
	{"pgbackrest", "read backups and WAL written by pgBackRest"},
	{"st", "storage tools: ls, stat, get, cat, put, rm, check, copy, transfer on the raw objects"},
	{"flags", "list the settings that may be given as flags"},
	{"completion", "shell completion scripts"},
}

// missingWALGCommands returns a hidden placeholder for each of WAL-G's
// commands the tree under root lacks: it takes any arguments and flags,
// loads no configuration and fails with one line instead of Cobra's
// "unknown command", so a WAL-G user knows it is a gap, not a typo.
func missingWALGCommands(root *cobra.Command) []*cobra.Command {
	var cmds []*cobra.Command
	for _, wc := range walgCommands {
		if hasCommand(root, wc.name) {
			continue
		}
		cmds = append(cmds, &cobra.Command{
			Use:                wc.name,
			Short:              fmt.Sprintf("WAL-G's %s: not implemented in tusk yet", wc.name),
			Hidden:             true,
			DisableFlagParsing: true,
			Annotations:        map[string]string{missingAnnotation: "true"},
			PersistentPreRunE:  func(*cobra.Command, []string) error { return nil },
			RunE: func(*cobra.Command, []string) error {
				return fmt.Errorf("WAL-G's %q is not implemented in tusk yet", wc.name)
			},
		})
	}
	return cmds
}

// missingAnnotation marks the placeholders of missingWALGCommands.
const missingAnnotation = "walg-missing"

// hasCommand reports whether root has a real subcommand called name (or
// aliased so).
func hasCommand(root *cobra.Command, name string) bool {
	for _, c := range root.Commands() {
		if c.Annotations[missingAnnotation] == "" && (c.Name() == name || c.HasAlias(name)) {
			return true
		}
	}
	return false
}

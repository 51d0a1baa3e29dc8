package main

import (
	"log/slog"
	"os"

	"github.com/tusk-pg/tusk/internal/progress"
)

// startProgress starts the progress display of a transfer command on
// stderr: a bar on a terminal, a log line every few seconds otherwise
// (through the command's logger, so WALG_LOG_LEVEL=ERROR silences it). It
// returns the logger the command should use while the display runs: in bar
// mode, one that moves the bar out of the way of each record.
func (a *app) startProgress(op string) (*progress.Reporter, *slog.Logger) {
	r := progress.New(progress.Options{Op: op, Out: os.Stderr, Log: a.Log})
	if a.LogFile != nil {
		return r, a.Log // records go to WALG_LOG_DESTINATION, not to the bar's terminal
	}
	return r, r.Logger(a.Log)
}

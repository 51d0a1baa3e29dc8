// Package cli is the command-line core that tusk and tusk-archive share:
// the root command with its configuration flags, the configuration load,
// logging, how commands open storage, and the WAL commands a PostgreSQL
// archive_command and restore_command run (wal-push, wal-fetch and the
// wal-prefetch that wal-fetch starts). A program built on it adds its own
// commands and lists the storage backends it links (Program); this package
// imports no backend and no command beyond those, so a program linking
// only what archiving needs starts with fewer package initialisers and
// fewer of its executable's pages resident.
//
// Memory: what the commands' packages state (wal, pipe, storage); this
// package holds the configuration and one logger.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/storage"
)

// Program describes one executable built on this package.
type Program struct {
	// Name is the executable's name in messages, help and --version.
	Name string
	// Short and Long are the root command's help.
	Short, Long string
	// Version is --version's text ("release\tcommit\tdate", VersionString).
	Version string
	// Backends are the storage backends the program links.
	Backends storage.Registry
	// Commands returns the program's commands besides wal-push, wal-fetch
	// and wal-prefetch; Extra, given the tree once complete, returns
	// more (tusk's placeholders for WAL-G commands it lacks).
	Commands func(a *App) []*cobra.Command
	Extra    func(root *cobra.Command) []*cobra.Command
}

// ExitError carries a process exit status other than 1.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Main runs run with a context that SIGTERM and SIGINT cancel, and exits
// with its status.
func Main(run func(ctx context.Context, args []string) int) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value // the signal that cancelled the work
	go func() {
		sig := <-sigs
		got.Store(sig)
		cancel(fmt.Errorf("%w: %v", ErrInterrupted, sig))
		// A second signal takes the default action: end at once.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
	}()
	code := run(ctx, os.Args)
	if sig, ok := got.Load().(syscall.Signal); ok && code != 0 {
		// Cleaned up (no temporary file left, nothing half-published):
		// now end as the signal's default action would, so the caller
		// (PostgreSQL's archiver or startup process, a shell) sees
		// "terminated by SIGTERM", which it treats as a shutdown, not as
		// "WAL file not available".
		signal.Reset(sig)
		syscall.Kill(os.Getpid(), sig)
		time.Sleep(time.Second)
		code = 128 + int(sig)
	}
	os.Exit(code)
}

// ErrInterrupted is the cause of the context of a command stopped by
// SIGTERM or SIGINT.
var ErrInterrupted = errors.New("interrupted")

// Run executes the program's command line (args[0] is the program) and
// returns the exit status, having reported any error on stderr.
func Run(ctx context.Context, args []string, p Program) int {
	root, a := NewApp(p)
	root.SetArgs(args[1:])
	err := root.ExecuteContext(ctx)
	a.closeStorages()
	if err == nil {
		return 0
	}
	reportError(os.Stderr, err, a.jsonLogs())
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// reportError writes the error that ends the command to stderr (never to
// WALG_LOG_DESTINATION: stderr is what PostgreSQL's log captures from
// archive_command): one line starting "ERROR: ", as WAL-G's errors start,
// and the usage line after an argument error. With TUSK_LOG_FORMAT=json it
// is one JSON record at level ERROR instead, so every line parses; errors
// found before the configuration is read (arguments, settings) keep the
// plain form, the format being unknown then.
func reportError(w io.Writer, err error, asJSON bool) {
	if asJSON {
		slog.New(slog.NewJSONHandler(w, nil)).Error(err.Error())
		return
	}
	fmt.Fprintf(w, "ERROR: %v\n", err)
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintln(w, ue.usageLine())
	}
}

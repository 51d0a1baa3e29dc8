// Command tusk archives PostgreSQL WAL and base backups in WAL-G's storage
// format, with WAL-G's commands and settings, in bounded memory.
package main

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
)

// Set by the build (-ldflags "-X main.version=...").
var (
	version   = "devel"
	gitCommit = "unknown"
	buildDate = "unknown"
)

// exitError carries a process exit status other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value // the signal that cancelled the work
	go func() {
		sig := <-sigs
		got.Store(sig)
		cancel(fmt.Errorf("%w: %v", errInterrupted, sig))
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

// errInterrupted is the cause of the context of a command stopped by
// SIGTERM or SIGINT.
var errInterrupted = errors.New("interrupted")

func run(ctx context.Context, args []string) int {
	if clientArgs, ok := daemonClientArgs(args); ok {
		return runDaemonClient(ctx, clientArgs)
	}
	root, a := newApp()
	root.SetArgs(args[1:])
	err := root.ExecuteContext(ctx)
	a.closeStorages()
	if err == nil {
		return 0
	}
	reportError(os.Stderr, err, a.jsonLogs())
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
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
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(w, ue.usageLine())
	}
}

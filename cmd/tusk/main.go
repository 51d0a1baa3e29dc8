// Command tusk archives PostgreSQL WAL and base backups in WAL-G's storage
// format, with WAL-G's commands and settings, in bounded memory.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	if filepath.Base(args[0]) == walgClientName {
		return runAsWALGClient(ctx, args[1:])
	}
	root := newRootCommand()
	root.SetArgs(args[1:])
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "ERROR: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

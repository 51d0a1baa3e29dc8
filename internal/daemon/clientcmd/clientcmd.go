// Package clientcmd is WAL-G's walg-daemon-client command line: one
// request to a daemon, its reply as the exit status. tusk runs it before
// setting up anything else (as `tusk daemon-client` or under WAL-G's
// client name), and cmd/tusk-daemon-client is a binary of only this: the
// client runs once per WAL segment, so its start-up cost is paid per
// segment. It depends on the standard library and package wire only.
package clientcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/daemon/wire"
)

// Name is WAL-G's client binary name.
const Name = "walg-daemon-client"

// ExitNotFound is the status for a file that is not archived (EX_IOERR,
// as WAL-G).
const ExitNotFound = 74

// ExitError carries an exit status other than 1.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Usage is the command line, for help texts.
const Usage = "SOCKET_PATH wal-push WAL_NAME | wal-fetch WAL_NAME DESTINATION [-timeout 60s] [-connection-timeout 5s]"

// Run runs the command line args (after the program name), reports a
// failure on stderr as "ERROR: ..." and returns the exit status.
// versionLine is printed for --version.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, versionLine string) int {
	err := Exec(ctx, args, stdout, versionLine)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "ERROR: %v\n", err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// Exec implements walg-daemon-client's command line:
// SOCKET COMMAND ARGS... [-timeout D] [-connection-timeout D].
func Exec(ctx context.Context, args []string, stdout io.Writer, versionLine string) error {
	for _, a := range args {
		if a == "--version" || a == "-version" {
			fmt.Fprintf(stdout, "%s\t%s\n", Name, versionLine)
			return nil
		}
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprintln(stdout, "usage: "+Name+" "+Usage)
			return nil
		}
	}
	// Positional arguments first, then Go flag syntax, as WAL-G's client.
	var positional []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = append(positional, args[0]), args[1:]
	}
	fs := flag.NewFlagSet(Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 60*time.Second, "")
	connTimeout := fs.Duration("connection-timeout", 5*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments after flags: %q", Name, fs.Args())
	}
	if len(positional) < 2 {
		return errors.New("usage: " + Name + " SOCKET_PATH wal-push WAL_NAME | wal-fetch WAL_NAME DESTINATION")
	}
	socketPath, command, rest := positional[0], strings.ToLower(positional[1]), positional[2:]
	var typ byte
	switch {
	case command == "wal-push" && len(rest) == 1:
		typ = wire.TypeWalPush
	case command == "wal-fetch" && len(rest) == 2:
		typ = wire.TypeWalFetch
	default:
		return fmt.Errorf("%s: expected 'wal-push WAL_NAME' or 'wal-fetch WAL_NAME DESTINATION', got %q", Name, positional[1:])
	}
	reply, err := wire.Request(ctx, socketPath, typ, rest, *connTimeout, *timeout)
	if err != nil {
		return err
	}
	switch reply {
	case wire.ReplyOK:
		return nil
	case wire.ReplyNotFound:
		fmt.Fprintf(stdout, "WAL file %s is not archived\n", rest[0])
		return &ExitError{Code: ExitNotFound, Err: fmt.Errorf("%s: %s not found in storage", command, rest[0])}
	default:
		return fmt.Errorf("%s %s failed in the daemon (reply %q); see the daemon's log", command, rest[0], reply)
	}
}

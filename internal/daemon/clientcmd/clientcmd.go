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
	"io"
	"strconv"
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

// WAL-G's client's -timeout and -connection-timeout defaults.
const (
	defaultTimeout        = 60 * time.Second
	defaultConnectTimeout = 5 * time.Second
)

// Usage is the command line, for help texts.
const Usage = "SOCKET_PATH wal-push WAL_NAME | wal-fetch WAL_NAME DESTINATION [-timeout 60s] [-connection-timeout 5s]"

// Run runs the command line args (after the program name), reports a
// failure on stderr as "ERROR: ..." and returns the exit status.
// versionLine is printed for --version.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, versionLine string) int {
	return exitStatus(Exec(ctx, args, stdout, versionLine), stderr)
}

// exitStatus reports err on stderr and returns WAL-G's exit status for it.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	io.WriteString(stderr, "ERROR: "+err.Error()+"\n")
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// Exec implements walg-daemon-client's command line:
// SOCKET COMMAND ARGS... [-timeout D] [-connection-timeout D].
//
// It formats with strconv and parses its two flags by hand: fmt and flag
// would link reflect, and binary size is start-up CPU paid per segment
// (docs/benchmarks.md, "Daemon client CPU per run").
func Exec(ctx context.Context, args []string, stdout io.Writer, versionLine string) error {
	for _, a := range args {
		if a == "--version" || a == "-version" {
			_, err := io.WriteString(stdout, Name+"\t"+versionLine+"\n")
			return err
		}
		if a == "-h" || a == "--help" || a == "-help" {
			_, err := io.WriteString(stdout, "usage: "+Name+" "+Usage+"\n")
			return err
		}
	}
	// Positional arguments first, then Go flag syntax, as WAL-G's client.
	var positional []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = append(positional, args[0]), args[1:]
	}
	timeout, connTimeout, err := parseFlags(args)
	if err != nil {
		return errors.New(Name + ": " + err.Error())
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
		return errors.New(Name + ": expected 'wal-push WAL_NAME' or 'wal-fetch WAL_NAME DESTINATION', got " + quoteList(positional[1:]))
	}
	reply, err := wire.Request(ctx, socketPath, typ, rest, connTimeout, timeout)
	if err != nil {
		return err
	}
	return outcome(command, rest[0], reply, stdout)
}

// outcome maps the daemon's reply to WAL-G's result for command on file
// name.
func outcome(command, name string, reply byte, stdout io.Writer) error {
	switch reply {
	case wire.ReplyOK:
		return nil
	case wire.ReplyNotFound:
		io.WriteString(stdout, "WAL file "+name+" is not archived\n")
		return &ExitError{Code: ExitNotFound, Err: errors.New(command + ": " + name + " not found in storage")}
	default:
		return errors.New(command + " " + name + " failed in the daemon (reply " + strconv.QuoteRune(rune(reply)) + "); see the daemon's log")
	}
}

// parseFlags reads -timeout and -connection-timeout with package flag's
// syntax (one or two dashes, the value after '=' or as the next
// argument, "--" ending the flags) and its error texts. Nothing may follow
// the flags.
func parseFlags(args []string) (timeout, connTimeout time.Duration, err error) {
	timeout, connTimeout = defaultTimeout, defaultConnectTimeout
	for len(args) > 0 {
		a := args[0]
		if len(a) < 2 || a[0] != '-' {
			break
		}
		args = args[1:]
		if a == "--" {
			break
		}
		name := strings.TrimPrefix(a[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return 0, 0, errors.New("bad flag syntax: " + a)
		}
		name, value, hasValue := strings.Cut(name, "=")
		var dst *time.Duration
		switch name {
		case "timeout":
			dst = &timeout
		case "connection-timeout":
			dst = &connTimeout
		default:
			return 0, 0, errors.New("flag provided but not defined: -" + name)
		}
		if !hasValue {
			if len(args) == 0 {
				return 0, 0, errors.New("flag needs an argument: -" + name)
			}
			value, args = args[0], args[1:]
		}
		d, perr := time.ParseDuration(value)
		if perr != nil {
			return 0, 0, errors.New("invalid value " + strconv.Quote(value) + " for flag -" + name + ": parse error")
		}
		*dst = d
	}
	if len(args) > 0 {
		return 0, 0, errors.New("unexpected arguments after flags: " + quoteList(args))
	}
	return timeout, connTimeout, nil
}

// quoteList is fmt's %q of a string slice: ["a" "b"].
func quoteList(s []string) string {
	b := []byte{'['}
	for i, v := range s {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendQuote(b, v)
	}
	return string(append(b, ']'))
}

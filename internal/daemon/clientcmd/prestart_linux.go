//go:build linux

package clientcmd

import (
	"io"
	"unsafe"

	"github.com/tusk-pg/tusk/internal/daemon/wire"
)

// prestarted is what Prestart did, for Resume. Package state, written
// once before the runtime starts and read once after: there is no other
// place to hand it over.
var prestarted struct {
	done                  bool
	socket, command, name string
	result                wire.RawResult
}

// prestartFrame holds the request frame: Prestart cannot allocate.
var prestartFrame [wire.MaxMessage]byte

// Prestart runs the common request, `SOCKET wal-push NAME` or `SOCKET
// wal-fetch NAME DESTINATION` without flags, before the Go runtime is set
// up: tusk-daemon-client's entry point calls it with the process's argc
// and argv. Go's start-up (heap, threads, signal handlers, package
// initialisers) costs about 5 ms of CPU per run on a small VM, more than
// the whole exchange, and archive_command pays it per WAL segment.
//
// It returns the exit status when the daemon answered OK, or -1 to let
// the runtime start and main run: main calls Resume, which reports what
// Prestart saw, or Run when Prestart did not reach the daemon (any other
// command line, or a failed connect: Run repeats the connect and reports
// it as usual).
//
// Code here runs without the runtime: no allocation, no panic, no defer,
// nothing that reaches the scheduler; nosplit so that the linker checks
// the stack it uses.
//
//go:nosplit
func Prestart(argc int, argv **byte) int {
	if argc != 4 && argc != 5 {
		return -1
	}
	var args [5]string
	for i := 1; i < argc; i++ {
		p := *(**byte)(unsafe.Add(unsafe.Pointer(argv), uintptr(i)*unsafe.Sizeof(argv)))
		if p == nil {
			return -1
		}
		s := cstring(p)
		if len(s) == 0 || s[0] == '-' { // flags, --version, --help
			return -1
		}
		args[i] = s
	}
	var typ byte
	var command string
	switch {
	case argc == 4 && equalFoldASCII(args[2], "wal-push"):
		typ, command = wire.TypeWalPush, "wal-push"
	case argc == 5 && equalFoldASCII(args[2], "wal-fetch"):
		typ, command = wire.TypeWalFetch, "wal-fetch"
	default:
		return -1
	}
	frame, ok := wire.AppendFrame(prestartFrame[:0], typ, args[3:argc])
	if !ok {
		return -1
	}
	r := wire.RawRequest(args[1], frame, defaultConnectTimeout, defaultTimeout)
	if r.Step == "socket" || r.Step == "connect" {
		return -1 // nothing reached the daemon: Run does it again and reports
	}
	if !r.Failed() && r.Reply == wire.ReplyOK {
		return 0
	}
	prestarted.socket, prestarted.command, prestarted.name = args[1], command, args[3]
	prestarted.result = r
	prestarted.done = true
	return -1
}

// Resume reports the request Prestart made, if it made one, and returns
// the exit status; ok is false when Prestart did not reach the daemon.
func Resume(stdout, stderr io.Writer) (status int, ok bool) {
	p := &prestarted
	if !p.done {
		return 0, false
	}
	if p.result.Failed() {
		return exitStatus(p.result.Error(p.socket), stderr), true
	}
	return exitStatus(outcome(p.command, p.name, p.result.Reply, stdout), stderr), true
}

// cstring is the NUL-terminated string at p, without copying.
//
//go:nosplit
func cstring(p *byte) string {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return unsafe.String(p, n)
}

// equalFoldASCII reports whether s is lower, ignoring ASCII case.
//
//go:nosplit
func equalFoldASCII(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

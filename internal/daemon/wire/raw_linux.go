//go:build linux

package wire

import (
	"io"
	"syscall"
	"time"
	"unsafe"
)

// RawResult is how a RawRequest ended.
type RawResult struct {
	Sent  bool          // the whole frame was written
	Reply byte          // the daemon's reply, when Err is 0 and Sent
	Step  string        // the call that failed: "socket", "connect", "write", "read"
	Err   syscall.Errno // its error; 0 with Step "read" is end of file
}

// Failed reports whether the exchange did not produce a reply.
func (r RawResult) Failed() bool { return r.Step != "" }

// Error is the failure as Request reports it.
func (r RawResult) Error(socketPath string) error {
	var err error = io.EOF
	if r.Err != 0 {
		err = ioError(r.Step, r.Err)
	}
	switch r.Step {
	case "write":
		return &opError{"send to daemon at " + socketPath, err}
	case "read":
		return &opError{"read daemon reply from " + socketPath, err}
	default:
		return &opError{"connect to daemon at " + socketPath, err}
	}
}

// RawRequest is Request for code that runs before the Go runtime is set
// up (tusk-daemon-client's pre-start path): frame is an encoded message,
// path the socket's path; nothing is allocated and only raw system calls
// are made, so it is nosplit. No signal handler is installed then, so no
// call is interrupted, and SIGPIPE is avoided with MSG_NOSIGNAL. The two
// timeouts bound the connect, and the write and the read each.
//
//go:nosplit
func RawRequest(path string, frame []byte, connectTimeout, timeout time.Duration) RawResult {
	var r RawResult
	fd, ok := rawConnect(path, connectTimeout, &r)
	if !ok {
		return r
	}
	rawExchange(fd, frame, timeout, &r)
	syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0) // no defer: it would call into the runtime
	return r
}

// rawConnect opens a socket connected to path, or records the failure in
// r (nosplit: see RawRequest).
//
//go:nosplit
func rawConnect(path string, timeout time.Duration, r *RawResult) (uintptr, bool) {
	var sa syscall.RawSockaddrUnix
	if len(path) == 0 || len(path) >= len(sa.Path) {
		r.Step, r.Err = "connect", syscall.EINVAL
		return 0, false
	}
	sa.Family = syscall.AF_UNIX
	for i := 0; i < len(path); i++ {
		sa.Path[i] = int8(path[i])
	}
	fd, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if e != 0 {
		r.Step, r.Err = "socket", e
		return 0, false
	}
	if e = rawTimeout(fd, syscall.SO_SNDTIMEO, timeout); e == 0 {
		_, _, e = syscall.RawSyscall(syscall.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), uintptr(2+len(path)+1))
	}
	if e != 0 {
		syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
		r.Step, r.Err = "connect", e
		return 0, false
	}
	return fd, true
}

// rawExchange writes frame and reads the one-byte reply into r (nosplit:
// see RawRequest).
//
//go:nosplit
func rawExchange(fd uintptr, frame []byte, timeout time.Duration, r *RawResult) {
	var e syscall.Errno
	if e = rawTimeout(fd, syscall.SO_SNDTIMEO, timeout); e == 0 {
		e = rawTimeout(fd, syscall.SO_RCVTIMEO, timeout)
	}
	for e == 0 && len(frame) > 0 {
		var n uintptr
		n, _, e = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&frame[0])), uintptr(len(frame)), syscall.MSG_NOSIGNAL, 0, 0)
		if e == syscall.EINTR {
			e = 0
		} else if e == 0 {
			frame = frame[n:]
		}
	}
	if e != 0 {
		r.Step, r.Err = "write", e
		return
	}
	r.Sent = true
	var b [1]byte
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), 1)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0 || n == 0:
			r.Step, r.Err = "read", e
			return
		}
		r.Reply = b[0]
		return
	}
}

// rawTimeout sets a socket timeout with a raw system call (nosplit: see
// RawRequest).
//
//go:nosplit
func rawTimeout(fd uintptr, opt int, d time.Duration) syscall.Errno {
	var tv syscall.Timeval
	if d > 0 {
		tv = syscall.NsecToTimeval(int64(d))
		if tv.Sec == 0 && tv.Usec == 0 {
			tv.Usec = 1
		}
	}
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.SOL_SOCKET, uintptr(opt), uintptr(unsafe.Pointer(&tv)), unsafe.Sizeof(tv), 0)
	return e
}

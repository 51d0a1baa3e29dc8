package wire

import (
	"context"
	"io"
	"os"
	"syscall"
	"time"
)

// Request sends one message to the daemon at socketPath and returns its
// one-byte reply. connectTimeout bounds the dial, timeout the whole
// exchange (WAL-G's -connection-timeout and -timeout); ctx cancels it.
//
// The socket is driven with system calls rather than package net: the
// client binary runs once per WAL segment, and net's initialisers,
// resolver and poller (with fmt and reflect for its errors) cost about
// 1 ms of start-up CPU per run for a single blocking exchange
// (docs/benchmarks.md, "Daemon client CPU per run").
func Request(ctx context.Context, socketPath string, typ byte, args []string, connectTimeout, timeout time.Duration) (byte, error) {
	if _, err := os.Stat(socketPath); err != nil {
		return 0, &opError{"daemon socket " + socketPath, err}
	}
	msg, err := EncodeMessage(typ, args...)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fd, err := dialUnix(socketPath, connectTimeout)
	if err != nil {
		return 0, &opError{"connect to daemon at " + socketPath, err}
	}
	defer syscall.Close(fd)
	if done := ctx.Done(); done != nil {
		// A blocked read does not see ctx: shutting the socket down ends it.
		stop, exited := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			select {
			case <-done:
				syscall.Shutdown(fd, syscall.SHUT_RDWR)
			case <-stop:
			}
		}()
		defer func() { close(stop); <-exited }()
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for len(msg) > 0 {
		if err := setTimeout(fd, syscall.SO_SNDTIMEO, deadline); err != nil {
			return 0, &opError{"send to daemon at " + socketPath, ctxOr(ctx, err)}
		}
		n, err := syscall.Write(fd, msg)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &opError{"send to daemon at " + socketPath, ctxOr(ctx, ioError("write", err))}
		}
		msg = msg[n:]
	}
	var b [1]byte
	for {
		if err := setTimeout(fd, syscall.SO_RCVTIMEO, deadline); err != nil {
			return 0, &opError{"read daemon reply from " + socketPath, ctxOr(ctx, err)}
		}
		n, err := syscall.Read(fd, b[:])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, &opError{"read daemon reply from " + socketPath, ctxOr(ctx, ioError("read", err))}
		case n == 0:
			return 0, &opError{"read daemon reply from " + socketPath, ctxOr(ctx, io.EOF)}
		}
		return b[0], nil
	}
}

// dialUnix connects a stream socket to path. On Linux a connect to a
// listener whose backlog is full waits up to SO_SNDTIMEO, which is how
// timeout bounds it.
func dialUnix(path string, timeout time.Duration) (int, error) {
	syscall.ForkLock.RLock() // no child inherits the descriptor before CLOEXEC is set
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		if err = setTimeout(fd, syscall.SO_SNDTIMEO, deadline); err != nil {
			break
		}
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		return -1, ioError("connect", err)
	}
	return fd, nil
}

// setTimeout sets the socket's send or receive timeout to what is left
// until deadline (none when deadline is zero). It is set again before each
// blocking call, since a signal (the runtime's preemption among them)
// interrupts a call that has a timeout instead of restarting it.
func setTimeout(fd, opt int, deadline time.Time) error {
	var tv syscall.Timeval
	if !deadline.IsZero() {
		left := time.Until(deadline)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		tv = syscall.NsecToTimeval(left.Nanoseconds())
		if tv.Sec == 0 && tv.Usec == 0 {
			tv.Usec = 1 // zero would mean no timeout
		}
	}
	return os.NewSyscallError("setsockopt", syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv))
}

// ioError names a failed call; a timeout is os.ErrDeadlineExceeded, as a
// net.Conn past its deadline reports it.
func ioError(call string, err error) error {
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINPROGRESS {
		return os.ErrDeadlineExceeded
	}
	return os.NewSyscallError(call, err)
}

// ctxOr reports ctx's cancellation rather than the error it caused.
func ctxOr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// opError says which step of the exchange failed and wraps the cause.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

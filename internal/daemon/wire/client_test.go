package wire

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listen starts a Unix listener in a short temporary directory (socket
// paths are limited to about 100 bytes) and serves each connection with
// serve.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wire-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return sock
}

// The client sends WAL-G's frame and returns the daemon's one-byte reply.
func TestRequestSendsFrameAndReadsReply(t *testing.T) {
	got := make(chan Message, 1)
	sock := listen(t, func(c net.Conn) {
		m, err := ReadMessage(c, make([]byte, MaxMessage))
		if err != nil {
			t.Error(err)
			return
		}
		got <- Message{Type: m.Type, Body: append([]byte(nil), m.Body...)}
		c.Write([]byte{ReplyNotFound})
	})
	reply, err := Request(context.Background(), sock, TypeWalFetch, []string{"000000010000000000000003", "pg_wal/RECOVERYXLOG"}, time.Second, 5*time.Second)
	if err != nil || reply != ReplyNotFound {
		t.Fatalf("reply %q, %v", reply, err)
	}
	m := <-got
	args, err := DecodeArgs(m.Body)
	if m.Type != TypeWalFetch || err != nil || len(args) != 2 || args[0] != "000000010000000000000003" || args[1] != "pg_wal/RECOVERYXLOG" {
		t.Fatalf("daemon got %q %q (%v)", m.Type, args, err)
	}
}

// A daemon that never answers: -timeout ends the wait, reported as a
// deadline like a net.Conn's.
func TestRequestTimesOut(t *testing.T) {
	sock := listen(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	start := time.Now()
	_, err := Request(context.Background(), sock, TypeWalPush, []string{"000000010000000000000003"}, time.Second, 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timed out after %v", d)
	}
}

// Cancelling the context ends a request blocked on the reply.
func TestRequestCancelled(t *testing.T) {
	sock := listen(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := Request(ctx, sock, TypeWalPush, []string{"000000010000000000000003"}, time.Second, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// A daemon closing without a reply, a socket nobody listens on, and a
// missing socket are each an error naming the socket.
func TestRequestFailures(t *testing.T) {
	closed := listen(t, func(c net.Conn) { ReadMessage(c, make([]byte, MaxMessage)) })
	_, err := Request(context.Background(), closed, TypeWalPush, []string{"x"}, time.Second, time.Second)
	if !errors.Is(err, io.EOF) {
		t.Errorf("daemon closed without reply: %v", err)
	}

	dir := t.TempDir()
	stale := filepath.Join(dir, "stale")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: stale}); err != nil {
		t.Skipf("bind %s: %v", stale, err)
	}
	syscall.Close(fd) // bound, never listened on: connect is refused
	_, err = Request(context.Background(), stale, TypeWalPush, []string{"x"}, time.Second, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), stale) {
		t.Errorf("no listener: %v", err)
	}

	missing := filepath.Join(dir, "missing")
	_, err = Request(context.Background(), missing, TypeWalPush, []string{"x"}, time.Second, time.Second)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
}

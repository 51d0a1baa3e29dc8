package wire_test

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

	"github.com/tusk-pg/tusk/internal/daemon/wire"
	"github.com/tusk-pg/tusk/internal/daemon/wire/wiretest"
)

// The client sends WAL-G's frame and returns the daemon's one-byte reply.
func TestRequestSendsFrameAndReadsReply(t *testing.T) {
	got := make(chan []byte, 1)
	sock := wiretest.Listen(t, "s", wiretest.Replier(wire.ReplyNotFound, got))
	reply, err := wire.Request(context.Background(), sock, wire.TypeWalFetch, []string{"000000010000000000000003", "pg_wal/RECOVERYXLOG"}, time.Second, 5*time.Second)
	if err != nil || reply != wire.ReplyNotFound {
		t.Fatalf("reply %q, %v", reply, err)
	}
	m := <-got
	args, err := wire.DecodeArgs(m[1:])
	if m[0] != wire.TypeWalFetch || err != nil || len(args) != 2 || args[0] != "000000010000000000000003" || args[1] != "pg_wal/RECOVERYXLOG" {
		t.Fatalf("daemon got %q %q (%v)", m[0], args, err)
	}
}

// A daemon that never answers: -timeout ends the wait, reported as a
// deadline like a net.Conn's.
func TestRequestTimesOut(t *testing.T) {
	sock := wiretest.Listen(t, "s", func(c net.Conn) { io.Copy(io.Discard, c) })
	start := time.Now()
	_, err := wire.Request(context.Background(), sock, wire.TypeWalPush, []string{"000000010000000000000003"}, time.Second, 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timed out after %v", d)
	}
}

// Cancelling the context ends a request blocked on the reply.
func TestRequestCancelled(t *testing.T) {
	sock := wiretest.Listen(t, "s", func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := wire.Request(ctx, sock, wire.TypeWalPush, []string{"000000010000000000000003"}, time.Second, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// A daemon closing without a reply, a socket nobody listens on, and a
// missing socket are each an error naming the socket.
func TestRequestFailures(t *testing.T) {
	closed := wiretest.Listen(t, "s", wiretest.Replier(0, make(chan []byte, 1)))
	_, err := wire.Request(context.Background(), closed, wire.TypeWalPush, []string{"x"}, time.Second, time.Second)
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
	_, err = wire.Request(context.Background(), stale, wire.TypeWalPush, []string{"x"}, time.Second, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), stale) {
		t.Errorf("no listener: %v", err)
	}

	missing := filepath.Join(dir, "missing")
	_, err = wire.Request(context.Background(), missing, wire.TypeWalPush, []string{"x"}, time.Second, time.Second)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
}

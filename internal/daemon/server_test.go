package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/daemon/wire"
)

var errNotArchived = errors.New("not archived")

type fakeHandler struct {
	mu      sync.Mutex
	pushed  []string
	fetched [][2]string
	block   chan struct{} // when set, Push waits on it
	active  atomic.Int32
	peak    atomic.Int32
}

func (h *fakeHandler) Push(ctx context.Context, path string) error {
	n := h.active.Add(1)
	defer h.active.Add(-1)
	for {
		p := h.peak.Load()
		if n <= p || h.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if h.block != nil {
		select {
		case <-h.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	h.pushed = append(h.pushed, path)
	h.mu.Unlock()
	if filepath.Base(path) == "000000010000000000000099" {
		return errors.New("upload failed")
	}
	return nil
}

func (h *fakeHandler) Fetch(ctx context.Context, name, dest string) error {
	h.mu.Lock()
	h.fetched = append(h.fetched, [2]string{name, dest})
	h.mu.Unlock()
	if name == "000000010000000000000077" {
		return errNotArchived
	}
	return nil
}

func (h *fakeHandler) NotFound(err error) bool { return errors.Is(err, errNotArchived) }

func startServer(t *testing.T, h Handler, maxConns int) (string, *Server) {
	t.Helper()
	dir, err := os.MkdirTemp("", "tusk-daemon-") // short path: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "d.sock")
	os.WriteFile(sock, []byte("stale"), 0o600) // replaced at start
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(sock)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want owner-only", st.Mode().Perm())
	}
	s := &Server{Handler: h, PGData: "/data/pg", MaxConnections: maxConns, PushTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock, s
}

func request(t *testing.T, sock string, typ byte, args ...string) byte {
	t.Helper()
	b, err := wire.Request(context.Background(), sock, typ, args, time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServerRequests(t *testing.T) {
	h := &fakeHandler{}
	sock, _ := startServer(t, h, 4)
	if r := request(t, sock, wire.TypeWalPush, "000000010000000000000003"); r != wire.ReplyOK {
		t.Fatalf("push reply %q", r)
	}
	if r := request(t, sock, wire.TypeWalPush, "000000010000000000000099"); r != wire.ReplyError {
		t.Fatalf("failed push reply %q", r)
	}
	if r := request(t, sock, wire.TypeWalFetch, "000000010000000000000004", "pg_wal/RECOVERYXLOG"); r != wire.ReplyOK {
		t.Fatalf("fetch reply %q", r)
	}
	if r := request(t, sock, wire.TypeWalFetch, "000000010000000000000077", "pg_wal/RECOVERYXLOG"); r != wire.ReplyNotFound {
		t.Fatalf("missing fetch reply %q", r)
	}
	if r := request(t, sock, wire.TypeWalFetch, "000000010000000000000004"); r != wire.ReplyError {
		t.Fatalf("fetch with one argument: %q", r)
	}
	if r := request(t, sock, wire.TypeWalPush, "../../etc/passwd"); r != wire.ReplyError {
		t.Fatalf("escaping push name: %q", r)
	}
	if r := request(t, sock, 'Z', "x"); r != wire.ReplyError {
		t.Fatalf("unknown type: %q", r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pushed[0] != "/data/pg/pg_wal/000000010000000000000003" {
		t.Fatalf("push path %q", h.pushed[0])
	}
	if h.fetched[0][1] != "/data/pg/pg_wal/RECOVERYXLOG" {
		t.Fatalf("fetch dest %q", h.fetched[0][1])
	}
}

// walg_archive's sequence: C then F on one connection, one-byte replies.
func TestServerCheckThenPushOnOneConnection(t *testing.T) {
	sock, _ := startServer(t, &fakeHandler{}, 2)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check, _ := wire.EncodeMessage(wire.TypeCheck, "CHECK")
	push, _ := wire.EncodeMessage(wire.TypeWalPush, "000000010000000000000005")
	var b [1]byte
	conn.Write(check)
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != wire.ReplyOK {
		t.Fatalf("check: %q %v", b[0], err)
	}
	conn.Write(push)
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != wire.ReplyOK {
		t.Fatalf("push: %q %v", b[0], err)
	}
	// Then the daemon closes: nothing more follows the one-byte reply.
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := conn.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("after reply: %d bytes, %v; want EOF", n, err)
	}
}

func TestServerSurvivesMalformedFrames(t *testing.T) {
	sock, _ := startServer(t, &fakeHandler{}, 2)
	for _, frame := range [][]byte{{'F', 0, 1}, {'f', 0, 10, 1, 2}, {'f', 0, 5, 9, 9}} {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(frame)
		if uc, ok := conn.(*net.UnixConn); ok {
			uc.CloseWrite() // a half-sent frame: the client gives up
		}
		var b [1]byte
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := conn.Read(b[:])
		if n == 1 && b[0] != wire.ReplyError {
			t.Fatalf("frame %x: reply %q", frame, b[0])
		}
		conn.Close()
	}
	if r := request(t, sock, wire.TypeWalPush, "000000010000000000000006"); r != wire.ReplyOK {
		t.Fatalf("daemon stopped serving after malformed frames: %q", r)
	}
}

func TestServerBoundsConnections(t *testing.T) {
	h := &fakeHandler{block: make(chan struct{})}
	sock, _ := startServer(t, h, 2)
	var wg sync.WaitGroup
	replies := make(chan byte, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := wire.Request(context.Background(), sock, wire.TypeWalPush, []string{"000000010000000000000007"}, time.Second, 10*time.Second)
			if err != nil {
				t.Error(err)
			}
			replies <- b
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if p := h.peak.Load(); p > 2 {
		t.Fatalf("%d requests served at once, limit 2", p)
	}
	close(h.block)
	wg.Wait()
	close(replies)
	for b := range replies {
		if b != wire.ReplyOK {
			t.Fatalf("waiting client got %q", b)
		}
	}
}

// Quiet connections never keep a client with work waiting: WAL-G's archive
// library keeps one connection open for the archiver's life, so a daemon
// must serve others beside any number of them. 64 connections that sent a
// check (or nothing) and stay open, four times TUSK_DAEMON_MAX_CONNECTIONS,
// do not delay a push; afterwards every one of them is still open and is
// served in turn.
func TestIdleConnectionsDoNotStarveClients(t *testing.T) {
	const idle = 64
	h := &fakeHandler{}
	sock, _ := startServer(t, h, 16)
	check, _ := wire.EncodeMessage(wire.TypeCheck, "CHECK")
	var quiet []net.Conn
	for i := range idle {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var b [1]byte
			if _, err := c.Write(check); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != wire.ReplyOK {
				t.Fatalf("check on connection %d: %q %v", i, b[0], err)
			}
		}
		quiet = append(quiet, c)
	}
	start := time.Now()
	b, err := wire.Request(context.Background(), sock, wire.TypeWalPush, []string{"000000010000000000000008"}, time.Second, 5*time.Second)
	if err != nil || b != wire.ReplyOK {
		t.Fatalf("push beside %d quiet connections: reply %q, %v (after %v)", idle, b, err, time.Since(start))
	}
	for i, c := range quiet {
		push, _ := wire.EncodeMessage(wire.TypeWalPush, fmt.Sprintf("0000000100000000000001%02X", i))
		c.SetDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if _, err := c.Write(push); err != nil {
			t.Fatalf("quiet connection %d was closed: %v", i, err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != wire.ReplyOK {
			t.Fatalf("push on quiet connection %d: %q %v", i, b[0], err)
		}
	}
	if n := len(h.pushed); n != idle+1 {
		t.Fatalf("%d pushes served, want %d", n, idle+1)
	}
}

// A quiet connection costs its goroutine and socket, no frame buffer:
// ConnBytes, which the memory plan counts per open connection, covers it.
// (The client ends of the sockets live in this process too and are counted
// against the bound as well.)
func TestQuietConnectionMemory(t *testing.T) {
	const n = 64
	sock, _ := startServer(t, &fakeHandler{}, 4)
	memory := func() uint64 {
		runtime.GC()
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64() + s[1].Value.Uint64()
	}
	// One connection first, so what the first one starts (the poller) is
	// not counted.
	if r := request(t, sock, wire.TypeCheck); r != wire.ReplyOK {
		t.Fatalf("check: %q", r)
	}
	before := memory()
	check, _ := wire.EncodeMessage(wire.TypeCheck, "CHECK")
	for range n {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var b [1]byte
		c.Write(check)
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
	}
	per := (int64(memory()) - int64(before)) / n
	t.Logf("%d bytes per quiet connection", per)
	if per > ConnBytes {
		t.Fatalf("a quiet connection holds %d bytes; the plan counts %d", per, ConnBytes)
	}
}

// At MaxOpen open connections a new client is still served: the
// connection quiet for longest is closed to make room, not the new one.
func TestMaxOpenClosesQuietestConnection(t *testing.T) {
	dir, err := os.MkdirTemp("", "tusk-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "d.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: &fakeHandler{}, PGData: "/data/pg", MaxConnections: 2, MaxOpen: 4}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	check, _ := wire.EncodeMessage(wire.TypeCheck, "CHECK")
	var quiet []net.Conn
	for range 4 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var b [1]byte
		c.Write(check)
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		quiet = append(quiet, c)
		time.Sleep(10 * time.Millisecond) // distinct quiet-since times
	}
	if r := request(t, sock, wire.TypeWalPush, "000000010000000000000009"); r != wire.ReplyOK {
		t.Fatalf("push at the open-connection bound: %q", r)
	}
	var b [1]byte
	quiet[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := quiet[0].Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("oldest quiet connection: %d bytes, %v; want it closed", n, err)
	}
	for i, c := range quiet[1:] {
		c.Write(check)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != wire.ReplyOK {
			t.Fatalf("quiet connection %d: %q %v", i+1, b[0], err)
		}
	}
}

// OnIdle runs once after start-up and once after a burst of requests,
// IdleAfter after the last one ended, and not while requests keep coming.
func TestServerOnIdle(t *testing.T) {
	dir, err := os.MkdirTemp("", "tusk-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "d.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	var idle atomic.Int32
	s := &Server{Handler: &fakeHandler{}, PGData: "/data/pg", MaxConnections: 2,
		OnIdle: func() { idle.Add(1) }, IdleAfter: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, l)
	time.Sleep(time.Second)
	if n := idle.Load(); n != 1 {
		t.Fatalf("OnIdle ran %d times after start-up, want 1", n)
	}
	for range 5 {
		if r := request(t, sock, wire.TypeWalPush, "000000010000000000000009"); r != wire.ReplyOK {
			t.Fatalf("push: %q", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := idle.Load(); n != 1 {
		t.Fatalf("OnIdle ran %d more times during the burst", n-1)
	}
	time.Sleep(time.Second)
	if n := idle.Load(); n != 2 {
		t.Fatalf("OnIdle ran %d times after the burst, want 1", n-1)
	}
}

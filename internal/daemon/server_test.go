package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	b, err := Request(context.Background(), sock, typ, args, time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServerRequests(t *testing.T) {
	h := &fakeHandler{}
	sock, _ := startServer(t, h, 4)
	if r := request(t, sock, TypeWalPush, "000000010000000000000003"); r != ReplyOK {
		t.Fatalf("push reply %q", r)
	}
	if r := request(t, sock, TypeWalPush, "000000010000000000000099"); r != ReplyError {
		t.Fatalf("failed push reply %q", r)
	}
	if r := request(t, sock, TypeWalFetch, "000000010000000000000004", "pg_wal/RECOVERYXLOG"); r != ReplyOK {
		t.Fatalf("fetch reply %q", r)
	}
	if r := request(t, sock, TypeWalFetch, "000000010000000000000077", "pg_wal/RECOVERYXLOG"); r != ReplyNotFound {
		t.Fatalf("missing fetch reply %q", r)
	}
	if r := request(t, sock, TypeWalFetch, "000000010000000000000004"); r != ReplyError {
		t.Fatalf("fetch with one argument: %q", r)
	}
	if r := request(t, sock, TypeWalPush, "../../etc/passwd"); r != ReplyError {
		t.Fatalf("escaping push name: %q", r)
	}
	if r := request(t, sock, 'Z', "x"); r != ReplyError {
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
	check, _ := EncodeMessage(TypeCheck, "CHECK")
	push, _ := EncodeMessage(TypeWalPush, "000000010000000000000005")
	var b [1]byte
	conn.Write(check)
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != ReplyOK {
		t.Fatalf("check: %q %v", b[0], err)
	}
	conn.Write(push)
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != ReplyOK {
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
		if n == 1 && b[0] != ReplyError {
			t.Fatalf("frame %x: reply %q", frame, b[0])
		}
		conn.Close()
	}
	if r := request(t, sock, TypeWalPush, "000000010000000000000006"); r != ReplyOK {
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
			b, err := Request(context.Background(), sock, TypeWalPush, []string{"000000010000000000000007"}, time.Second, 10*time.Second)
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
		if b != ReplyOK {
			t.Fatalf("waiting client got %q", b)
		}
	}
}

// Package daemon is WAL-G's archiving daemon: the server of its socket
// protocol (package wire) and the WAL work behind the requests.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/internal/daemon/wire"
)

// Handler does the work behind the requests.
type Handler interface {
	// Push archives the WAL file at path; nil only once it is stored.
	Push(ctx context.Context, path string) error
	// Fetch restores the archived file name to dest; the error wraps
	// storage.ErrNotFound (see NotFound) when it is not archived.
	Fetch(ctx context.Context, name, dest string) error
	// NotFound reports whether a Fetch error means "not archived".
	NotFound(err error) bool
}

// Server serves WAL-G's daemon protocol on a Unix socket.
//
// Work and memory are bounded per request, not per connection: WAL-G's
// archive library keeps one connection open for the archiver's life, and
// a quiet connection must never keep a client with work waiting. A quiet
// connection holds a goroutine and its socket, nothing else; a request
// takes one of MaxConnections slots (and a frame buffer) from the moment
// its header arrives until its reply is sent.
type Server struct {
	Handler Handler
	// PGData resolves the names clients send, as WAL-G's daemon does.
	PGData string
	// MaxConnections bounds the requests served at once
	// (TUSK_DAEMON_MAX_CONNECTIONS); more wait for a slot. Open
	// connections that send nothing do not count.
	MaxConnections int
	// MaxOpen bounds open connections (DefaultMaxOpen when 0). When a
	// client connects beyond it, the connection quiet for longest is
	// closed to make room; its client reconnects when it has work.
	MaxOpen int
	// PushTimeout is WALG_DAEMON_WAL_UPLOAD_TIMEOUT.
	PushTimeout time.Duration
	// IdleTimeout closes a connection that sends nothing for this long;
	// 0: never (a quiet connection costs no slot).
	IdleTimeout time.Duration
	Log         *slog.Logger
	// Work, when set, is the context requests run under; it outlives the
	// context given to Serve, so a stopping daemon (Serve's context done:
	// no new connections) can still finish the requests in flight.
	Work context.Context
	// OnIdle, when set, runs once IdleAfter has passed since Serve began
	// or the last request ended, with none in flight: the moment to give
	// memory that start-up or a burst used back to the system.
	OnIdle    func()
	IdleAfter time.Duration

	bufs  sync.Pool     // frame buffers, at most MaxConnections live
	slots chan struct{} // one per request in flight

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	inFlight int
	idle     *time.Timer
}

// DefaultMaxOpen bounds open connections when Server.MaxOpen is 0: far
// more than PostgreSQL's archiver and restore processes keep open, and
// small in memory (see ConnBytes).
const DefaultMaxOpen = 256

// Memory, for the plan: a request in flight holds its frame buffer and a
// handler's goroutine; an open connection its goroutine's stack, its
// socket and this package's state (measured: TestQuietConnectionMemory).
const (
	RequestBytes = wire.MaxMessage + 16<<10
	ConnBytes    = 8 << 10
)

// bodyTimeout bounds the wait for a frame's body once its header has
// arrived (clients send a frame in one write), so a client that stalls
// mid-frame holds a request slot only briefly.
const bodyTimeout = 10 * time.Second

// serverConn is one open connection; idleSince is zero while it has a
// request (from its header to its reply).
type serverConn struct {
	net.Conn
	idleSince time.Time
}

// Listen creates the socket at path, replacing a stale one as WAL-G does,
// readable and writable by the owner only.
func Listen(socketPath string) (net.Listener, error) {
	if err := os.Remove(socketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", socketPath, err)
	}
	l, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", socketPath, err)
	}
	if err := os.Chmod(socketPath, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", socketPath, err)
	}
	return l, nil
}

// Serve accepts connections until ctx is cancelled, then closes the quiet
// ones and waits for the requests in flight to end (each is bounded by its
// own timeout).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.slots = make(chan struct{}, max(s.MaxConnections, 1))
	s.bufs.New = func() any { b := make([]byte, wire.MaxMessage); return &b }
	s.conns = map[*serverConn]struct{}{}
	maxOpen := s.MaxOpen
	if maxOpen <= 0 {
		maxOpen = DefaultMaxOpen
	}
	open := make(chan struct{}, maxOpen)
	work := s.Work
	if work == nil {
		work = ctx
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		s.closeIdle(false)
	})
	defer stop()
	// Start-up's garbage goes back too, if no request comes first.
	s.mu.Lock()
	s.armIdle()
	s.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// Out of file descriptors, or a connection reset before it
			// was accepted: wait a little and go on, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log().Warn("daemon: accept failed; retrying", "error", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		select {
		case open <- struct{}{}:
		default:
			// At the bound: make room by closing the quietest
			// connection, or wait for one to end.
			s.closeIdle(true)
			select {
			case open <- struct{}{}:
			case <-ctx.Done():
				conn.Close()
				return nil
			}
		}
		c := &serverConn{Conn: conn, idleSince: time.Now()}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				<-open
			}()
			s.serveConn(ctx, work, c)
		})
	}
}

// closeIdle closes the connection quiet for longest (oldest) or every
// quiet connection. Closing ends its goroutine's wait for a header.
func (s *Server) closeIdle(oldest bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var victim *serverConn
	for c := range s.conns {
		if c.idleSince.IsZero() {
			continue
		}
		if !oldest {
			c.Close()
			continue
		}
		if victim == nil || c.idleSince.Before(victim.idleSince) {
			victim = c
		}
	}
	if victim != nil {
		s.log().Warn("daemon: too many open connections; closing the one quiet for longest",
			"quiet_for", time.Since(victim.idleSince).Round(time.Second))
		victim.Close()
	}
}

func (s *Server) requestStarts() {
	s.mu.Lock()
	s.inFlight++
	if s.idle != nil {
		s.idle.Stop()
	}
	s.mu.Unlock()
}

func (s *Server) requestEnds() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	s.armIdle()
}

// armIdle starts (or restarts) the wait for OnIdle unless a request is in
// flight. Called with s.mu held.
func (s *Server) armIdle() {
	if s.inFlight > 0 || s.OnIdle == nil {
		return
	}
	if s.idle == nil {
		s.idle = time.AfterFunc(s.IdleAfter, func() {
			s.mu.Lock()
			busy := s.inFlight > 0
			s.mu.Unlock()
			if !busy {
				s.OnIdle()
			}
		})
		return
	}
	s.idle.Reset(s.IdleAfter)
}

// setIdle marks c quiet (waiting for a header) or busy; it reports false
// when the server is stopping and c should close instead of waiting.
func (s *Server) setIdle(ctx context.Context, c *serverConn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idle {
		c.idleSince = time.Now()
		return ctx.Err() == nil
	}
	c.idleSince = time.Time{}
	return true
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// serveConn handles one client: any number of Check messages, then one
// push or fetch, after which the connection is closed (WAL-G's rules).
// Between requests it holds no buffer and no request slot.
func (s *Server) serveConn(ctx, work context.Context, conn *serverConn) {
	defer conn.Close()
	for {
		if !s.setIdle(ctx, conn, true) {
			return
		}
		if s.IdleTimeout > 0 {
			conn.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		} else {
			conn.SetReadDeadline(time.Time{})
		}
		var hdr [wire.HeaderSize]byte
		_, err := io.ReadFull(conn, hdr[:])
		s.setIdle(ctx, conn, false)
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				s.log().Error("daemon: bad request, closing connection", "error", fmt.Errorf("%w: truncated header", wire.ErrCorrupt))
				reply(conn, wire.ReplyError)
			}
			return
		}
		select {
		case s.slots <- struct{}{}:
		case <-work.Done():
			return
		}
		s.requestStarts()
		more := s.serveRequest(work, conn, hdr)
		s.requestEnds()
		<-s.slots
		if !more {
			return
		}
	}
}

// serveRequest reads the body of the frame whose header is hdr and answers
// it; it reports whether the connection may send another request.
func (s *Server) serveRequest(ctx context.Context, conn net.Conn, hdr [wire.HeaderSize]byte) bool {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	conn.SetReadDeadline(time.Now().Add(bodyTimeout))
	msg, err := wire.ReadBody(conn, hdr, *bp)
	if err != nil {
		s.log().Error("daemon: bad request, closing connection", "error", err)
		reply(conn, wire.ReplyError)
		return false
	}
	conn.SetReadDeadline(time.Time{})
	switch msg.Type {
	case wire.TypeCheck:
		return reply(conn, wire.ReplyOK)
	case wire.TypeWalPush:
		reply(conn, s.push(ctx, string(msg.Body)))
	case wire.TypeWalFetch:
		reply(conn, s.fetch(ctx, msg.Body))
	default:
		s.log().Error("daemon: unknown message type, closing connection", "type", fmt.Sprintf("%q", msg.Type))
		reply(conn, wire.ReplyError)
	}
	return false
}

func reply(conn net.Conn, b byte) bool {
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := conn.Write([]byte{b})
	return err == nil
}

// resolve turns a fetch destination into a file path as WAL-G's daemon
// does: a path that already contains PGDATA is used as is, anything else
// (PostgreSQL's %p, "pg_wal/RECOVERYXLOG") is taken relative to PGDATA.
func (s *Server) resolve(p string) string {
	if strings.Contains(p, s.PGData) {
		return p
	}
	return filepath.Join(s.PGData, p)
}

// pushPath maps what a client sends for wal-push to the WAL file: WAL-G's
// clients send %f (a bare name, taken from PGDATA/pg_wal); an absolute path
// inside PGDATA is used as is, and (a tusk addition) %p, "pg_wal/<name>", is
// taken relative to PGDATA instead of WAL-G's doubled pg_wal/pg_wal.
func (s *Server) pushPath(name string) (string, error) {
	if name == "" || strings.Contains(name, "..") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("refusing WAL file name %q", name)
	}
	switch {
	case filepath.IsAbs(name):
		clean := filepath.Clean(name)
		if !strings.HasPrefix(clean, filepath.Clean(s.PGData)+string(filepath.Separator)) {
			return "", fmt.Errorf("WAL file %s is outside PGDATA %s", name, s.PGData)
		}
		return clean, nil
	case strings.HasPrefix(name, "pg_wal/"):
		return filepath.Join(s.PGData, name), nil
	case strings.Contains(name, "/"):
		return "", fmt.Errorf("refusing WAL file name %q", name)
	}
	return filepath.Join(s.PGData, "pg_wal", name), nil
}

func (s *Server) push(ctx context.Context, name string) byte {
	if s.PGData == "" {
		s.log().Error("daemon: wal-push needs PGDATA to locate WAL files", "file", name)
		return wire.ReplyError
	}
	p, err := s.pushPath(name)
	if err != nil {
		s.log().Error("daemon: wal-push", "error", err)
		return wire.ReplyError
	}
	pctx := ctx
	if s.PushTimeout > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, s.PushTimeout)
		defer cancel()
	}
	if err := s.Handler.Push(pctx, p); err != nil {
		s.log().Error("daemon: wal-push failed", "file", name, "error", err)
		return wire.ReplyError
	}
	return wire.ReplyOK
}

func (s *Server) fetch(ctx context.Context, body []byte) byte {
	args, err := wire.DecodeArgs(body)
	if err != nil || len(args) != 2 {
		s.log().Error("daemon: wal-fetch needs 2 arguments", "error", err)
		return wire.ReplyError
	}
	if s.PGData == "" {
		s.log().Error("daemon: wal-fetch needs PGDATA to resolve the destination", "file", args[0])
		return wire.ReplyError
	}
	name, dest := args[0], s.resolve(args[1])
	if strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
		s.log().Error("daemon: refusing wal-fetch of a suspicious name", "name", name)
		return wire.ReplyError
	}
	if err := s.Handler.Fetch(ctx, name, dest); err != nil {
		if s.Handler.NotFound(err) {
			s.log().Info("daemon: wal-fetch: not archived", "file", name)
			return wire.ReplyNotFound
		}
		s.log().Error("daemon: wal-fetch failed", "file", name, "error", err)
		return wire.ReplyError
	}
	return wire.ReplyOK
}

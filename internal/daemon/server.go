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
type Server struct {
	Handler Handler
	// PGData resolves the names clients send, as WAL-G's daemon does.
	PGData string
	// MaxConnections bounds connections served at once; more clients wait
	// in the listen backlog (their connect succeeds, so they do not time
	// out on connecting).
	MaxConnections int
	// PushTimeout is WALG_DAEMON_WAL_UPLOAD_TIMEOUT.
	PushTimeout time.Duration
	// IdleTimeout closes a connection that sends nothing for this long
	// (a stuck client must not hold a connection slot forever).
	IdleTimeout time.Duration
	Log         *slog.Logger
	// Work, when set, is the context requests run under; it outlives the
	// context given to Serve, so a stopping daemon (Serve's context done:
	// no new connections) can still finish the requests in flight.
	Work context.Context

	bufs sync.Pool // per-connection frame buffers, at most MaxConnections live
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

// Serve accepts connections until ctx is cancelled, then waits for the
// requests in flight to end (each is bounded by its own timeout).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	maxConns := max(s.MaxConnections, 1)
	slots := make(chan struct{}, maxConns)
	s.bufs.New = func() any { b := make([]byte, maxMessage); return &b }
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		conn, err := l.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		work := s.Work
		if work == nil {
			work = ctx
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			s.serveConn(work, conn)
		}()
	}
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// serveConn handles one client: any number of Check messages, then one
// push or fetch, after which the connection is closed (WAL-G's rules).
func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = 10 * time.Minute
	}
	for {
		conn.SetReadDeadline(time.Now().Add(idle))
		msg, err := ReadMessage(conn, *bp)
		if err != nil {
			if err != io.EOF && !errors.Is(err, net.ErrClosed) {
				s.log().Error("daemon: bad request, closing connection", "error", err)
				reply(conn, ReplyError)
			}
			return
		}
		conn.SetReadDeadline(time.Time{})
		switch msg.Type {
		case TypeCheck:
			if !reply(conn, ReplyOK) {
				return
			}
			continue
		case TypeWalPush:
			reply(conn, s.push(ctx, string(msg.Body)))
		case TypeWalFetch:
			reply(conn, s.fetch(ctx, msg.Body))
		default:
			s.log().Error("daemon: unknown message type, closing connection", "type", fmt.Sprintf("%q", msg.Type))
			reply(conn, ReplyError)
		}
		return
	}
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
		return ReplyError
	}
	p, err := s.pushPath(name)
	if err != nil {
		s.log().Error("daemon: wal-push", "error", err)
		return ReplyError
	}
	pctx := ctx
	if s.PushTimeout > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, s.PushTimeout)
		defer cancel()
	}
	if err := s.Handler.Push(pctx, p); err != nil {
		s.log().Error("daemon: wal-push failed", "file", name, "error", err)
		return ReplyError
	}
	return ReplyOK
}

func (s *Server) fetch(ctx context.Context, body []byte) byte {
	args, err := DecodeArgs(body)
	if err != nil || len(args) != 2 {
		s.log().Error("daemon: wal-fetch needs 2 arguments", "error", err)
		return ReplyError
	}
	if s.PGData == "" {
		s.log().Error("daemon: wal-fetch needs PGDATA to resolve the destination", "file", args[0])
		return ReplyError
	}
	name, dest := args[0], s.resolve(args[1])
	if strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
		s.log().Error("daemon: refusing wal-fetch of a suspicious name", "name", name)
		return ReplyError
	}
	if err := s.Handler.Fetch(ctx, name, dest); err != nil {
		if s.Handler.NotFound(err) {
			s.log().Info("daemon: wal-fetch: not archived", "file", name)
			return ReplyNotFound
		}
		s.log().Error("daemon: wal-fetch failed", "file", name, "error", err)
		return ReplyError
	}
	return ReplyOK
}

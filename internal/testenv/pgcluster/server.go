package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a cluster without a test: every method returns its error, and
// Close releases what Create, Adopt or Clone made. Benchmarks use it
// directly; Cluster wraps it for tests.
type Server struct {
	opts    Options
	base    string // owned by the server user: sock/, postgres.log, often data/
	ownBase bool   // base is a temp dir this Server made and Close removes
	dataDir string
	sockDir string
	logPath string
	port    int
	owner   *ServerUser

	cmd    *exec.Cmd // nil when stopped
	exited chan struct{}
	logF   *os.File
}

// ServerUser is who runs PostgreSQL: "postgres" when the process is root,
// otherwise the current user (Cred nil: no switch).
type ServerUser struct {
	UID, GID int
	Cred     *syscall.Credential
}

// LookupServerUser finds the OS user PostgreSQL runs as.
func LookupServerUser() (*ServerUser, error) {
	if os.Geteuid() != 0 {
		return &ServerUser{UID: os.Getuid(), GID: os.Getgid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres OS user (install postgresql-15): %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("postgres gid %q: %w", u.Gid, err)
	}
	return &ServerUser{UID: uid, GID: gid, Cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

// Apply makes cmd run as this user; a no-op when no switch is needed.
func (u *ServerUser) Apply(cmd *exec.Cmd) {
	if u.Cred == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = u.Cred
}

// Mkdir makes path (and missing parents) with mode, owned by this user.
func (u *ServerUser) Mkdir(path string, mode os.FileMode) error {
	if err := os.MkdirAll(path, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, u.UID, u.GID)
}

// WriteFile writes a file owned by this user. WriteFile keeps an existing
// file's mode, so the mode is set explicitly too.
func (u *ServerUser) WriteFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, u.UID, u.GID)
}

// tempDir makes a new directory under the system temp dir owned by u: its
// sticky 1777 parent lets that user reach it, and the path stays short
// enough for a unix socket.
func (u *ServerUser) tempDir() (string, error) {
	dir, err := os.MkdirTemp("", "tusk-pg-")
	if err != nil {
		return "", err
	}
	if err := os.Chown(dir, u.UID, u.GID); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("chown %s: %w", dir, err)
	}
	return dir, nil
}

// Create runs initdb into opts.Dir/data (or a fresh temp dir) and returns
// the cluster, not started. The superuser is "postgres" with trust
// authentication on the private socket.
func Create(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	s.dataDir = filepath.Join(s.base, "data")
	args := []string{"-D", s.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions"}
	if opts.WALSegSizeMB != 0 {
		args = append(args, "--wal-segsize="+strconv.Itoa(opts.WALSegSizeMB))
	}
	if opts.DataChecksums {
		args = append(args, "--data-checksums")
	}
	cmd := exec.Command(s.bin("initdb"), args...)
	cmd.Env = s.Env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.owner.Cred, Setpgid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, errors.Join(fmt.Errorf("initdb %s: %w\n%s", s.dataDir, err, out), s.Close())
	}
	if err := s.writeConf(); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// Adopt takes an existing, stopped data directory, e.g. one made with
// CopyDataDir. Its harness settings block is rewritten with a new port and
// socket dir and opts.Conf; the rest of postgresql.conf is kept.
func Adopt(dataDir string, opts Options) (*Server, error) {
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err == nil {
		return nil, fmt.Errorf("%s has a postmaster.pid: is a server still running on it?", dataDir)
	}
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	s.dataDir = dataDir
	if err := s.writeConf(); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func newServer(opts Options) (*Server, error) {
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir
	}
	if _, err := os.Stat(filepath.Join(opts.BinDir, "postgres")); err != nil {
		return nil, fmt.Errorf("no PostgreSQL in %s (run scripts/install-deps.sh): %w", opts.BinDir, err)
	}
	su, err := LookupServerUser()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, owner: su, port: port, base: opts.Dir}
	if s.base == "" {
		if s.base, err = su.tempDir(); err != nil {
			return nil, err
		}
		s.ownBase = true
	} else if err := su.Mkdir(s.base, 0o755); err != nil {
		return nil, err
	}
	s.sockDir = filepath.Join(s.base, "sock")
	s.logPath = filepath.Join(s.base, "postgres.log")
	if err := su.Mkdir(s.sockDir, 0o700); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// freePort picks a port nobody listens on. The server opens no TCP socket
// unless Options.TCP, but the port names its unix socket and lock file, and a distinct number
// keeps logs and ps output unambiguous.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) bin(name string) string { return filepath.Join(s.opts.BinDir, name) }

// Env is the complete environment of initdb and the server; archive_command
// and restore_command inherit it.
func (s *Server) Env() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		// The server user's real home is not ours to write into; tools run by
		// archive_command that keep caches in $HOME get the cluster's dir.
		"HOME=" + s.base,
		"LC_ALL=C",
		"TZ=UTC",
	}
	if s.opts.ServerConnEnv {
		env = append(env, s.ConnEnv()...)
	}
	return append(env, s.opts.Env...)
}

func (s *Server) writeConf() error {
	path := filepath.Join(s.dataDir, "postgresql.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if i := bytes.Index(old, []byte("\n"+confMarker)); i >= 0 {
		old = old[:i+1]
	}
	var b bytes.Buffer
	b.Write(old)
	fmt.Fprintf(&b, "%s (rewritten by the test harness)\n", confMarker)
	fmt.Fprintf(&b, "port = %d\n", s.port)
	if s.opts.TCP {
		b.WriteString("listen_addresses = '127.0.0.1'\n")
	} else {
		b.WriteString("listen_addresses = ''\n")
	}
	fmt.Fprintf(&b, "unix_socket_directories = '%s'\n", s.sockDir)
	// Test clusters never survive a crash, so durability is wasted time.
	b.WriteString("fsync = off\n")
	b.WriteString("synchronous_commit = off\n")
	b.WriteString("shared_buffers = 32MB\n")
	b.WriteString("logging_collector = off\n")
	b.WriteString("log_line_prefix = '%m [%p] '\n")
	for _, l := range s.opts.Conf {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	// WriteFile keeps the existing file's owner and mode.
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// Reconfigure replaces the Conf lines of the harness settings block (the
// server reads them at its next start).
func (s *Server) Reconfigure(conf []string) error {
	s.opts.Conf = conf
	return s.writeConf()
}

// DataDir is the cluster's PGDATA.
func (s *Server) DataDir() string { return s.dataDir }

// BaseDir holds the socket dir, the log and (unless adopted) the data dir.
func (s *Server) BaseDir() string { return s.base }

// LogFile is the server's log (its stderr).
func (s *Server) LogFile() string { return s.logPath }

// SocketDir is the directory of the server's unix socket (PGHOST).
func (s *Server) SocketDir() string { return s.sockDir }

// Port is the server's port number (PGPORT).
func (s *Server) Port() int { return s.port }

// Owner is the OS user the server runs as.
func (s *Server) Owner() *ServerUser { return s.owner }

// ConnEnv is what a libpq-style client needs to reach the server.
func (s *Server) ConnEnv() []string {
	return []string{
		"PGHOST=" + s.sockDir,
		"PGPORT=" + strconv.Itoa(s.port),
		"PGUSER=postgres",
		"PGDATABASE=postgres",
		"PGDATA=" + s.dataDir,
	}
}

// Pid is the postmaster's pid, 0 when stopped.
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Start runs the server and waits until it accepts connections (as a
// primary, or as a hot standby during archive recovery).
func (s *Server) Start(ctx context.Context) error {
	if s.cmd != nil {
		return fmt.Errorf("start on a started cluster %s", s.dataDir)
	}
	logF, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin("postgres"), "-D", s.dataDir)
	cmd.Env = s.Env()
	cmd.Dir = s.base
	cmd.Stdout, cmd.Stderr = logF, logF
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.owner.Cred,
		// Own process group: Stop can kill the postmaster, its backends
		// and whatever archive_command started, all at once.
		Setpgid: true,
		// If the test or benchmark dies (e.g. go test's timeout panic, which
		// skips cleanups) the postmaster dies with it; its children follow
		// when they notice the postmaster is gone.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logF.Close()
		return fmt.Errorf("starting postgres: %w", err)
	}
	s.cmd, s.logF, s.exited = cmd, logF, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.exited)

	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-s.exited:
			err := fmt.Errorf("postgres exited during startup (%v)\n%s", cmd.ProcessState, s.LogTail())
			s.cmd = nil
			logF.Close()
			return err
		case <-ctx.Done():
			_ = s.stop(syscall.SIGQUIT, 10*time.Second)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if st := s.pmStatus(); st == "ready" || st == "standby" {
			return nil
		}
		if time.Now().After(deadline) {
			_ = s.stop(syscall.SIGQUIT, 10*time.Second)
			return fmt.Errorf("postgres not ready after 2m\n%s", s.LogTail())
		}
	}
}

// pmStatus reads the postmaster status line of postmaster.pid (the 8th), the
// same readiness signal pg_ctl -w uses. It only trusts a file naming our pid.
func (s *Server) pmStatus() string {
	b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(s.cmd.Process.Pid) {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// Stop shuts the server down in "fast" mode (SIGINT) and waits up to
// timeout. With archive_mode on, the archiver still gets a last pass over
// ready segments. Stopping a stopped server does nothing.
func (s *Server) Stop(timeout time.Duration) error {
	if s.cmd == nil {
		return nil
	}
	return s.stop(syscall.SIGINT, timeout)
}

// Kill shuts the server down in "immediate" mode (SIGQUIT): no last
// archiving pass, crash recovery at the next start.
func (s *Server) Kill() error {
	if s.cmd == nil {
		return nil
	}
	return s.stop(syscall.SIGQUIT, 30*time.Second)
}

// stop sends sig, waits up to timeout, then kills the whole process group.
// It returns an error when the server had to be killed or exited non-zero
// (except after SIGQUIT, whose exit status is always non-zero).
func (s *Server) stop(sig syscall.Signal, timeout time.Duration) error {
	cmd := s.cmd
	defer func() {
		s.cmd = nil
		s.logF.Close()
	}()
	pid := cmd.Process.Pid
	var err error
	select {
	case <-s.exited:
		err = fmt.Errorf("postgres %s had already exited with %v", s.dataDir, cmd.ProcessState)
	default:
		_ = syscall.Kill(pid, sig)
		select {
		case <-s.exited:
			if sig != syscall.SIGQUIT && !cmd.ProcessState.Success() {
				err = fmt.Errorf("postgres %s exited with %v on shutdown", s.dataDir, cmd.ProcessState)
			}
		case <-time.After(timeout):
			err = fmt.Errorf("postgres %s did not stop within %v; killed", s.dataDir, timeout)
		}
	}
	// Backends, archiver children and their children share the group; any
	// survivor (there should be none after a clean exit) dies here.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-s.exited
	return err
}

// Close stops a running server, kills processes left behind that name the
// cluster's paths, and removes the temp dir Create or Adopt made (not a
// caller's opts.Dir).
func (s *Server) Close() error {
	var err error
	if s.cmd != nil {
		err = s.stop(syscall.SIGINT, 30*time.Second)
	}
	s.KillStragglers(nil)
	if s.ownBase {
		err = errors.Join(err, os.RemoveAll(s.base))
	}
	return err
}

// KillStragglers kills processes that left the server's process group (e.g.
// a detached prefetcher started by restore_command) but still name one of
// the cluster's paths on their command line, reporting each to logf when
// it is not nil.
func (s *Server) KillStragglers(logf func(format string, args ...any)) {
	var paths []string
	if s.base != "" {
		paths = append(paths, s.base+"/")
	}
	if s.dataDir != "" {
		// Each needle ends with a separator so /tmp/x1/ never matches /tmp/x12/.
		paths = append(paths, s.dataDir+"/", s.dataDir+"\x00")
	}
	killStragglers(logf, paths...)
}

func killStragglers(logf func(format string, args ...any), paths ...string) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, p := range paths {
			if bytes.Contains(cl, []byte(p)) {
				if logf != nil {
					logf("pgcluster: killing leftover process %d: %s", pid, bytes.ReplaceAll(cl, []byte{0}, []byte{' '}))
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// LogTail returns the end of the server log for failure messages.
func (s *Server) LogTail() string {
	const max = 32 << 10
	f, err := os.Open(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// CopyDataDir copies the stopped cluster's data dir to dst (which must not
// exist), keeping owners and modes: a filesystem-level base backup.
func (s *Server) CopyDataDir(dst string) error {
	if s.Running() {
		return fmt.Errorf("copying %s needs a stopped cluster", s.dataDir)
	}
	if out, err := exec.Command("cp", "-a", s.dataDir, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %w\n%s", s.dataDir, dst, err, out)
	}
	return nil
}

// Clone copies the stopped cluster's data dir into opts.Dir/data (a new
// temp dir when opts.Dir is empty) and adopts it with opts (not started).
// An empty opts.BinDir keeps this cluster's.
func (s *Server) Clone(opts Options) (*Server, error) {
	if opts.BinDir == "" {
		opts.BinDir = s.opts.BinDir
	}
	c, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	c.dataDir = filepath.Join(c.base, "data")
	if err := s.CopyDataDir(c.dataDir); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	if err := c.writeConf(); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// Connect opens a connection as the postgres superuser over the socket.
func (s *Server) Connect(ctx context.Context) (*pgx.Conn, error) {
	cs := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.sockDir, s.port)
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", s.dataDir, err)
	}
	return conn, nil
}

// Exec runs sql on a fresh connection (several statements are fine when
// there are no args).
func (s *Server) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := s.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", firstLine(sql), err)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// QueryRow runs a query on a fresh connection, closed after Scan.
func (s *Server) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	ctx, cancel := context.WithCancel(ctx)
	conn, err := s.Connect(ctx)
	if err != nil {
		cancel()
		return errRow{err}
	}
	return &connRow{Row: conn.QueryRow(ctx, sql, args...), conn: conn, cancel: cancel}
}

type connRow struct {
	pgx.Row
	conn   *pgx.Conn
	cancel context.CancelFunc
}

func (r *connRow) Scan(dest ...any) error {
	defer r.cancel()
	defer r.conn.Close(context.Background())
	return r.Row.Scan(dest...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// ArchiverStatus is a row of pg_stat_archiver.
type ArchiverStatus struct {
	ArchivedCount   int64
	LastArchivedWAL string
	FailedCount     int64
	LastFailedWAL   string
}

func (a ArchiverStatus) String() string {
	return fmt.Sprintf("archived %d (last %q), failed %d (last %q)",
		a.ArchivedCount, a.LastArchivedWAL, a.FailedCount, a.LastFailedWAL)
}

// Archiver reads pg_stat_archiver.
func (s *Server) Archiver(ctx context.Context) (ArchiverStatus, error) {
	var a ArchiverStatus
	err := s.QueryRow(ctx, `select archived_count, coalesce(last_archived_wal, ''),
		failed_count, coalesce(last_failed_wal, '') from pg_stat_archiver`).
		Scan(&a.ArchivedCount, &a.LastArchivedWAL, &a.FailedCount, &a.LastFailedWAL)
	return a, err
}

// Command prepares a PostgreSQL client program from BinDir (psql, pgbench,
// ...) with the connection environment set; it runs as the calling user.
func (s *Server) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(s.bin(name), args...)
	cmd.Env = append(os.Environ(), s.ConnEnv()...)
	return cmd
}

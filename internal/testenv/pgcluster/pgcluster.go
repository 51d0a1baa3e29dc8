// Package pgcluster runs throwaway PostgreSQL clusters for tests: initdb into
// a private temp dir, a private unix socket, no TCP listener, and cleanup that
// leaves no server process behind even when the test fails.
//
// When the test runs as root, every server-side program (initdb, postgres and
// so whatever archive_command / restore_command runs) runs as the "postgres"
// OS user, because PostgreSQL refuses to run as root. Directories the server
// must write (data dir, socket dir, storage dirs handed to tusk) therefore
// come from TempDir, which makes them owned by that user.
package pgcluster

import (
	"bytes"
	"context"
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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBinDir holds the PostgreSQL 15 binaries of Debian 12.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// confMarker starts the block of postgresql.conf the harness owns. Everything
// from it to the end of the file is rewritten whenever a cluster is created or
// adopted, so a copied data dir never keeps its source's port or archiving.
const confMarker = "# --- pgcluster settings"

// Options configure a cluster. The zero value is a PostgreSQL 15 cluster with
// 16 MiB WAL segments and no data checksums.
type Options struct {
	// BinDir holds initdb and postgres; DefaultBinDir when empty.
	BinDir string
	// WALSegSizeMB is initdb's --wal-segsize (a power of two, 1..1024); 0
	// keeps the default of 16.
	WALSegSizeMB int
	// DataChecksums runs initdb with --data-checksums.
	DataChecksums bool
	// Conf lines are appended to postgresql.conf after the harness's own
	// settings, so they win.
	Conf []string
	// Env is added to the server's environment; archive_command and
	// restore_command inherit it. The server does not inherit the test
	// process's environment, so stray WALG_*/AWS_* settings cannot leak in.
	Env []string
}

// Cluster is one PostgreSQL data directory and, while started, its server.
// Its methods fail the test on error, so call them from the test's goroutine.
type Cluster struct {
	t       testing.TB
	opts    Options
	base    string // owned by the server user: sock/, postgres.log, often data/
	dataDir string
	sockDir string
	logPath string
	port    int
	owner   *serverUser

	cmd    *exec.Cmd // nil when stopped
	exited chan struct{}
	logF   *os.File
}

// serverUser is who runs PostgreSQL: "postgres" when the test is root,
// otherwise the current user (cred nil: no switch).
type serverUser struct {
	uid, gid int
	home     string
	cred     *syscall.Credential
}

func lookupServerUser() (*serverUser, error) {
	if os.Geteuid() != 0 {
		return &serverUser{uid: os.Getuid(), gid: os.Getgid(), home: os.Getenv("HOME")}, nil
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
	return &serverUser{uid: uid, gid: gid, home: u.HomeDir,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

func mustServerUser(t testing.TB) *serverUser {
	t.Helper()
	su, err := lookupServerUser()
	if err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	return su
}

// AsServerUser makes cmd run as the OS user that runs PostgreSQL, e.g. to run
// tusk the way archive_command would. It is a no-op unless the test is root.
func AsServerUser(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	su := mustServerUser(t)
	if su.cred == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = su.cred
}

// TempDir returns a new empty directory the PostgreSQL server user owns and
// can write, e.g. a WALG_FILE_PREFIX for archive_command. It is removed when
// the test ends. Unlike t.TempDir it sits directly under the system temp dir,
// whose sticky 1777 mode lets that user reach it, and its path stays short
// enough for a unix socket.
func TempDir(t testing.TB) string {
	t.Helper()
	return tempDir(t, mustServerUser(t))
}

func tempDir(t testing.TB, su *serverUser) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tusk-pg-")
	if err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgcluster: removing %s: %v", dir, err)
		}
	})
	if err := os.Chown(dir, su.uid, su.gid); err != nil {
		t.Fatalf("pgcluster: chown %s: %v", dir, err)
	}
	return dir
}

// New runs initdb into a fresh temp dir and returns the cluster, not started.
// The superuser is "postgres" with trust authentication on the private socket.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	c.dataDir = filepath.Join(c.base, "data")
	args := []string{"-D", c.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions"}
	if opts.WALSegSizeMB != 0 {
		args = append(args, "--wal-segsize="+strconv.Itoa(opts.WALSegSizeMB))
	}
	if opts.DataChecksums {
		args = append(args, "--data-checksums")
	}
	cmd := exec.Command(c.bin("initdb"), args...)
	cmd.Env = c.serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.owner.cred, Setpgid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgcluster: initdb %s: %v\n%s", c.dataDir, err, out)
	}
	c.writeConf()
	return c
}

// Open adopts an existing, stopped data directory, e.g. one made with
// CopyDataDir into a TempDir. Its harness settings block is rewritten with a
// new port and socket dir and opts.Conf; the rest of postgresql.conf is kept.
func Open(t testing.TB, dataDir string, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	c.dataDir = dataDir
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err == nil {
		t.Fatalf("pgcluster: %s has a postmaster.pid: is a server still running on it?", dataDir)
	}
	c.writeConf()
	return c
}

func newCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir
	}
	if _, err := os.Stat(filepath.Join(opts.BinDir, "postgres")); err != nil {
		t.Fatalf("pgcluster: no PostgreSQL in %s (run scripts/install-deps.sh): %v", opts.BinDir, err)
	}
	su := mustServerUser(t)
	c := &Cluster{t: t, opts: opts, owner: su, port: freePort(t)}
	c.base = tempDir(t, su)
	c.sockDir = filepath.Join(c.base, "sock")
	c.logPath = filepath.Join(c.base, "postgres.log")
	if err := os.Mkdir(c.sockDir, 0o700); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	c.chown(c.sockDir)
	// Registered after tempDir's cleanup, so it runs before the files go.
	t.Cleanup(c.cleanup)
	return c
}

// freePort picks a port nobody listens on. The server opens no TCP socket,
// but the port names its unix socket and lock file, and a distinct number
// keeps logs and ps output unambiguous.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgcluster: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.opts.BinDir, name) }

func (c *Cluster) chown(path string) {
	c.t.Helper()
	if err := os.Chown(path, c.owner.uid, c.owner.gid); err != nil {
		c.t.Fatalf("pgcluster: chown %s: %v", path, err)
	}
}

// serverEnv is the complete environment of initdb and the server.
func (c *Cluster) serverEnv() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		// The server user's real home is not ours to write into; tools run by
		// archive_command that keep caches in $HOME get the cluster's dir.
		"HOME=" + c.base,
		"LC_ALL=C",
		"TZ=UTC",
	}
	return append(env, c.opts.Env...)
}

func (c *Cluster) writeConf() {
	c.t.Helper()
	path := filepath.Join(c.dataDir, "postgresql.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
	if i := bytes.Index(old, []byte("\n"+confMarker)); i >= 0 {
		old = old[:i+1]
	}
	var b bytes.Buffer
	b.Write(old)
	fmt.Fprintf(&b, "%s (rewritten by the test harness)\n", confMarker)
	fmt.Fprintf(&b, "port = %d\n", c.port)
	b.WriteString("listen_addresses = ''\n")
	fmt.Fprintf(&b, "unix_socket_directories = '%s'\n", c.sockDir)
	// Test clusters never survive a crash, so durability is wasted time.
	b.WriteString("fsync = off\n")
	b.WriteString("synchronous_commit = off\n")
	b.WriteString("shared_buffers = 32MB\n")
	b.WriteString("logging_collector = off\n")
	b.WriteString("log_line_prefix = '%m [%p] '\n")
	for _, l := range c.opts.Conf {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	// WriteFile keeps the existing file's owner and mode.
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
}

// DataDir is the cluster's PGDATA.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogFile is the server's log (its stderr).
func (c *Cluster) LogFile() string { return c.logPath }

// SocketDir is the directory of the server's unix socket (PGHOST).
func (c *Cluster) SocketDir() string { return c.sockDir }

// Port is the server's port number (PGPORT).
func (c *Cluster) Port() int { return c.port }

// ConnEnv is what a libpq-style client needs to reach the server.
func (c *Cluster) ConnEnv() []string {
	return []string{
		"PGHOST=" + c.sockDir,
		"PGPORT=" + strconv.Itoa(c.port),
		"PGUSER=postgres",
		"PGDATABASE=postgres",
		"PGDATA=" + c.dataDir,
	}
}

// WriteDataFile writes a file inside the data dir (e.g. "recovery.signal")
// owned by the server user.
func (c *Cluster) WriteDataFile(rel string, data []byte) {
	c.t.Helper()
	path := filepath.Join(c.dataDir, rel)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
	c.chown(path)
}

// Running reports whether the server process is alive.
func (c *Cluster) Running() bool {
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// Start runs the server and waits until it accepts connections (as a
// primary, or as a hot standby during archive recovery).
func (c *Cluster) Start() {
	c.t.Helper()
	if c.cmd != nil {
		c.t.Fatalf("pgcluster: Start on a started cluster %s", c.dataDir)
	}
	logF, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
	cmd := exec.Command(c.bin("postgres"), "-D", c.dataDir)
	cmd.Env = c.serverEnv()
	cmd.Stdout, cmd.Stderr = logF, logF
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.owner.cred,
		// Own process group: cleanup can kill the postmaster, its backends
		// and whatever archive_command started, all at once.
		Setpgid: true,
		// If the test binary dies (e.g. go test's timeout panic, which skips
		// cleanups) the postmaster dies with it; its children follow when
		// they notice the postmaster is gone.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logF.Close()
		c.t.Fatalf("pgcluster: starting postgres: %v", err)
	}
	c.cmd, c.logF, c.exited = cmd, logF, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(c.exited)

	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-c.exited:
			c.t.Fatalf("pgcluster: postgres exited during startup (%v)\n%s", c.cmd.ProcessState, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if st := c.pmStatus(); st == "ready" || st == "standby" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgcluster: postgres not ready after 2m\n%s", c.logTail())
		}
	}
}

// pmStatus reads the postmaster status line of postmaster.pid (the 8th), the
// same readiness signal pg_ctl -w uses. It only trusts a file naming our pid.
func (c *Cluster) pmStatus() string {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(c.cmd.Process.Pid) {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// Stop shuts the server down in "fast" mode (SIGINT) and waits for it. With
// archive_mode on, the archiver still gets a last pass over ready segments.
func (c *Cluster) Stop() {
	c.t.Helper()
	if c.cmd == nil {
		c.t.Fatalf("pgcluster: Stop on a stopped cluster %s", c.dataDir)
	}
	if err := c.stop(2 * time.Minute); err != nil {
		c.t.Fatalf("pgcluster: %v\n%s", err, c.logTail())
	}
}

// Restart stops and starts the server.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.Stop()
	c.Start()
}

// stop sends SIGINT, waits up to timeout, then kills the whole process group.
// It returns an error when the server had to be killed or exited non-zero.
func (c *Cluster) stop(timeout time.Duration) error {
	cmd := c.cmd
	defer func() {
		c.cmd = nil
		c.logF.Close()
	}()
	pid := cmd.Process.Pid
	var err error
	select {
	case <-c.exited:
		err = fmt.Errorf("postgres %s had already exited with %v", c.dataDir, cmd.ProcessState)
	default:
		_ = syscall.Kill(pid, syscall.SIGINT)
		select {
		case <-c.exited:
			if !cmd.ProcessState.Success() {
				err = fmt.Errorf("postgres %s exited with %v on fast shutdown", c.dataDir, cmd.ProcessState)
			}
		case <-time.After(timeout):
			err = fmt.Errorf("postgres %s did not stop within %v; killed", c.dataDir, timeout)
		}
	}
	// Backends, archiver children and their children share the group; any
	// survivor (there should be none after a clean exit) dies here.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-c.exited
	return err
}

func (c *Cluster) cleanup() {
	if c.cmd != nil {
		if err := c.stop(30 * time.Second); err != nil {
			c.t.Errorf("pgcluster cleanup: %v", err)
		}
	}
	killStragglers(c.t, c.base+"/", c.dataDir+"/", c.dataDir+"\x00")
	if c.t.Failed() {
		c.t.Logf("pgcluster: server log %s:\n%s", c.logPath, c.logTail())
	}
}

// killStragglers kills processes that left our process group (e.g. a
// detached prefetcher started by restore_command) but still name one of the
// cluster's paths on their command line. Each needle ends with a separator so
// /tmp/x1/ never matches /tmp/x12/.
func killStragglers(t testing.TB, paths ...string) {
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
			if p != "" && bytes.Contains(cl, []byte(p)) {
				t.Logf("pgcluster: killing leftover process %d: %s", pid, bytes.ReplaceAll(cl, []byte{0}, []byte{' '}))
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// logTail returns the end of the server log for failure messages.
func (c *Cluster) logTail() string {
	const max = 32 << 10
	f, err := os.Open(c.logPath)
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
func (c *Cluster) CopyDataDir(dst string) {
	c.t.Helper()
	if c.Running() {
		c.t.Fatalf("pgcluster: CopyDataDir needs a stopped cluster (%s)", c.dataDir)
	}
	if out, err := exec.Command("cp", "-a", c.dataDir, dst).CombinedOutput(); err != nil {
		c.t.Fatalf("pgcluster: cp -a %s %s: %v\n%s", c.dataDir, dst, err, out)
	}
}

// Clone copies the stopped cluster's data dir into a new TempDir and opens it
// with opts (not started).
func (c *Cluster) Clone(opts Options) *Cluster {
	c.t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = c.opts.BinDir
	}
	dst := filepath.Join(tempDir(c.t, c.owner), "data")
	c.CopyDataDir(dst)
	return Open(c.t, dst, opts)
}

// Connect opens a connection as the postgres superuser over the socket.
func (c *Cluster) Connect(ctx context.Context) (*pgx.Conn, error) {
	cs := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.sockDir, c.port)
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.dataDir, err)
	}
	return conn, nil
}

const queryTimeout = 3 * time.Minute

// Exec runs sql (several statements are fine when there are no args).
func (c *Cluster) Exec(sql string, args ...any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := c.Connect(ctx)
	if err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		c.t.Fatalf("pgcluster: %s: %v", sql, err)
	}
}

// QueryRow runs a query on a fresh connection, closed after Scan. Scan's
// error is returned, not fatal, so callers can poll.
func (c *Cluster) QueryRow(sql string, args ...any) pgx.Row {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	conn, err := c.Connect(ctx)
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

// scan is QueryRow(...).Scan that fails the test.
func (c *Cluster) scan(sql string, dest ...any) {
	c.t.Helper()
	if err := c.QueryRow(sql).Scan(dest...); err != nil {
		c.t.Fatalf("pgcluster: %s: %v", sql, err)
	}
}

// SwitchWAL forces a WAL segment switch and returns the name of the segment
// it completed (the one now due for archiving).
func (c *Cluster) SwitchWAL() string {
	c.t.Helper()
	var name string
	c.scan("select pg_walfile_name(pg_switch_wal())", &name)
	return name
}

// TableDigest is the digest the WAL-G fixtures record for a table: md5 of its
// rows as text in id order, and the row count.
func (c *Cluster) TableDigest(table string) (md5 string, rows int64) {
	c.t.Helper()
	q := fmt.Sprintf("select md5(coalesce(string_agg(t::text, ',' order by id), '')), count(*) from %s t",
		pgx.Identifier{table}.Sanitize())
	c.scan(q, &md5, &rows)
	return md5, rows
}

// ArchiverStatus is a row of pg_stat_archiver.
type ArchiverStatus struct {
	ArchivedCount   int64
	LastArchivedWAL string
	FailedCount     int64
	LastFailedWAL   string
}

func (s ArchiverStatus) String() string {
	return fmt.Sprintf("archived %d (last %q), failed %d (last %q)",
		s.ArchivedCount, s.LastArchivedWAL, s.FailedCount, s.LastFailedWAL)
}

// Archiver reads pg_stat_archiver.
func (c *Cluster) Archiver() (ArchiverStatus, error) {
	var s ArchiverStatus
	err := c.QueryRow(`select archived_count, coalesce(last_archived_wal, ''),
		failed_count, coalesce(last_failed_wal, '') from pg_stat_archiver`).
		Scan(&s.ArchivedCount, &s.LastArchivedWAL, &s.FailedCount, &s.LastFailedWAL)
	return s, err
}

// WaitArchived waits until pg_stat_archiver's last archived file sorts at or
// after walName (PostgreSQL archives in order, so every earlier segment is
// archived too). On timeout the archiver's failures and the log are shown.
func (c *Cluster) WaitArchived(walName string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last ArchiverStatus
	var err error
	for {
		if !c.Running() {
			c.t.Fatalf("pgcluster: server not running while waiting for %s to be archived\n%s", walName, c.logTail())
		}
		last, err = c.Archiver()
		if err == nil && last.LastArchivedWAL >= walName {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgcluster: %s not archived within %v: %v (err %v)\n%s", walName, timeout, last, err, c.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitRecoveryDone waits until the server has left recovery
// (pg_is_in_recovery() is false), failing early if the server exits.
func (c *Cluster) WaitRecoveryDone(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if !c.Running() {
			c.t.Fatalf("pgcluster: server not running during recovery wait\n%s", c.logTail())
		}
		var inRecovery bool
		err := c.QueryRow("select pg_is_in_recovery()").Scan(&inRecovery)
		if err == nil && !inRecovery {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgcluster: still in recovery after %v (last error %v)\n%s", timeout, err, c.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Command prepares a PostgreSQL client program from BinDir (psql, pgbench,
// ...) with the connection environment set; it runs as the calling user.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin(name), args...)
	cmd.Env = append(os.Environ(), c.ConnEnv()...)
	return cmd
}

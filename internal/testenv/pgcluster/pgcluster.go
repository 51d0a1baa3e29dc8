// Package pgcluster runs throwaway PostgreSQL clusters for tests and
// benchmarks: initdb into a private dir, a private unix socket, no TCP
// listener (unless Options.TCP asks for one on 127.0.0.1), and cleanup
// that leaves no server process behind even when the test fails. Server
// is the cluster with plain errors (benchmarks use it); Cluster wraps it
// for a test, failing the test on error.
//
// When the test runs as root, every server-side program (initdb, postgres and
// so whatever archive_command / restore_command runs) runs as the "postgres"
// OS user, because PostgreSQL refuses to run as root. Directories the server
// must write (data dir, socket dir, storage dirs handed to tusk) therefore
// come from TempDir, which makes them owned by that user.
package pgcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
// 16 MiB WAL segments and no data checksums, in a new temp dir.
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
	// restore_command inherit it. The server does not inherit the calling
	// process's environment, so stray WALG_*/AWS_* settings cannot leak in.
	Env []string
	// ServerConnEnv adds ConnEnv (PGHOST, PGPORT, PGUSER, PGDATABASE, PGDATA)
	// to the server's environment, for archivers that connect back or look
	// for the data dir.
	ServerConnEnv bool
	// TCP makes the server listen on 127.0.0.1:Port as well, for clients
	// that must come over TCP (with a password: see AddReplicationUser).
	TCP bool
	// Dir is where the cluster lives (sock/, postgres.log, data/): created
	// owned by the server user when missing, and left in place. Empty: a new
	// temp dir, removed at cleanup.
	Dir string
}

// Cluster is a Server bound to a test: its methods fail the test on error,
// so call them from the test's goroutine, and the test's cleanup stops the
// server and removes its files. The Server's own methods, which return
// errors, are reached through the embedded field (c.Server.Start(ctx)).
type Cluster struct {
	*Server
	t testing.TB
}

// AsServerUser makes cmd run as the OS user that runs PostgreSQL, e.g. to run
// tusk the way archive_command would. It is a no-op unless the test is root.
func AsServerUser(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	mustServerUser(t).Apply(cmd)
}

func mustServerUser(t testing.TB) *ServerUser {
	t.Helper()
	su, err := LookupServerUser()
	if err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	return su
}

// TempDir returns a new empty directory the PostgreSQL server user owns and
// can write, e.g. a WALG_FILE_PREFIX for archive_command. It is removed when
// the test ends. Unlike t.TempDir it sits directly under the system temp dir,
// whose sticky 1777 mode lets that user reach it, and its path stays short
// enough for a unix socket.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := mustServerUser(t).tempDir()
	if err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgcluster: removing %s: %v", dir, err)
		}
	})
	return dir
}

// New runs initdb into a fresh temp dir and returns the cluster, not started.
// The superuser is "postgres" with trust authentication on the private socket.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	s, err := Create(opts)
	return bind(t, s, err)
}

// Open adopts an existing, stopped data directory, e.g. one made with
// CopyDataDir into a TempDir. Its harness settings block is rewritten with a
// new port and socket dir and opts.Conf; the rest of postgresql.conf is kept.
func Open(t testing.TB, dataDir string, opts Options) *Cluster {
	t.Helper()
	s, err := Adopt(dataDir, opts)
	return bind(t, s, err)
}

func bind(t testing.TB, s *Server, err error) *Cluster {
	t.Helper()
	if err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	c := &Cluster{Server: s, t: t}
	t.Cleanup(c.cleanup)
	return c
}

func (c *Cluster) cleanup() {
	if c.cmd != nil {
		if err := c.stop(syscall.SIGINT, 30*time.Second); err != nil {
			c.t.Errorf("pgcluster cleanup: %v", err)
		}
	}
	c.KillStragglers(c.t.Logf)
	if c.t.Failed() {
		c.t.Logf("pgcluster: server log %s:\n%s", c.logPath, c.LogTail())
	}
	if c.ownBase {
		if err := os.RemoveAll(c.base); err != nil {
			c.t.Errorf("pgcluster: removing %s: %v", c.base, err)
		}
	}
}

// WriteDataFile writes a file inside the data dir (e.g. "recovery.signal")
// owned by the server user.
func (c *Cluster) WriteDataFile(rel string, data []byte) {
	c.t.Helper()
	if err := c.owner.WriteFile(filepath.Join(c.dataDir, rel), data, 0o600); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
}

// Start runs the server and waits until it accepts connections (as a
// primary, or as a hot standby during archive recovery).
func (c *Cluster) Start() {
	c.t.Helper()
	if c.cmd != nil {
		c.t.Fatalf("pgcluster: Start on a started cluster %s", c.dataDir)
	}
	if err := c.Server.Start(context.Background()); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
}

// Stop shuts the server down in "fast" mode (SIGINT) and waits for it. With
// archive_mode on, the archiver still gets a last pass over ready segments.
func (c *Cluster) Stop() {
	c.t.Helper()
	if c.cmd == nil {
		c.t.Fatalf("pgcluster: Stop on a stopped cluster %s", c.dataDir)
	}
	if err := c.Server.Stop(2 * time.Minute); err != nil {
		c.t.Fatalf("pgcluster: %v\n%s", err, c.LogTail())
	}
}

// Restart stops and starts the server.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.Stop()
	c.Start()
}

// CopyDataDir copies the stopped cluster's data dir to dst (which must not
// exist), keeping owners and modes: a filesystem-level base backup.
func (c *Cluster) CopyDataDir(dst string) {
	c.t.Helper()
	if err := c.Server.CopyDataDir(dst); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
}

// Clone copies the stopped cluster's data dir into a new TempDir and opens it
// with opts (not started).
func (c *Cluster) Clone(opts Options) *Cluster {
	c.t.Helper()
	s, err := c.Server.Clone(opts)
	return bind(c.t, s, err)
}

const queryTimeout = 3 * time.Minute

// Exec runs sql (several statements are fine when there are no args).
func (c *Cluster) Exec(sql string, args ...any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if err := c.Server.Exec(ctx, sql, args...); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
}

// QueryRow runs a query on a fresh connection, closed after Scan. Scan's
// error is returned, not fatal, so callers can poll.
func (c *Cluster) QueryRow(sql string, args ...any) pgx.Row {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	row := c.Server.QueryRow(ctx, sql, args...)
	return cancelRow{row, cancel}
}

type cancelRow struct {
	pgx.Row
	cancel context.CancelFunc
}

func (r cancelRow) Scan(dest ...any) error {
	defer r.cancel()
	return r.Row.Scan(dest...)
}

// scan is QueryRow(...).Scan that fails the test.
func (c *Cluster) scan(sql string, dest ...any) {
	c.t.Helper()
	if err := c.QueryRow(sql).Scan(dest...); err != nil {
		c.t.Fatalf("pgcluster: %s: %v", sql, err)
	}
}

// AddReplicationUser creates a role with LOGIN and REPLICATION and the
// given password, lets it in over TCP with scram-sha-256 (for replication
// and ordinary sessions) and reloads the server. It returns what a client
// needs to connect as that role over TCP; the cluster needs Options.TCP.
func (c *Cluster) AddReplicationUser(user, password string) []string {
	c.t.Helper()
	if !c.opts.TCP {
		c.t.Fatalf("pgcluster: AddReplicationUser on a cluster without Options.TCP")
	}
	c.Exec(fmt.Sprintf("set password_encryption = 'scram-sha-256'; create role %s login replication password '%s'",
		pgx.Identifier{user}.Sanitize(), strings.ReplaceAll(password, "'", "''")))
	hba := filepath.Join(c.dataDir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
	// First match wins: these lines go before initdb's trust lines.
	lines := fmt.Sprintf("host replication %[1]s 127.0.0.1/32 scram-sha-256\nhost all %[1]s 127.0.0.1/32 scram-sha-256\n", user)
	if err := c.owner.WriteFile(hba, append([]byte(lines), old...), 0o600); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
	c.Exec("select pg_reload_conf()")
	return []string{
		"PGHOST=127.0.0.1",
		"PGPORT=" + strconv.Itoa(c.port),
		"PGUSER=" + user,
		"PGPASSWORD=" + password,
		"PGDATABASE=postgres",
		"PGSSLMODE=disable",
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

// Archiver reads pg_stat_archiver.
func (c *Cluster) Archiver() (ArchiverStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	return c.Server.Archiver(ctx)
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
			c.t.Fatalf("pgcluster: server not running while waiting for %s to be archived\n%s", walName, c.LogTail())
		}
		last, err = c.Archiver()
		if err == nil && last.LastArchivedWAL >= walName {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgcluster: %s not archived within %v: %v (err %v)\n%s", walName, timeout, last, err, c.LogTail())
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
			c.t.Fatalf("pgcluster: server not running during recovery wait\n%s", c.LogTail())
		}
		var inRecovery bool
		err := c.QueryRow("select pg_is_in_recovery()").Scan(&inRecovery)
		if err == nil && !inRecovery {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pgcluster: still in recovery after %v (last error %v)\n%s", timeout, err, c.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

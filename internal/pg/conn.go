// Package pg is tusk's PostgreSQL client side: a connection configured from
// the PG* environment as libpq (and WAL-G) read it, the low-level
// non-exclusive backup API on one session, and the server facts a base
// backup needs (version, data directory, WAL segment size, timeline,
// tablespaces, databases).
package pg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"
)

// MinVersion is the oldest server tusk drives: pg_start_backup with the
// non-exclusive flag and pg_stop_backup(false, wait_for_archive) exist since
// PostgreSQL 10. Tested releases are 13 to 18.
const MinVersion = 100000

// ConnectOptions adjust the configuration pgx parses from the environment.
type ConnectOptions struct {
	// AppName overrides application_name (PGAPPNAME; WAL-G's default is
	// "wal-g"). Empty keeps whatever the environment says.
	AppName string
	// Database overrides PGDATABASE, e.g. to visit every database.
	Database string
	// NoFallback disables WAL-G's retry on localhost:5432 when the
	// configured host cannot be reached.
	NoFallback bool
	Log        *slog.Logger
}

// Conn is one server session. Its methods serialise on a mutex, so a
// liveness check may run from another goroutine while the session is
// otherwise idle (as it is during a backup's file copy).
type Conn struct {
	mu      sync.Mutex
	conn    *pgx.Conn
	version int
	log     *slog.Logger
}

// Connect opens a session configured from PGHOST (host names, IPs or unix
// socket directories, comma-separated lists), PGPORT, PGUSER, PGPASSWORD,
// PGPASSFILE, PGDATABASE, PGSSLMODE, PGSSLCERT, PGSSLKEY, PGSSLROOTCERT,
// PGAPPNAME, PGCONNECT_TIMEOUT and the rest of libpq's variables, as pgx
// parses them. Like WAL-G, when that fails and the host was not localhost
// it retries localhost:5432 once.
func Connect(ctx context.Context, opts ConnectOptions) (*Conn, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("postgres connection settings (PG* variables): %w", err)
	}
	if opts.AppName != "" {
		cfg.RuntimeParams["application_name"] = opts.AppName
	}
	if opts.Database != "" {
		cfg.Database = opts.Database
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil && !opts.NoFallback && cfg.Host != "localhost" && ctx.Err() == nil {
		log.Warn("cannot connect with the configured PGHOST/PGPORT, trying localhost:5432 as WAL-G does",
			"host", cfg.Host, "port", cfg.Port, "error", err)
		first := err
		cfg.Host, cfg.Port = "localhost", 5432
		cfg.Fallbacks = nil
		conn, err = pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			err = fmt.Errorf("%w (and localhost:5432: %w)", first, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	c := &Conn{conn: conn, log: log}
	var v int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("read server_version_num: %w", err)
	}
	c.version = v
	return c, nil
}

// Version is server_version_num, e.g. 150004.
func (c *Conn) Version() int { return c.version }

// Close ends the session. For a backup still running on it PostgreSQL
// aborts the backup, which is how a failed backup-push cleans up.
func (c *Conn) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close(ctx)
	c.conn = nil
	return err
}

// errClosed is returned by queries on a closed Conn.
var errClosed = errors.New("postgres session already closed")

// Ping runs a trivial query, proving the session (and so a backup started
// on it) is alive.
func (c *Conn) Ping(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errClosed
	}
	var one int
	if err := c.conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("postgres liveness check: %w", err)
	}
	return nil
}

// queryRow runs one single-row query under the session mutex.
func (c *Conn) queryRow(ctx context.Context, what, sql string, args []any, dest ...any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return fmt.Errorf("%s: %w", what, errClosed)
	}
	if err := c.conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Setting returns current_setting(name).
func (c *Conn) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := c.queryRow(ctx, "read setting "+name, "SELECT current_setting($1)", []any{name}, &v)
	return v, err
}

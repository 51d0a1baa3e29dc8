//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tusk-pg/tusk/bench/internal/s3env"
)

// cluster is one PostgreSQL data directory with a private unix socket and no
// TCP listener.
type cluster struct {
	h    *harness
	base string // owned by the server user: data/, sock/, postgres.log
	data string
	sock string
	port int
	env  []string // the server's whole environment; archive_command inherits it
	srv  *child
}

// baseConf is what every benchmark cluster runs with; the archiver adds its
// archive settings. Durability is off because the clusters are thrown away
// and the point is to produce WAL as fast as two cores allow.
func baseConf(port int, sock string) []string {
	return []string{
		"port = " + strconv.Itoa(port),
		"listen_addresses = ''",
		"unix_socket_directories = " + confQuote(sock),
		"max_connections = 40",
		"shared_buffers = 128MB",
		"fsync = off",
		"synchronous_commit = off",
		"logging_collector = off",
		"log_line_prefix = '%m [%p] '",
		"log_checkpoints = on",
		"log_autovacuum_min_duration = -1",
	}
}

// workloadConf are the WAL settings of the burst, shown in the docs.
var workloadConf = []string{
	"wal_level = replica",
	"full_page_writes = on",
	"wal_compression = off",
	"checkpoint_timeout = 30s",
	"max_wal_size = 256MB",
	"min_wal_size = 64MB",
	"wal_buffers = 16MB",
	"archive_mode = on",
	"archive_timeout = 0",
}

// newCluster prepares base (created, owned by the server user) for a cluster
// whose data directory will be base/data.
func (h *harness) newCluster(base string, extraEnv []string) (*cluster, error) {
	if err := h.mkdirPG(base, 0o755); err != nil {
		return nil, err
	}
	sock := filepath.Join(base, "sock")
	if err := h.mkdirPG(sock, 0o755); err != nil {
		return nil, err
	}
	port, err := s3env.FreePort()
	if err != nil {
		return nil, err
	}
	c := &cluster{h: h, base: base, data: filepath.Join(base, "data"), sock: sock, port: port}
	c.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + base,
		"LC_ALL=C",
		"TZ=UTC",
		"PGHOST=" + sock,
		"PGPORT=" + strconv.Itoa(port),
		"PGUSER=postgres",
		"PGDATABASE=postgres",
		"PGDATA=" + c.data,
	}, extraEnv...)
	return c, nil
}

// writeConf rewrites postgresql.conf as initdb's original plus lines.
func (c *cluster) writeConf(lines []string) error {
	orig := filepath.Join(c.data, "postgresql.conf.initdb")
	b, err := os.ReadFile(orig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", orig, err)
	}
	var sb strings.Builder
	sb.Write(b)
	sb.WriteString("\n# --- benchmark settings\n")
	for _, l := range append(baseConf(c.port, c.sock), lines...) {
		sb.WriteString(l + "\n")
	}
	return c.h.writePGFile(filepath.Join(c.data, "postgresql.conf"), []byte(sb.String()), 0o600)
}

func (c *cluster) logPath() string { return filepath.Join(c.base, "postgres.log") }

// start runs postgres and waits until it accepts connections.
func (c *cluster) start(ctx context.Context) error {
	cmd := c.h.asPostgres(exec.Command(filepath.Join(pgBinDir, "postgres"), "-D", c.data))
	cmd.Env = c.env
	cmd.Dir = c.base
	srv, err := c.h.start("postgres", cmd, c.logPath())
	if err != nil {
		return err
	}
	c.srv = srv
	deadline := time.Now().Add(postgresStartWait)
	for {
		if !srv.running() {
			return fmt.Errorf("postgres %s exited during start-up; log:\n%s", c.data, c.logTail())
		}
		if c.pmStatus(srv.pid()) == "ready" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = c.stop()
			return fmt.Errorf("postgres %s not ready after %v; log:\n%s", c.data, postgresStartWait, c.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pmStatus is the status line of postmaster.pid, as pg_ctl -w reads it.
func (c *cluster) pmStatus(pid int) string {
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(pid) {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// stop shuts down fast (SIGINT): the archiver still gets a last pass.
func (c *cluster) stop() error {
	if c.srv == nil {
		return nil
	}
	err := c.srv.stop(syscall.SIGINT, 2*time.Minute)
	c.srv = nil
	return err
}

// kill shuts down immediately (SIGQUIT): no last archiving pass.
func (c *cluster) kill() {
	if c.srv == nil {
		return
	}
	_ = c.srv.stop(syscall.SIGQUIT, 30*time.Second)
	c.srv = nil
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(c.logPath())
	return string(tail(b, 8192))
}

func (c *cluster) connect(ctx context.Context) (*pgx.Conn, error) {
	cs := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.sock, c.port)
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.data, err)
	}
	return conn, nil
}

func (c *cluster) exec(ctx context.Context, sql string) error {
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
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

// pgbench starts pgbench against the cluster as the server user, its output
// in logPath.
func (c *cluster) pgbench(logPath string, args ...string) (*child, error) {
	full := append([]string{"-h", c.sock, "-p", strconv.Itoa(c.port), "-U", "postgres"}, args...)
	full = append(full, "postgres")
	cmd := c.h.asPostgres(exec.Command(filepath.Join(pgBinDir, "pgbench"), full...))
	cmd.Env = c.env
	cmd.Dir = c.base
	return c.h.start("pgbench", cmd, logPath)
}

var tpsRE = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// pgbenchTPS reads the last "tps = N" of a pgbench log.
func pgbenchTPS(logPath string) float64 {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	m := tpsRE.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	return v
}

// wideSQL is the churn script: each transaction rewrites wideBatch rows of
// about 2 KB with fresh random hex (poorly compressible, like real data).
func wideSQL(rows, batch int) string {
	return fmt.Sprintf(`\set id random(1, %d)
UPDATE wide SET pad = (SELECT string_agg(md5(random()::text || i), '') FROM generate_series(1, %d) i)
 WHERE id BETWEEN :id AND :id + %d;
`, rows-batch+1, wideMD5s, batch-1)
}

// wideMD5s md5 hex strings of 32 bytes make a row's pad: 1952 bytes, so a
// row (about 1990 bytes with headers) stays under the TOAST threshold and
// is written to WAL whole.
const wideMD5s = 61

// initTemplate makes the cluster every run copies: pgbench tables at the
// configured scale and the wide table, checkpointed and stopped, archiving
// off (the load's WAL is never archived).
func (h *harness) initTemplate(ctx context.Context) (*cluster, error) {
	c, err := h.newCluster(filepath.Join(h.work, "template"), nil)
	if err != nil {
		return nil, err
	}
	h.log.Info("initdb template cluster", "dir", c.data)
	initdb := h.asPostgres(exec.CommandContext(ctx, filepath.Join(pgBinDir, "initdb"), "-D", c.data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
		"--wal-segsize="+strconv.Itoa(segmentMiB)))
	initdb.Env = c.env
	initdb.Dir = c.base
	if _, err := run(ctx, initdb); err != nil {
		return nil, err
	}
	conf := filepath.Join(c.data, "postgresql.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		return nil, err
	}
	if err := h.writePGFile(conf+".initdb", b, 0o600); err != nil {
		return nil, err
	}
	// Loading is faster with big checkpoints; archiving stays off.
	if err := c.writeConf([]string{"max_wal_size = 4GB", "checkpoint_timeout = 15min", "wal_level = minimal", "max_wal_senders = 0"}); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	defer c.stop()
	h.log.Info("pgbench -i", "scale", h.opts.scale)
	out := filepath.Join(h.work, "pgbench-init.log")
	pb, err := c.pgbench(out, "-i", "-q", "-s", strconv.Itoa(h.opts.scale))
	if err != nil {
		return nil, err
	}
	if err := pb.wait(ctx); err != nil {
		b, _ := os.ReadFile(out)
		return nil, fmt.Errorf("pgbench -i: %w\n%s", err, tail(b, 4096))
	}
	h.log.Info("creating the wide table", "rows", h.opts.wideRows)
	for _, sql := range []string{
		`CREATE TABLE wide (id int PRIMARY KEY, pad text)`,
		// Rows stay inline and uncompressed, so each update writes them whole.
		`ALTER TABLE wide ALTER COLUMN pad SET STORAGE PLAIN`,
		fmt.Sprintf(`INSERT INTO wide SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, %d) i)
  FROM generate_series(1, %d) g`, wideMD5s, h.opts.wideRows),
		`VACUUM ANALYZE`,
		`CHECKPOINT`,
	} {
		if err := c.exec(ctx, sql); err != nil {
			return nil, err
		}
	}
	if err := c.stop(); err != nil {
		return nil, err
	}
	return c, nil
}

// wait waits for the child to exit by itself; on cancellation it stops it.
func (c *child) wait(ctx context.Context) error {
	select {
	case <-c.exited:
	case <-ctx.Done():
		_ = c.stop(syscall.SIGTERM, stopGrace)
		return ctx.Err()
	}
	if !c.cmd.ProcessState.Success() {
		return fmt.Errorf("%s: %s", c.name, c.cmd.ProcessState)
	}
	return nil
}

// clone copies the stopped template into base/data: a fresh cluster with
// the template's tables.
func (h *harness) clone(ctx context.Context, tmpl *cluster, base string, extraEnv []string, conf []string) (*cluster, error) {
	c, err := h.newCluster(base, extraEnv)
	if err != nil {
		return nil, err
	}
	if _, err := run(ctx, exec.CommandContext(ctx, "cp", "-a", tmpl.data, c.data)); err != nil {
		return nil, err
	}
	// The template's pg_wal holds segments written while archiving was off;
	// none is marked .ready, so the archiver starts from a clean slate.
	if err := c.writeConf(conf); err != nil {
		return nil, err
	}
	return c, nil
}

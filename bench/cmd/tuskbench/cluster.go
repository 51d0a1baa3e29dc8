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
	"syscall"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// cluster is one benchmark PostgreSQL cluster: the project's test cluster
// (private unix socket, no TCP listener) run as a child of the harness.
type cluster struct {
	h *harness
	*pgcluster.Server
}

// baseConf is what every benchmark cluster runs with, on top of the test
// harness's settings (fsync and synchronous_commit off); the archiver adds
// its archive settings. The clusters are thrown away and the point is to
// produce WAL as fast as two cores allow.
var baseConf = []string{
	"max_connections = 40",
	"shared_buffers = 128MB",
	"log_checkpoints = on",
	"log_autovacuum_min_duration = -1",
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

// clusterOptions puts a cluster in dir (dir/data, dir/sock, dir/postgres.log)
// with the connection settings and extraEnv in its server's environment, so
// that archive_command and daemons started with Env() find the cluster.
func clusterOptions(dir string, extraEnv, conf []string) pgcluster.Options {
	return pgcluster.Options{
		BinDir: pgBinDir, WALSegSizeMB: segmentMiB, Dir: dir, ServerConnEnv: true,
		Env: extraEnv, Conf: append(append([]string{}, baseConf...), conf...),
	}
}

// start runs postgres and waits until it accepts connections. Its pid is
// the harness's to wait for, never the sampler's to reap.
func (c *cluster) start(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	c.h.managed.add(c.Pid())
	return nil
}

// stop shuts down fast (SIGINT): the archiver still gets a last pass.
func (c *cluster) stop() error { return c.Stop(2 * time.Minute) }

// kill shuts down immediately (SIGQUIT): no last archiving pass.
func (c *cluster) kill() { _ = c.Kill() }

// pgbench starts pgbench against the cluster as the server user, its output
// in logPath.
func (c *cluster) pgbench(logPath string, args ...string) (*child, error) {
	full := append([]string{"-h", c.SocketDir(), "-p", strconv.Itoa(c.Port()), "-U", "postgres"}, args...)
	full = append(full, "postgres")
	cmd := exec.Command(filepath.Join(pgBinDir, "pgbench"), full...)
	c.Owner().Apply(cmd)
	cmd.Env = c.Env()
	cmd.Dir = c.BaseDir()
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
	dir := filepath.Join(h.work, "template")
	h.log.Info("initdb template cluster", "dir", dir)
	// Loading is faster with big checkpoints; archiving stays off.
	srv, err := pgcluster.Create(clusterOptions(dir, nil,
		[]string{"max_wal_size = 4GB", "checkpoint_timeout = 15min", "wal_level = minimal", "max_wal_senders = 0"}))
	if err != nil {
		return nil, err
	}
	c := &cluster{h: h, Server: srv}
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
		if err := c.Exec(ctx, sql); err != nil {
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
// the template's tables. The template's pg_wal holds segments written while
// archiving was off; none is marked .ready, so the archiver starts from a
// clean slate.
func (h *harness) clone(tmpl *cluster, base string, extraEnv []string, conf []string) (*cluster, error) {
	srv, err := tmpl.Clone(clusterOptions(base, extraEnv, conf))
	if err != nil {
		return nil, err
	}
	return &cluster{h: h, Server: srv}, nil
}

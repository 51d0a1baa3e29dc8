//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tusk-pg/tusk/bench/report"
)

const (
	segmentMiB  = 16
	compression = "lz4"
)

// archiver is one contender: how PostgreSQL calls it, what runs beside the
// server, and which processes are its own.
type archiver struct {
	name string
	kind string
	// command is archive_command before wrapping; placeholders expanded.
	command func(r *runDir) string
	// daemon, when set, is a shell command started as the server user
	// before PostgreSQL; its process tree is resident.
	daemon func(r *runDir) string
	// waitSocket: the daemon is ready once {sock} exists.
	waitSocket bool
	names      []string
	env        []string
	// prepare runs once the cluster exists, before the daemon and server
	// start.
	prepare func(r *runDir) error
	// afterStart runs once the server is up, before the burst.
	afterStart func(ctx context.Context, r *runDir) error
}

// runDir is the per-run context of an archiver.
type runDir struct {
	h        *harness
	a        *archiver
	dir      string // owned by the server user; the cluster lives in it
	sock     string // for a daemon
	cl       *cluster
	prefix   string // bucket path of this run
	pgbrConf string
}

func (r *runDir) vars() map[string]string {
	v := map[string]string{"sock": r.sock, "dir": r.dir, "tusk": r.h.tusk}
	if r.cl != nil {
		v["pgdata"] = r.cl.DataDir()
	} else {
		v["pgdata"] = filepath.Join(r.dir, "data")
	}
	return v
}

// archiverEnv is the environment every archiver gets (through the server's
// environment and the daemon's): WAL-G's settings for the run's prefix.
func (h *harness) archiverEnv(prefix, pgdata string) []string {
	return append(h.store.Env(prefix),
		"PGDATA="+pgdata,
		"WALG_UPLOAD_CONCURRENCY="+strconv.Itoa(h.opts.uploadConcurrency),
		"WALG_COMPRESSION_METHOD="+compression,
	)
}

func (h *harness) builtinArchivers() map[string]*archiver {
	return map[string]*archiver{
		report.KindTuskDaemon: {
			name: report.KindTuskDaemon, kind: report.KindTuskDaemon,
			daemon:     func(r *runDir) string { return shellQuote(r.h.tusk) + " daemon " + shellQuote(r.sock) },
			waitSocket: true,
			command: func(r *runDir) string {
				if r.h.tuskClient != "" {
					return r.h.tuskClient + " " + r.sock + " wal-push %f"
				}
				return r.h.tusk + " daemon-client " + r.sock + " wal-push %f"
			},
			// comm is at most 15 bytes: "tusk-daemon-cli".
			names: []string{"tusk", "tusk-daemon-cli"},
		},
		report.KindTuskWalPush: {
			name: report.KindTuskWalPush, kind: report.KindTuskWalPush,
			command: func(r *runDir) string {
				if r.h.tuskArchive != "" {
					return r.h.tuskArchive + " wal-push %p"
				}
				return r.h.tusk + " wal-push %p"
			},
			names: []string{"tusk", "tusk-archive"},
		},
		report.KindPgBackRest: {
			name: report.KindPgBackRest, kind: report.KindPgBackRest,
			command: func(r *runDir) string {
				return "pgbackrest --config=" + r.pgbrConf + " --stanza=bench archive-push %p"
			},
			names:      []string{"pgbackrest"},
			prepare:    (*runDir).pgbackrestConfig,
			afterStart: func(ctx context.Context, r *runDir) error { return r.pgbackrestStanza(ctx) },
		},
	}
}

func genericArchiver(g genericSpec) *archiver {
	a := &archiver{
		name: g.Name, kind: report.KindGeneric,
		command: func(r *runDir) string { return expand(g.ArchiveCommand, r.vars()) },
		names:   g.Process,
		env:     g.Env,
	}
	if g.Daemon != "" {
		a.daemon = func(r *runDir) string { return expand(g.Daemon, r.vars()) }
		a.waitSocket = strings.Contains(g.Daemon, "{sock}")
	}
	return a
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// pgbackrestConfig writes pgbackrest.conf for the run: S3 over TLS at the
// harness's versitygw, async archive-push with 4 processes and lz4.
func (r *runDir) pgbackrestConfig() error {
	h := r.h
	for _, d := range []string{"spool", "log", "lock"} {
		if err := h.pgUser.Mkdir(filepath.Join(r.dir, "pgbackrest-"+d), 0o700); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf(`[global]
repo1-type=s3
repo1-path=/%s
repo1-s3-bucket=%s
repo1-s3-region=%s
repo1-s3-key=%s
repo1-s3-key-secret=%s
repo1-s3-uri-style=path
# pgBackRest checks DNS names only, not IP SANs; localhost is 127.0.0.1.
repo1-s3-endpoint=localhost
repo1-storage-port=%d
repo1-storage-ca-file=%s
archive-async=y
process-max=%d
compress-type=%s
spool-path=%s
log-path=%s
lock-path=%s
log-level-console=warn
log-level-file=info

[bench]
pg1-path=%s
pg1-socket-path=%s
pg1-port=%d
`, strings.Trim(r.prefix, "/"), bucket, h.store.S3.Region, h.store.S3.AccessKey, h.store.S3.SecretKey, h.store.S3.Port(), h.store.S3.CAFile,
		h.opts.uploadConcurrency, compression,
		filepath.Join(r.dir, "pgbackrest-spool"), filepath.Join(r.dir, "pgbackrest-log"), filepath.Join(r.dir, "pgbackrest-lock"),
		r.cl.DataDir(), r.cl.SocketDir(), r.cl.Port())
	return h.pgUser.WriteFile(r.pgbrConf, []byte(conf), 0o600)
}

func (r *runDir) pgbackrestStanza(ctx context.Context) error {
	cmd := r.h.asPostgres(exec.CommandContext(ctx, "pgbackrest", "--config="+r.pgbrConf, "--stanza=bench", "stanza-create"))
	cmd.Env = r.cl.Env()
	cmd.Dir = r.dir
	_, err := run(ctx, cmd)
	return err
}

// startDaemon runs a's daemon as the server user with env and waits until it
// is ready (its socket exists) or two seconds have passed (no socket).
func (h *harness) startDaemon(ctx context.Context, r *runDir, env []string) (*child, error) {
	line := r.a.daemon(r)
	cmd := h.asPostgres(exec.Command("/bin/sh", "-c", "exec "+line))
	cmd.Env = env
	cmd.Dir = r.dir
	d, err := h.start(r.a.name+" daemon", cmd, filepath.Join(r.dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	if !r.a.waitSocket {
		deadline = time.Now().Add(2 * time.Second)
	}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !d.running() {
			b, _ := os.ReadFile(filepath.Join(r.dir, "daemon.log"))
			return nil, fmt.Errorf("daemon %q exited during start-up:\n%s", line, tail(b, 4096))
		}
		if r.a.waitSocket {
			if fi, err := os.Stat(r.sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
				return d, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.a.waitSocket {
		_ = d.stop(syscall.SIGTERM, stopGrace)
		return nil, fmt.Errorf("daemon %q: no socket %s after 30 s", line, r.sock)
	}
	return d, nil
}

// wrapper writes the script archive_command runs through: GNU time appends
// one record per run (max RSS, CPU, exit status) to the run's log, so no
// short-lived process escapes the accounting.
func (h *harness) wrapper() (string, error) {
	p := filepath.Join(h.work, "bin", "timed")
	script := "#!/bin/sh\n# timed LOG COMMAND...: run COMMAND, append its GNU time record to LOG.\n" +
		"log=$1\nshift\nexec /usr/bin/time -a -o \"$log\" -f '" + report.TimeFormat + "' \"$@\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		return "", err
	}
	return p, nil
}

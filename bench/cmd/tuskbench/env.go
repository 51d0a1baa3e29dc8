//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tusk-pg/tusk/bench/storages"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

const (
	pgBinDir  = "/usr/lib/postgresql/15/bin"
	bucket    = "bench"
	stopGrace = 10 * time.Second
)

// pidSet holds the pids of the children the harness started and waits for
// itself; the sampler must never reap those.
type pidSet struct {
	mu   sync.Mutex
	pids map[int]bool
}

func (s *pidSet) add(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pids == nil {
		s.pids = map[int]bool{}
	}
	s.pids[pid] = true
}

func (s *pidSet) has(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pids[pid]
}

// child is a process the harness started and stops.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	logF   *os.File
}

// start runs cmd in its own process group, killed if the harness dies, with
// stdout and stderr appended to logPath.
func (h *harness) start(name string, cmd *exec.Cmd, logPath string) (*child, error) {
	logF, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logF, logF
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logF.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, cmd.Path, err)
	}
	h.managed.add(cmd.Process.Pid)
	c := &child{name: name, cmd: cmd, exited: make(chan struct{}), logF: logF}
	go func() {
		_ = cmd.Wait()
		logF.Close()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop sends sig, waits up to grace, then kills the whole process group.
func (c *child) stop(sig syscall.Signal, grace time.Duration) error {
	if c == nil {
		return nil
	}
	pid := c.pid()
	var err error
	select {
	case <-c.exited:
	default:
		_ = syscall.Kill(pid, sig)
		select {
		case <-c.exited:
		case <-time.After(grace):
			err = fmt.Errorf("%s (pid %d) did not stop within %v after %v; killed", c.name, pid, grace, sig)
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-c.exited
	return err
}

// lookupPostgresUser is the OS user PostgreSQL (and so every archiver)
// runs as: the benchmark runs as root and PostgreSQL refuses to.
func lookupPostgresUser() (*pgcluster.ServerUser, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark runs as root (it installs packages and runs PostgreSQL as the postgres user)")
	}
	return pgcluster.LookupServerUser()
}

// asPostgres makes cmd run as the server user.
func (h *harness) asPostgres(cmd *exec.Cmd) *exec.Cmd {
	h.pgUser.Apply(cmd)
	return cmd
}

// run runs a command to completion, returning its combined output in the
// error when it fails.
func run(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail(out, 4096))
	}
	if ctx.Err() != nil {
		return out, ctx.Err()
	}
	return out, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// ensureDeps installs what is missing: PostgreSQL 15 and GNU time through
// the project's install script, pgBackRest with apt-get, versitygw with go
// install. Installed pieces are left alone.
func (h *harness) ensureDeps(ctx context.Context, needPgBackRest bool) error {
	have := func(p string) bool { fi, err := os.Stat(p); return err == nil && fi.Mode()&0o111 != 0 }
	if !have(filepath.Join(pgBinDir, "postgres")) || !have(filepath.Join(pgBinDir, "pgbench")) ||
		!have("/usr/bin/time") || !have("/usr/bin/openssl") {
		if h.opts.noInstall {
			return errors.New("PostgreSQL 15, GNU time or openssl missing (run scripts/install-deps.sh)")
		}
		h.log.Info("installing PostgreSQL 15, GNU time and openssl (scripts/install-deps.sh)")
		cmd := exec.CommandContext(ctx, filepath.Join(h.root, "scripts", "install-deps.sh"))
		cmd.Dir = h.root
		if _, err := run(ctx, cmd); err != nil {
			return err
		}
	}
	if needPgBackRest {
		if _, err := exec.LookPath("pgbackrest"); err != nil {
			if h.opts.noInstall {
				return errors.New("pgbackrest missing (apt-get install -y pgbackrest)")
			}
			h.log.Info("installing pgbackrest (apt-get)")
			env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "--no-install-recommends", "pgbackrest")
			cmd.Env = env
			if _, err := run(ctx, cmd); err != nil {
				// A stale package index is the usual reason; refresh once.
				up := exec.CommandContext(ctx, "apt-get", "update", "-q")
				up.Env = env
				if _, uerr := run(ctx, up); uerr != nil {
					return fmt.Errorf("apt-get update: %w (after install failed: %v)", uerr, err)
				}
				cmd = exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "--no-install-recommends", "pgbackrest")
				cmd.Env = env
				if _, err := run(ctx, cmd); err != nil {
					return err
				}
			}
		}
	}
	if _, err := s3server.FindBinary(); err != nil {
		if h.opts.noInstall {
			return err
		}
		h.log.Info("installing versitygw", "version", s3server.VersitygwVersion)
		cmd := exec.CommandContext(ctx, "go", "install", s3server.VersitygwModule+"@"+s3server.VersitygwVersion)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if _, err := run(ctx, cmd); err != nil {
			return err
		}
		if _, err := s3server.FindBinary(); err != nil {
			return err
		}
	}
	return nil
}

// buildTusk compiles ./cmd/tusk (or copies --tusk) into a directory the
// server user can read, since archive_command runs it as that user, and
// with it the small binaries archive_command runs instead when the tree has
// them (or they lie beside --tusk): tusk-daemon-client for the daemon,
// tusk-archive for the one-shot wal-push.
func (h *harness) buildTusk(ctx context.Context) error {
	dir := filepath.Join(h.work, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	h.tusk = filepath.Join(dir, "tusk")
	for name, dst := range map[string]*string{"tusk": new(string), "tusk-daemon-client": &h.tuskClient, "tusk-archive": &h.tuskArchive} {
		bin := filepath.Join(dir, name)
		if h.opts.tuskBin != "" {
			src := filepath.Join(filepath.Dir(h.opts.tuskBin), name)
			if name == "tusk" {
				src = h.opts.tuskBin
			} else if _, err := os.Stat(src); err != nil {
				continue
			}
			if err := copyBinary(src, bin); err != nil {
				return fmt.Errorf("--tusk: %w", err)
			}
			*dst = bin
			continue
		}
		if _, err := os.Stat(filepath.Join(h.root, "cmd", name)); err != nil && name != "tusk" {
			continue
		}
		h.log.Info("building "+name, "dir", h.root)
		args := []string{"build", "-o", bin}
		// The client's own entry point, as the Makefile links it, when the tree has one.
		if _, err := os.Stat(filepath.Join(h.root, "cmd", name, "entry_linux_amd64.s")); err == nil && name == "tusk-daemon-client" {
			args = append(args, testenv.DaemonClientBuildFlags()...)
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/"+name)...)
		cmd.Dir = h.root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if _, err := run(ctx, cmd); err != nil {
			return err
		}
		*dst = bin
	}
	return nil
}

// copyBinary copies an executable as cp does (copy_file_range), not in
// one write of the whole file: a file written in one large write sits in
// the page cache in large folios, and every process that maps its code
// then counts whole folios as resident (measured: tusk version took
// 26.6-38.5 MiB RSS from such a copy, 20.4-21.1 MiB from cp's or the
// linker's), which would measure the copy rather than tusk.
func copyBinary(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tuskHas reports whether the tusk binary has a command (tusk daemon is
// newer than wal-push).
func (h *harness) tuskHas(ctx context.Context, command string) bool {
	cmd := exec.CommandContext(ctx, h.tusk, command, "--help")
	out, err := cmd.CombinedOutput()
	return err == nil && bytes.Contains(out, []byte(command))
}

// startStorage starts the storage the archivers write to (--storage; for
// s3, versitygw with its posix backend over TLS on 127.0.0.1), owned by
// the server user where it is a directory.
func (h *harness) startStorage() error {
	st, err := storages.Start(h.opts.storage, filepath.Join(h.work, "storage"), bucket, h.pgUser.UID, h.pgUser.GID)
	if err != nil {
		return err
	}
	h.store = st
	for _, pid := range st.Pids {
		h.managed.add(pid)
	}
	return nil
}

// stored counts the objects and bytes under prefix in the storage.
func (h *harness) stored(ctx context.Context, prefix string) (objects, size int64, err error) {
	objs, err := h.store.Objects(ctx, strings.Trim(prefix, "/")+"/")
	for _, sz := range objs {
		objects++
		size += sz
	}
	return objects, size, err
}

// newLogger writes text logs to stderr.
func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

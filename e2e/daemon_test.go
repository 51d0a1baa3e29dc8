package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// bgProc is a long-running tusk command (daemon, wal-receive) started as
// the PostgreSQL server user, its output appended to log.
type bgProc struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited
}

// startBackground starts tusk with args and env as the server user, killed
// with the test (and with the test process), its output in logPath.
func startBackground(t *testing.T, tusk string, env []string, logPath string, args ...string) *bgProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(tusk, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Dir(logPath), "TZ=UTC"}, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	pgcluster.AsServerUser(t, cmd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tusk %s: %v", strings.Join(args, " "), err)
	}
	p := &bgProc{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("tusk %s log %s:\n%s", args[0], logPath, tail(string(b), 40))
		}
	})
	return p
}

func (p *bgProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// daemonProc is a running `tusk daemon`, as the PostgreSQL server user.
type daemonProc struct {
	*bgProc
	socket string
}

func startDaemon(t *testing.T, tusk, socket, pgdata string, env []string) *daemonProc {
	t.Helper()
	logPath := filepath.Join(filepath.Dir(socket), "daemon.log")
	d := &daemonProc{bgProc: startBackground(t, tusk, append(append([]string{}, env...), "PGDATA="+pgdata), logPath, "daemon", socket), socket: socket}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			return d
		}
		select {
		case <-d.exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("daemon exited: %v\n%s", d.err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon socket %s did not appear", socket)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// vmHWM reads a process's peak resident set from /proc.
func vmHWM(t *testing.T, pid int) int64 { return statusField(t, pid, "VmHWM:") }

// statusField reads a "kB" field of /proc/PID/status, in bytes.
func statusField(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// daemonScenario archives through one daemon (for the primary's PGDATA) and
// restores through another (for the restored copy's), as
// archive_command / restore_command = daemon-client.
func daemonScenario(t *testing.T, tusk string, env []string, client string) (scenario, map[string]*daemonProc) {
	dir := pgcluster.TempDir(t)
	daemons := map[string]*daemonProc{}
	if client == "" {
		client = tusk + " daemon-client"
	}
	sc := scenario{
		env:            env,
		load:           heavyLoad,
		archiveCommand: client + " " + filepath.Join(dir, "primary.sock") + " wal-push %f",
		restoreCommand: client + " " + filepath.Join(dir, "restored.sock") + " wal-fetch %f %p",
		beforeStart: func(c *pgcluster.Cluster, role string) {
			daemons[role] = startDaemon(t, tusk, filepath.Join(dir, role+".sock"), c.DataDir(),
				append([]string{"WALG_UPLOAD_CONCURRENCY=4"}, env...))
		},
	}
	return sc, daemons
}

func TestDaemonArchiveRestoreFile(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	storage := pgcluster.TempDir(t)
	// Through the small client binary, as the README suggests.
	sc, daemons := daemonScenario(t, tusk, []string{"WALG_FILE_PREFIX=" + storage}, testenv.BuildDaemonClient(t))
	out := archiveRestore(t, tusk, sc)
	checkWALObjects(t, walObjectsInDir(t, storage), "lz4", false, 0, out.lastWAL)
	t.Logf("archiving daemon peak RSS %d MiB", vmHWM(t, daemons["primary"].cmd.Process.Pid)>>20)
}

// WAL-G's client binary name: a tusk symlinked as walg-daemon-client takes
// WAL-G's client command line (flags after the arguments).
func TestDaemonArchiveRestoreS3WithWALGClientName(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	link := filepath.Join(pgcluster.TempDir(t), "walg-daemon-client")
	if err := os.Symlink(tusk, link); err != nil {
		t.Fatal(err)
	}
	srv := s3server.Start(t, s3server.Options{TLS: true, Prefix: "daemon"})
	sc, daemons := daemonScenario(t, tusk, srv.Env(), link)
	sc.archiveCommand += " -timeout 120s -connection-timeout 5s"
	out := archiveRestore(t, tusk, sc)
	checkWALObjects(t, walObjectsInS3(t, srv, "daemon/wal_005/"), "lz4", false, 0, out.lastWAL)
	hwm := vmHWM(t, daemons["primary"].cmd.Process.Pid)
	t.Logf("archiving daemon peak RSS %d MiB", hwm>>20)
}

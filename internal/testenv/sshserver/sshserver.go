// Package sshserver runs a throwaway OpenSSH server for tests: Debian's
// sshd (scripts/install-deps.sh installs openssh-server) in the
// foreground as a child process, on a free 127.0.0.1 port, with a host
// key and a user key generated for it and the internal SFTP server. The
// login is root's (sshd must run as root to log anyone in), by key only.
//
// sshd's StrictModes stays on: its files (configuration, host key,
// authorized_keys) live in a root-only directory under /run, whose every
// parent is root's and not group or world writable, as StrictModes
// requires of an authorized_keys path. The client's files (private key,
// known_hosts) live in a world-readable directory, so that a tusk run by
// PostgreSQL as the postgres user can read them: the keys are throwaway.
//
// Without sshd, or not as root, a test is skipped, except under CI=true
// where that is a failure.
package sshserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Binary is where Debian's openssh-server puts sshd.
const Binary = "/usr/sbin/sshd"

const startTimeout = 15 * time.Second

// Server is a running (or stopped) sshd.
type Server struct {
	Host string // 127.0.0.1
	Port int
	User string // root
	// KeyFile is the user's private key (OpenSSH format); KnownHosts lists
	// the server's host key for [Host]:Port; WrongKeyFile is a key the
	// server does not accept.
	KeyFile, KnownHosts, WrongKeyFile string
	// Dir is a directory for storage roots, root's, on the server's side.
	Dir string

	serverDir, clientDir string
	logPath              string
	cmd                  *exec.Cmd
	exited               chan struct{}
}

// Start runs a server for the test and stops it, removing its files, when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if err := Usable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshserver: %v (CI=true requires it)", err)
		}
		t.Skipf("skipped: %v", err)
	}
	s, err := Run()
	if err != nil {
		t.Fatalf("sshserver: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Usable says why no server can be started here, or nil.
func Usable() error {
	if _, err := os.Stat(Binary); err != nil {
		return fmt.Errorf("%s not found; install openssh-server (scripts/install-deps.sh)", Binary)
	}
	if os.Geteuid() != 0 {
		return errors.New("sshd must run as root to log a user in")
	}
	return nil
}

// Run generates the keys and configuration and starts sshd.
func Run() (*Server, error) {
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	serverDir, err := os.MkdirTemp("/run", "tusk-sshd-")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", User: "root", serverDir: serverDir, logPath: filepath.Join(serverDir, "sshd.log")}
	if s.clientDir, err = os.MkdirTemp("", "tusk-ssh-client-"); err == nil {
		err = os.Chmod(s.clientDir, 0o755)
	}
	if err == nil {
		s.Dir, err = os.MkdirTemp("", "tusk-ssh-storage-")
	}
	if err == nil {
		err = s.writeFiles()
	}
	if err == nil {
		err = s.start()
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// writeFiles generates the host and user keys and writes sshd_config.
func (s *Server) writeFiles() error {
	hostPub, err := writeKey(filepath.Join(s.serverDir, "host_ed25519"), 0o600)
	if err != nil {
		return err
	}
	userPub, err := writeKey(filepath.Join(s.clientDir, "id_ed25519"), 0o644)
	if err != nil {
		return err
	}
	s.KeyFile = filepath.Join(s.clientDir, "id_ed25519")
	if _, err := writeKey(filepath.Join(s.clientDir, "wrong_ed25519"), 0o644); err != nil {
		return err
	}
	s.WrongKeyFile = filepath.Join(s.clientDir, "wrong_ed25519")
	if err := os.WriteFile(filepath.Join(s.serverDir, "authorized_keys"), ssh.MarshalAuthorizedKey(userPub), 0o600); err != nil {
		return err
	}
	if s.Port, err = freePort(); err != nil {
		return err
	}
	s.KnownHosts = filepath.Join(s.clientDir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, hostPub) + "\n"
	if err := os.WriteFile(s.KnownHosts, []byte(line), 0o644); err != nil {
		return err
	}
	conf := strings.Join([]string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress " + s.Host,
		"HostKey " + filepath.Join(s.serverDir, "host_ed25519"),
		"PidFile none",
		"AuthorizedKeysFile " + filepath.Join(s.serverDir, "authorized_keys"),
		"StrictModes yes",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"Subsystem sftp internal-sftp",
		"MaxStartups 100",
		"MaxSessions 100",
		"LogLevel VERBOSE",
	}, "\n") + "\n"
	return os.WriteFile(filepath.Join(s.serverDir, "sshd_config"), []byte(conf), 0o600)
}

// writeKey writes a new ed25519 private key in OpenSSH's format.
func writeKey(path string, mode os.FileMode) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), mode); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// start runs sshd -D (no daemon) and waits until it accepts connections.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(Binary, "-D", "-e", "-f", filepath.Join(s.serverDir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: Stop signals sshd and its session children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("sshd exited at start: %s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd did not listen on %s within %v: %s", s.Addr(), startTimeout, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns the end of sshd's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop kills sshd and every session it serves (a server gone mid-upload).
// Session processes start sessions of their own (setsid), so they are
// found by parentage, before the listener dies and they are re-parented.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	pids := descendants(s.cmd.Process.Pid)
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-s.exited
	s.cmd = nil
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Pid is sshd's process id, 0 when it is stopped.
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Restart starts sshd again on the same port with the same keys.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// Close stops the server and removes its files and storage directory.
func (s *Server) Close() {
	s.Stop()
	for _, d := range []string{s.serverDir, s.clientDir, s.Dir} {
		if d != "" {
			_ = os.RemoveAll(d)
		}
	}
}

// Env is the tusk configuration for storage root dir (under Dir, or
// absolute): WALG_SSH_PREFIX, SSH_PORT, SSH_USERNAME,
// SSH_PRIVATE_KEY_PATH and TUSK_SSH_KNOWN_HOSTS.
func (s *Server) Env(dir string) []string {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(s.Dir, dir)
	}
	return []string{
		"WALG_SSH_PREFIX=ssh://" + s.Host + dir,
		"SSH_PORT=" + strconv.Itoa(s.Port),
		"SSH_USERNAME=" + s.User,
		"SSH_PRIVATE_KEY_PATH=" + s.KeyFile,
		"TUSK_SSH_KNOWN_HOSTS=" + s.KnownHosts,
	}
}

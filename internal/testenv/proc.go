package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FindTool returns the executable name: the file named by $envVar, then
// PATH, then the Go bin directories (where scripts/install-deps.sh puts
// the servers it builds with go install), then the extra paths given
// (relative ones are taken from the module root).
func FindTool(name, envVar string, extra ...string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("%s=%s is not an executable file", envVar, p)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var dirs []string
	if out, err := exec.Command(goTool(), "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if lines[0] != "" {
			dirs = append(dirs, strings.TrimSpace(lines[0]))
		}
		if len(lines) > 1 {
			for p := range strings.SplitSeq(strings.TrimSpace(lines[1]), string(os.PathListSeparator)) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	root, rootErr := ModuleRoot()
	for _, p := range extra {
		if !filepath.IsAbs(p) {
			if rootErr != nil {
				continue
			}
			p = filepath.Join(root, p)
		}
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (set %s, or run scripts/install-deps.sh)", name, envVar)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Proc is a test server process in its own process group, its output
// appended to a log file, killed with the test process.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// StartProc starts cmd, logging to logPath, and waits until ready returns
// nil (polled every 50 ms) or the process exits or timeout passes.
func StartProc(cmd *exec.Cmd, logPath string, timeout time.Duration, ready func() error) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &Proc{cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited during start-up (%v); log:\n%s", filepath.Base(cmd.Path), cmd.ProcessState, p.LogTail(2048))
		default:
		}
		err := ready()
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s not ready within %v: %w", filepath.Base(cmd.Path), timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HTTPReady is a readiness check for StartProc: any HTTP answer from url.
func HTTPReady(url string) func() error {
	c := &http.Client{Timeout: time.Second}
	return func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
}

// Running reports whether the process is up.
func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Stop terminates the process group (SIGTERM, then SIGKILL after 5 s) and
// waits for it. Stopping a stopped process does nothing.
func (p *Proc) Stop() {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.exited
	}
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Kill kills the process group at once (SIGKILL), as a crash or a power
// cut would, and waits for it. Killing a stopped process does nothing.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// LogTail returns the last n bytes of the log.
func (p *Proc) LogTail(n int64) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b[max(int64(len(b))-n, 0):])
}

// RequireTool is FindTool for a test: without the tool the test is
// skipped, or fails under CI=true, where the scripts must have installed it.
func RequireTool(t testing.TB, name, envVar string, extra ...string) string {
	t.Helper()
	p, err := FindTool(name, envVar, extra...)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true requires it)", err)
		}
		t.Skipf("skipped: %v", err)
	}
	return p
}

// ResetPeakRSS resets the process's peak resident set size (VmHWM) to its
// current size (Linux; elsewhere it does nothing), so PeakRSS then tells
// the peak of what follows.
func ResetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// PeakRSS returns the process's peak resident set size (VmHWM) and its
// current one (VmRSS) in bytes; zeros where /proc is missing. Benchmarks
// use it for memory the Go heap does not see (mmap'd buffers, as
// Azure's SDK uses).
func PeakRSS() (peak, now int64) {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(b), "\n") {
		name, rest, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		switch name {
		case "VmHWM":
			peak = kb << 10
		case "VmRSS":
			now = kb << 10
		}
	}
	return peak, now
}

package e2e

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"debug/elf"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// installed are the files the .deb and the tarball must hold (paths below
// the root), with the binary's name that walg-daemon-client points at
// checked apart.
var installed = []string{
	"usr/bin/tusk",
	"usr/bin/tusk-archive",
	"usr/share/bash-completion/completions/tusk",
	"usr/share/zsh/vendor-completions/_tusk",
	"usr/share/fish/vendor_completions.d/tusk.fish",
	"usr/share/doc/tusk/README.md",
	"lib/systemd/system/tusk-daemon.socket",
	"lib/systemd/system/tusk-daemon.service",
	"lib/systemd/system/tusk-backup.service",
	"lib/systemd/system/tusk-backup.timer",
	"etc/logrotate.d/tusk",
	"etc/tusk/tusk.env",
}

// TestDebPackage builds the release files with make dist, checks their
// checksums and the static tarball, installs the .deb, runs the installed
// daemon the way its socket unit does (under systemd when it is PID 1,
// otherwise as a child handed the listening socket through LISTEN_FDS and
// watched through NOTIFY_SOCKET), archives a segment of a real PostgreSQL
// through it with the installed walg-daemon-client, and purges the package.
func TestDebPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs the package")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: installing the .deb needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("skipped: no dpkg (not a Debian system)")
	}
	for _, tool := range []string{"make", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s not installed", tool)
		}
	}
	// One package test per machine at a time: test runs of several
	// checkouts would install and purge the same package.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "tusk-deb-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() }) // registered first: released last
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "tusk").Output(); strings.Contains(string(out), "installed") {
		t.Skip("skipped: a tusk package is already installed on this machine; the test does not replace it")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	// Without -trimpath the binary compiles from go test's build cache.
	mk := exec.Command("make", "-s", "-C", root, "dist", "DIST="+dist, "GOBUILDFLAGS=")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	sums := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	sums.Dir = dist
	if out, err := sums.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, out)
	}
	tarballs, _ := filepath.Glob(filepath.Join(dist, "tusk-v*-linux-amd64.tar.gz"))
	debs, _ := filepath.Glob(filepath.Join(dist, "tusk_*_amd64.deb"))
	if len(tarballs) != 1 || len(debs) != 1 {
		t.Fatalf("dist holds tarballs %v and debs %v, want one of each", tarballs, debs)
	}
	checkTarball(t, tarballs[0])

	install(t, debs[0])
	for _, p := range installed {
		if _, err := os.Stat("/" + p); err != nil {
			t.Errorf("installed package lacks /%s: %v", p, err)
		}
	}
	if fi, err := os.Stat("/etc/tusk/tusk.env"); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("/etc/tusk/tusk.env has mode %v, want 0600 (it may hold keys)", fi.Mode().Perm())
	}
	client, err := filepath.EvalSymlinks("/usr/bin/walg-daemon-client")
	if err != nil || !strings.HasPrefix(filepath.Base(client), "tusk") {
		t.Fatalf("/usr/bin/walg-daemon-client resolves to %q, %v", client, err)
	}
	out, err := exec.Command("/usr/bin/tusk", "--version").Output()
	if err != nil || !versionLine.Match(out) {
		t.Errorf("installed tusk --version = %q, %v", out, err)
	}
	out, err = exec.Command("/usr/bin/tusk-archive", "--version").Output()
	if want := strings.Replace(string(out), "tusk-archive version", "tusk version", 1); err != nil ||
		!strings.HasPrefix(string(out), "tusk-archive version") || !versionLine.MatchString(want) {
		t.Errorf("installed tusk-archive --version = %q, %v", out, err)
	}
	verifyUnits(t)

	archive := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + archive, "WALG_COMPRESSION_METHOD=lz4"}
	underSystemd := false
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		underSystemd = true
	}
	socket := filepath.Join(pgcluster.TempDir(t), "daemon.sock")
	if underSystemd {
		socket = unitValue(t, "tusk-daemon.socket", "ListenStream")
	}
	pg := pgcluster.New(t, pgcluster.Options{Conf: []string{
		"archive_mode = on",
		"archive_command = '/usr/bin/walg-daemon-client " + socket + " wal-push %f'",
	}})
	env = append(env, "PGDATA="+pg.DataDir())
	if underSystemd {
		startUnderSystemd(t, env, archive, pg.DataDir())
	} else {
		t.Log("systemd is not running: starting the daemon as its socket unit would")
		daemon := startAsSocketUnit(t, socket, env)
		defer rotateLogs(t, daemon)
	}
	pg.Start()
	pg.Exec("create table t as select g from generate_series(1, 10000) g")
	seg := pg.SwitchWAL()
	pg.WaitArchived(seg, 2*time.Minute)
	obj := filepath.Join(archive, "wal_005", seg+".lz4")
	if fi, err := os.Stat(obj); err != nil || fi.Size() == 0 {
		t.Fatalf("segment %s not archived through the installed daemon as %s: %v", seg, obj, err)
	}
	pg.Stop()
}

// versionLine is the shape of tusk --version.
var versionLine = regexp.MustCompile(`^tusk version v\d+\.\d+\.\d+\S*\t\S+\t\S+\n$`)

// checkTarball checks the tarball holds the package's files under one
// top directory, the walg-daemon-client link, and a static tusk binary.
func checkTarball(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	top := strings.TrimSuffix(filepath.Base(path), ".tar.gz") + "/"
	seen := map[string]bool{}
	tr := tar.NewReader(gz)
	bin := filepath.Join(t.TempDir(), "tusk")
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		name, ok := strings.CutPrefix(h.Name, top)
		if !ok {
			t.Fatalf("%s: %s is outside %s", path, h.Name, top)
		}
		seen[name] = true
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d, want root", path, h.Name, h.Uid, h.Gid)
		}
		switch name {
		case "usr/bin/walg-daemon-client":
			if h.Typeflag != tar.TypeSymlink || !strings.HasPrefix(h.Linkname, "tusk") {
				t.Errorf("%s: walg-daemon-client is %q -> %q, want a link to a tusk binary", path, h.Typeflag, h.Linkname)
			}
		case "usr/bin/tusk":
			w, err := os.Create(bin)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			w.Close()
		}
	}
	for _, p := range append(installed, "usr/bin/walg-daemon-client") {
		if !seen[p] {
			t.Errorf("%s lacks %s", path, p)
		}
	}
	e, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("tusk in %s: %v", path, err)
	}
	defer e.Close()
	for _, p := range e.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("tusk in %s is dynamically linked", path)
		}
	}
}

// install installs the .deb and purges it when the test ends.
func install(t *testing.T, deb string) {
	t.Helper()
	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", deb, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "tusk").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge tusk: %v\n%s", err, out)
		}
		for _, p := range []string{"/usr/bin/tusk", "/usr/bin/tusk-archive", "/usr/bin/walg-daemon-client", "/lib/systemd/system/tusk-daemon.service", "/etc/tusk/tusk.env"} {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s still there after dpkg --purge (%v)", p, err)
			}
		}
	})
}

// verifyUnits runs systemd-analyze verify on the installed units, when it
// is there.
func verifyUnits(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("no systemd-analyze: units not verified")
		return
	}
	units := []string{"tusk-daemon.socket", "tusk-daemon.service", "tusk-backup.service", "tusk-backup.timer"}
	var paths []string
	for _, u := range units {
		paths = append(paths, "/lib/systemd/system/"+u)
	}
	cmd := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...)
	out, err := cmd.CombinedOutput()
	// An unknown or misspelt setting is only a warning (exit status 0), and
	// systemd would run the unit without it: any output fails the test.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// unitValues reads the values of key in the installed unit.
func unitValues(t *testing.T, unit, key string) []string {
	t.Helper()
	f, err := os.Open("/lib/systemd/system/" + unit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vals []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+"="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// unitValue is the one value of key in the installed unit.
func unitValue(t *testing.T, unit, key string) string {
	t.Helper()
	v := unitValues(t, unit, key)
	if len(v) != 1 {
		t.Fatalf("%s: %s=%q, want one value", unit, key, v)
	}
	return v[0]
}

// startAsSocketUnit does what systemd does for tusk-daemon.socket and
// tusk-daemon.service: it listens on sock (a private path instead of the
// unit's), owned by the unit's user with the unit's mode, then runs the
// unit's ExecStart as that user with the socket as fd 3, LISTEN_FDS=1,
// LISTEN_PID the daemon's pid and NOTIFY_SOCKET, and waits for READY=1
// (Type=notify). The daemon is stopped with SIGTERM when the test ends.
func startAsSocketUnit(t *testing.T, sock string, env []string) *socketDaemon {
	t.Helper()
	if u := unitValue(t, "tusk-daemon.service", "User"); u != "postgres" {
		t.Fatalf("tusk-daemon.service runs as %q, want postgres", u)
	}
	argv := strings.Fields(unitValue(t, "tusk-daemon.service", "ExecStart"))
	unitSock := unitValue(t, "tusk-daemon.socket", "ListenStream")
	if argv[len(argv)-1] != unitSock {
		t.Fatalf("ExecStart %q does not name the socket unit's %s", argv, unitSock)
	}
	perm, err := strconv.ParseUint(unitValue(t, "tusk-daemon.socket", "SocketMode"), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	su, err := pgcluster.LookupServerUser()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon holds its own descriptor; the path stays for clients
	// (systemd removes it when the socket unit stops).
	l.SetUnlinkOnClose(false)
	defer l.Close()
	if err := os.Chown(sock, su.UID, su.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, os.FileMode(perm)); err != nil {
		t.Fatal(err)
	}
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	dir := filepath.Dir(sock)
	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notify.Close() })
	if err := os.Chown(notifyPath, su.UID, su.GID); err != nil {
		t.Fatal(err)
	}

	// LISTEN_PID must be the daemon's own pid, known only after fork: the
	// shell exports its pid and execs the daemon in its place.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `export LISTEN_PID=$$; exec "$@"`, "sh"}, argv...)...)
	// The unit's log file, in a private directory the daemon's user owns
	// as LogsDirectory= makes it.
	logDir := filepath.Join(dir, "log")
	if err := su.Mkdir(logDir, 0o750); err != nil {
		t.Fatal(err)
	}
	logDest := filepath.Join(logDir, filepath.Base(strings.TrimPrefix(unitValue(t, "tusk-daemon.service", "Environment"), "WALG_LOG_DESTINATION=")))
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + dir,
		"LISTEN_FDS=1", "LISTEN_FDNAMES=tusk-daemon.socket", "NOTIFY_SOCKET=" + notifyPath,
		"WALG_LOG_DESTINATION=" + logDest}, env...)
	cmd.ExtraFiles = []*os.File{lf}
	su.Apply(cmd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	logPath := filepath.Join(dir, "daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", argv, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("daemon exited on SIGTERM with %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("daemon did not stop within 30 s of SIGTERM")
		}
		if t.Failed() {
			for _, p := range []string{logPath, logDest} {
				b, _ := os.ReadFile(p)
				t.Logf("%s:\n%s", p, b)
			}
		}
		// The daemon served the inherited socket, not one of its own.
		if _, err := os.Stat(unitSock); err == nil {
			t.Errorf("the daemon created %s instead of serving the inherited socket", unitSock)
		}
	})

	buf := make([]byte, 4096)
	_ = notify.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		n, err := notify.Read(buf)
		if err != nil {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("no READY=1 on NOTIFY_SOCKET from the daemon (Type=notify): %v\n%s", err, b)
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			return &socketDaemon{pid: cmd.Process.Pid, logDir: logDir, log: logDest, state: filepath.Join(dir, "logrotate.state")}
		}
	}
}

// startUnderSystemd starts the installed socket unit under the running
// systemd, with a runtime drop-in that points the daemon at the test's
// archive and cluster (both under /tmp, so PrivateTmp is off for it).
func startUnderSystemd(t *testing.T, env []string, archive, pgdata string) {
	t.Helper()
	dropDir := "/run/systemd/system/tusk-daemon.service.d"
	if err := os.MkdirAll(dropDir, 0o755); err != nil {
		t.Fatal(err)
	}
	systemctl := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
			t.Errorf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		systemctl("stop", "tusk-daemon.socket", "tusk-daemon.service")
		_ = os.RemoveAll(dropDir)
		systemctl("daemon-reload")
	})
	var b strings.Builder
	b.WriteString("[Service]\nEnvironmentFile=\nPrivateTmp=no\n")
	b.WriteString("ReadWritePaths=" + archive + " " + filepath.Dir(pgdata) + "\n")
	for _, kv := range env {
		b.WriteString("Environment=" + strconv.Quote(kv) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dropDir, "test.conf"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	systemctl("daemon-reload")
	systemctl("start", "tusk-daemon.socket")
	if t.Failed() {
		t.FailNow()
	}
}

// socketDaemon is the daemon startAsSocketUnit runs.
type socketDaemon struct {
	pid         int
	logDir, log string
	state       string // logrotate's state file
}

// rotateLogs runs the installed logrotate snippet on the daemon's log
// directory, with the daemon's pid in place of its unit in the postrotate
// command, and checks that the daemon reopened its log (SIGUSR1): the old
// lines are in daemon.log.1 and the new daemon.log says so.
func rotateLogs(t *testing.T, d *socketDaemon) {
	t.Helper()
	if _, err := exec.LookPath("logrotate"); err != nil {
		t.Log("no logrotate: the log rotation is not tested")
		return
	}
	b, err := os.ReadFile("/etc/logrotate.d/tusk")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(b), "/var/log/tusk/", d.logDir+"/", 1)
	re := regexp.MustCompile(`systemctl kill --kill-whom=main --signal=SIGUSR1 tusk-daemon.service`)
	if !re.MatchString(conf) || conf == string(b) {
		t.Fatalf("/etc/logrotate.d/tusk: no /var/log/tusk/ path or no SIGUSR1 to the daemon's main process:\n%s", b)
	}
	conf = re.ReplaceAllString(conf, "kill -USR1 "+strconv.Itoa(d.pid))
	confPath := filepath.Join(filepath.Dir(d.state), "logrotate.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("logrotate", "--force", "--state", d.state, confPath).CombinedOutput(); err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	if old, err := os.ReadFile(d.log + ".1"); err != nil || !strings.Contains(string(old), "daemon: serving") {
		t.Errorf("rotated log %s.1: %v\n%s", d.log, err, old)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur, _ := os.ReadFile(d.log)
		if strings.Contains(string(cur), "log destination reopened") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not reopen %s after logrotate's SIGUSR1; it holds:\n%s", d.log, cur)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Package testenv holds helpers shared by tusk's tests: building the tusk
// binary once per test process, and (in sub-packages) PostgreSQL clusters
// and an S3 server.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// builds are the binaries of this test process, each compiled once.
// Package-level state is deliberate here and limited to test
// infrastructure: every test of a package shares one compile, and go test
// gives no per-process hook other than TestMain to hold it.
var builds struct {
	tusk, client, archive builtBinary
}

// builtBinary is one ./cmd/NAME compiled on first use.
type builtBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func (b *builtBinary) get(t testing.TB, name string) string {
	t.Helper()
	b.once.Do(func() {
		b.dir, b.path, b.err = buildCommand(name)
	})
	if b.err != nil {
		t.Fatalf("building %s: %v", name, b.err)
	}
	return b.path
}

// BuildTusk compiles ./cmd/tusk (CGO_ENABLED=0) once per test process and
// returns the binary's absolute path. It lives in a fresh 0755 directory
// under the system temp dir, so the PostgreSQL server user can run it from
// archive_command. Call RemoveBuilds from TestMain to delete it at exit.
func BuildTusk(t testing.TB) string { t.Helper(); return builds.tusk.get(t, "tusk") }

// BuildDaemonClient compiles ./cmd/tusk-daemon-client once per test
// process, like BuildTusk, and returns the binary's absolute path.
func BuildDaemonClient(t testing.TB) string {
	t.Helper()
	return builds.client.get(t, "tusk-daemon-client")
}

// BuildArchive compiles ./cmd/tusk-archive once per test process, like
// BuildTusk, and returns the binary's absolute path.
func BuildArchive(t testing.TB) string { t.Helper(); return builds.archive.get(t, "tusk-archive") }

// RemoveBuilds deletes what BuildTusk, BuildDaemonClient and BuildArchive
// produced; for TestMain, after m.Run.
func RemoveBuilds() {
	for _, b := range []*builtBinary{&builds.tusk, &builds.client, &builds.archive} {
		if b.dir != "" {
			_ = os.RemoveAll(b.dir)
		}
	}
}

// Main is a TestMain body for packages that use BuildTusk:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	defer RemoveBuilds()
	return m.Run()
}

// buildCommand builds ./cmd/NAME into a fresh 0755 directory.
func buildCommand(name string) (dir, bin string, err error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	dir, err = os.MkdirTemp("", "tusk-bin-")
	if err != nil {
		return "", "", fmt.Errorf("temp dir for the %s binary: %w", name, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	bin = filepath.Join(dir, name)
	args := []string{"build", "-o", bin}
	if name == "tusk-daemon-client" {
		args = append(args, DaemonClientBuildFlags()...)
	}
	cmd := exec.Command(goTool(), append(args, "./cmd/"+name)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, "", fmt.Errorf("go build ./cmd/%s in %s: %w\n%s", name, root, err, out)
	}
	return dir, bin, nil
}

// DaemonClientBuildFlags are the go build flags of tusk-daemon-client
// as the Makefile and scripts/dist.sh give them: on linux/amd64 its own
// entry point, which answers the common request before the Go runtime
// starts (cmd/tusk-daemon-client/entry_linux_amd64.go).
func DaemonClientBuildFlags() []string {
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		return []string{"-ldflags=-E=main.entry"}
	}
	return nil
}

// ModulePath is tusk's module path.
const ModulePath = "github.com/tusk-pg/tusk"

// ModuleRoot is the directory of tusk's go.mod, found from the working
// directory (go test runs each package in its own source dir). From inside
// a nested module (bench/) it is the enclosing tusk module's directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	for dir := filepath.Dir(mod); ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(b, ModulePath) {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("no go.mod of %s in %s or above", ModulePath, filepath.Dir(mod))
		}
	}
}

// declaresModule reports whether a go.mod's module line names path.
func declaresModule(gomod []byte, path string) bool {
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == path
		}
	}
	return false
}

// goTool is the go command that is running the tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// Fixtures returns the WAL-G fixture directory: $TUSK_FIXTURES, or
// ../shared/fixtures/walg next to the module root. It skips the test, with
// one line, when the directory is absent.
func Fixtures(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TUSK_FIXTURES")
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			t.Fatalf("locating fixtures: %v", err)
		}
		dir = filepath.Join(root, "..", "shared", "fixtures", "walg")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Skipf("WAL-G fixtures not found at %s (set TUSK_FIXTURES)", dir)
	}
	return dir
}

// LinkedPackages lists the packages the program in the test's directory
// links (go list -deps), for tests of what a binary must not link; it
// skips the test when go list cannot run.
func LinkedPackages(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command(goTool(), "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	return strings.Fields(string(out))
}

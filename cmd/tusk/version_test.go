package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk"
	"github.com/tusk-pg/tusk/internal/testenv"
)

// versionRE is WAL-G's shape: "<name> version <release>\t<commit>\t<date>".
var versionRE = regexp.MustCompile(`^tusk version (v\d+\.\d+\.\d+\S*)\t(\S+)\t(\S+)\n$`)

func rootOutput(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("tusk %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestVersionShape(t *testing.T) {
	// A setting the configuration refuses does not stop the version.
	t.Setenv("WALG_COMPRESSION_METHOD", "no-such-codec")
	flag := rootOutput(t, "--version")
	cmd := rootOutput(t, "version")
	if flag != cmd {
		t.Errorf("--version %q and version %q differ", flag, cmd)
	}
	m := versionRE.FindStringSubmatch(flag)
	if m == nil {
		t.Fatalf("--version = %q, want %s", flag, versionRE)
	}
	// Unstamped (go build, go test): the VERSION file's release.
	if m[1] != tusk.Version() {
		t.Errorf("release %q, want the VERSION file's %q", m[1], tusk.Version())
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(tusk.Version()) {
		t.Errorf("VERSION file holds %q, want vX.Y.Z", tusk.Version())
	}
}

// TestMakeBuildStampsVersion builds with the Makefile and checks that the
// binary reports git describe's release (or the VERSION file's, in a clone
// without tags), the checkout's commit and a build date in WAL-G's format.
func TestMakeBuildStampsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tusk with make")
	}
	for _, tool := range []string{"make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "tusk")
	// Without -trimpath the build shares the compiled packages of go test's
	// own build, and only links.
	mk := exec.Command("make", "-s", "-C", root, "build", "BIN="+bin, "GOBUILDFLAGS=")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("--version = %q, want %s", out, versionRE)
	}
	git := func(args ...string) (string, error) {
		b, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		return strings.TrimSpace(string(b)), err
	}
	want, err := git("describe", "--tags", "--match", "v[0-9]*", "--dirty")
	if err != nil {
		b, rerr := os.ReadFile(filepath.Join(root, "VERSION"))
		if rerr != nil {
			t.Fatal(rerr)
		}
		want = strings.TrimSpace(string(b))
	}
	commit, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != want || m[2] != commit {
		t.Errorf("make build reports %q %q, want %q %q", m[1], m[2], want, commit)
	}
	if !regexp.MustCompile(`^\d{4}\.\d{2}\.\d{2}_\d{2}:\d{2}:\d{2}$`).MatchString(m[3]) {
		t.Errorf("build date %q, want WAL-G's YYYY.MM.DD_hh:mm:ss", m[3])
	}
}

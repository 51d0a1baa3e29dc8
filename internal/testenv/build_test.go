package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// TestModuleRootFromNestedModule: the benchmarks are their own module under
// bench/, and still need the tusk checkout they measure.
func TestModuleRootFromNestedModule(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "tusk")); err != nil {
		t.Fatalf("ModuleRoot %s has no cmd/tusk: %v", root, err)
	}
	t.Chdir(filepath.Join(root, "bench"))
	got, err := ModuleRoot()
	if err != nil || got != root {
		t.Fatalf("ModuleRoot from bench/ = %q, %v; want %q", got, err, root)
	}
}

func TestDeclaresModule(t *testing.T) {
	for _, tc := range []struct {
		gomod string
		want  bool
	}{
		{"module github.com/tusk-pg/tusk\n\ngo 1.26\n", true},
		{"// comment\nmodule \"github.com/tusk-pg/tusk\"\n", true},
		{"module github.com/tusk-pg/tusk/bench\n", false},
		{"go 1.26\n", false},
	} {
		if got := declaresModule([]byte(tc.gomod), ModulePath); got != tc.want {
			t.Errorf("declaresModule(%q) = %v, want %v", tc.gomod, got, tc.want)
		}
	}
}

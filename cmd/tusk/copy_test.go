package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopyRefusals: each bad --from or --to is one error naming the flag
// or the setting and its file; --memory-plan prints the bound of the two
// storages without touching either.
func TestCopyRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"WALG_FILE_PREFIX":"`+filepath.Join(dir, "store")+`"}`)
	relative := write("relative.json", `{"WALG_FILE_PREFIX":"store"}`)
	none := write("none.json", `{"WALG_COMPRESSION_METHOD":"lz4"}`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"copy", "--from", filepath.Join(dir, "missing.json"), "--to", good}, "missing.json (from --from): open "},
		{[]string{"copy", "--from", good, "--to", relative}, `WALG_FILE_PREFIX: file storage prefix "store" is not an absolute path (in config file ` + relative},
		{[]string{"copy", "--from", none, "--to", good}, "--from " + none + ": no storage configured"},
		{[]string{"copy", "--to", good}, `required flag(s) "from" not set`},
		{[]string{"st", "copy", "--from", good, "--to", filepath.Join(dir, "missing.json")}, "missing.json (from --to): open "},
		{[]string{"copy", "--from", good, "--to", good, "--json"}, "--json goes with --memory-plan"},
		// The source has no backup: nothing to copy is an error, as in WAL-G.
		{[]string{"copy", "--from", good, "--to", good}, "no backups found"},
	} {
		_, stderr, code := runMain(t, nil, tc.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code == 0 || !strings.Contains(lines[len(lines)-1], tc.want) {
			t.Errorf("tusk %v: exit %d, stderr %q; want the last line to contain %q", tc.args, code, stderr, tc.want)
		}
	}
	out, _, err := runTusk(t, nil, "copy", "--from", good, "--to", good, "--memory-plan")
	if err != nil || !strings.Contains(out, "file upload (target)  ") || !strings.Contains(out, "bound: resident memory (RSS)") {
		t.Errorf("copy --memory-plan: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); !os.IsNotExist(err) {
		t.Errorf("--memory-plan touched the storage: %v", err)
	}
}

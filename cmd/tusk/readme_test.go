package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/config"
	"github.com/tusk-pg/tusk/internal/storage/all"
	"github.com/tusk-pg/tusk/internal/storage/s3"
	"github.com/tusk-pg/tusk/internal/testenv"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite the README's generated tables (make readme)")

// The settings reference lists the whole catalogue, in text and in JSON,
// without reading the configuration (a broken one does not stop it).
func TestSettingsCommand(t *testing.T) {
	env := map[string]string{"WALG_COMPRESSION_METHOD": "no-such-codec"}
	text, stderr, err := runTusk(t, env, "settings")
	if err != nil {
		t.Fatalf("settings: %v\n%s", err, stderr)
	}
	catalogue := config.Settings()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != len(catalogue)+1 || !strings.HasPrefix(lines[0], "SETTING ") {
		t.Fatalf("%d lines for %d settings:\n%s", len(lines), len(catalogue), text)
	}
	for i, s := range catalogue {
		f := strings.Fields(lines[i+1])
		state, _ := s.State()
		if len(f) < 4 || f[0] != s.Name || f[1] != string(state) {
			t.Errorf("line %q, want %s %s", lines[i+1], s.Name, state)
		}
	}

	js, _, err := runTusk(t, env, "flags", "--json") // WAL-G's name
	if err != nil {
		t.Fatal(err)
	}
	var refs []settingRef
	if err := json.Unmarshal([]byte(js), &refs); err != nil {
		t.Fatalf("--json: %v", err)
	}
	if len(refs) != len(catalogue) {
		t.Fatalf("--json: %d settings, want %d", len(refs), len(catalogue))
	}
	want := map[string]settingRef{
		"TUSK_LOG_FORMAT":            {State: config.Honoured, Default: "text", Kind: "enum", Flag: "--tusk-log-format"},
		"WALG_GPG_KEY_ID":            {State: config.Refused, Kind: "string", Secret: true, Flag: "--walg-gpg-key-id"},
		"WALG_STREAM_CREATE_COMMAND": {State: config.Ignored, Kind: "string", Flag: "--walg-stream-create-command"},
		"WALG_CONFIG_PATH":           {State: config.Honoured, Kind: "string"},
	}
	for i, r := range refs {
		if r.Name != catalogue[i].Name || r.Meaning != catalogue[i].Meaning || r.Meaning == "" {
			t.Errorf("--json entry %d: %+v", i, r)
		}
		if w, ok := want[r.Name]; ok && (r.State != w.State || r.Default != w.Default || r.Kind != w.Kind ||
			r.Secret != w.Secret || r.Flag != w.Flag || (r.State != config.Honoured) != (r.Reason != "")) {
			t.Errorf("%s: %+v, want %+v", r.Name, r, w)
		}
	}
}

// commandsMarkdown is the README's table of WAL-G's commands and tusk's
// own, from walgCommands and the command tree.
func commandsMarkdown(root *cobra.Command) string {
	var b strings.Builder
	b.WriteString("| WAL-G command | in tusk | what it does |\n|---|---|---|\n")
	walg := map[string]bool{}
	for _, wc := range walgCommands {
		walg[wc.name] = true
		status := "not yet"
		for _, c := range root.Commands() {
			switch {
			case c.Annotations[missingAnnotation] != "":
			case c.Name() == wc.name:
				status = "yes"
			case c.HasAlias(wc.name):
				status = fmt.Sprintf("yes, as `%s`", c.Name())
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", wc.name, status, wc.what)
	}
	for _, c := range root.Commands() {
		if !walg[c.Name()] && c.IsAvailableCommand() && c.Name() != "help" {
			fmt.Fprintf(&b, "| – | `%s` (tusk's own) | %s |\n", c.Name(), c.Short)
		}
	}
	return b.String()
}

// The README's generated tables agree with the catalogue and the command
// tree; `make readme` rewrites them.
func TestREADMETables(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings, _, err := runTusk(t, nil, "settings", "--markdown")
	if err != nil {
		t.Fatal(err)
	}
	updated := readme
	for _, block := range []struct{ name, body string }{
		{"settings", settings},
		{"commands", commandsMarkdown(newRootCommand())},
	} {
		begin := []byte("<!-- generated: " + block.name + " (make readme) -->\n")
		end := []byte("<!-- end of generated: " + block.name + " -->\n")
		i, j := bytes.Index(updated, begin), bytes.Index(updated, end)
		if i < 0 || j < i {
			t.Fatalf("README.md has no %q ... %q block", begin, end)
		}
		i += len(begin)
		if got := string(updated[i:j]); got != block.body {
			if !*updateREADME {
				t.Errorf("README.md's %s table differs from what tusk generates; run make readme", block.name)
			}
			updated = append(append(append([]byte{}, updated[:i]...), block.body...), updated[j:]...)
		}
	}
	if *updateREADME && !bytes.Equal(updated, readme) {
		if err := os.WriteFile(path, updated, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Each example configuration of the README loads without an error or a
// warning and resolves to what its text says.
func TestREADMEExampleConfigurations(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### Example configurations\n")
	if !ok {
		t.Fatal("README.md has no Example configurations section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for rest := section; ; {
		_, after, ok := strings.Cut(rest, "```json\n")
		if !ok {
			break
		}
		var block string
		block, rest, _ = strings.Cut(after, "```")
		blocks = append(blocks, block)
	}
	want := []func(t *testing.T, c *config.Config){
		func(t *testing.T, c *config.Config) { // file storage
			if kind, prefix, _ := c.StorageKind(); kind != config.StorageFile || prefix != "/var/lib/postgresql/archive" {
				t.Errorf("storage %s %s", kind, prefix)
			}
		},
		func(t *testing.T, c *config.Config) { // S3 with an instance role: no keys
			o, err := s3Options(c)
			if err != nil || o.Region != "eu-west-1" || o.AccessKeyID != "" || o.Endpoint != "" {
				t.Errorf("S3 options %+v, %v", o, err)
			}
		},
		func(t *testing.T, c *config.Config) { // S3-compatible with its own CA
			o, err := s3Options(c)
			if err != nil || o.CACertFile != "/etc/tusk/backup-ca.pem" || !o.ForcePathStyle || o.Endpoint == "" {
				t.Errorf("S3 options %+v, %v", o, err)
			}
		},
		func(t *testing.T, c *config.Config) { // libsodium
			if cs := c.Crypt(); cs.LibsodiumKeyPath != "/etc/tusk/sodium.key" || cs.LibsodiumKeyTransform != "hex" {
				t.Errorf("crypt settings %+v", cs)
			}
		},
		func(t *testing.T, c *config.Config) { // Azure with the account key
			if st, err := c.Storage(); err != nil || st.Kind != config.StorageAzure || st.Root != "azure://backups/pg-main" {
				t.Errorf("storage %+v, %v", st, err)
			}
		},
	}
	if len(blocks) != len(want) {
		t.Fatalf("%d JSON examples in the README, the test knows %d", len(blocks), len(want))
	}
	for i, block := range blocks {
		p := filepath.Join(t.TempDir(), "walg.json")
		if err := os.WriteFile(p, []byte(block), 0o600); err != nil {
			t.Fatal(err)
		}
		c, warnings, err := config.Load(config.LoadOptions{ConfigFile: p, Backends: all.Registry()})
		if err != nil || len(warnings) > 0 {
			t.Errorf("example %d: %v, warnings %q\n%s", i+1, err, warnings, block)
			continue
		}
		want[i](t, c)
	}
}

// s3Options reads the options of the S3 storage c selects.
func s3Options(c *config.Config) (s3.Options, error) {
	setting, err := c.StorageSettings()
	if err != nil {
		return s3.Options{}, err
	}
	return s3.OptionsFromSettings(setting)
}

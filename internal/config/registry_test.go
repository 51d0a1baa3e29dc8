package config

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/all"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/storage/s3"
)

// Every registered backend is selected by a catalogue prefix of its kind,
// reads only implemented canonical settings, and is configured (without
// I/O) from the configuration through the registry alone.
func TestRegistry(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{})
	prefixes := map[string]string{} // kind → prefix setting
	for _, s := range c.settings {
		if s.Storage != "" {
			prefixes[s.Storage] = s.Name
		}
	}
	seen := map[string]bool{}
	for _, r := range all.Registry() {
		if seen[r.Kind] {
			t.Errorf("%s registered twice", r.Kind)
		}
		seen[r.Kind] = true
		if prefixes[r.Kind] != r.Prefix {
			t.Errorf("%s: prefix %s, catalogue selects it with %q", r.Kind, r.Prefix, prefixes[r.Kind])
		}
		for _, name := range append([]string{r.Prefix}, r.Settings...) {
			i, ok := c.index[name]
			if !ok || c.settings[i].Name != name || c.settings[i].Status != Implemented {
				t.Errorf("%s: %s is not an implemented canonical setting", r.Kind, name)
			}
		}
	}
	// A prefix without a backend is refused, naming it.
	for kind, name := range prefixes {
		i := c.index[name]
		if seen[kind] != (c.settings[i].Status == Implemented) {
			t.Errorf("%s: registered %v, status %v", name, seen[kind], c.settings[i].Status)
		}
	}
}

func TestStorageConfigured(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{Environ: []string{"WALG_FILE_PREFIX=/var/b", "WALG_STORAGE_PREFIX=sub"}})
	st, err := c.Storage()
	if err != nil || st.Kind != StorageFile || st.Root != "file:///var/b/sub" || !st.Traits.StreamsUnknownSize || st.Memory.Upload == 0 {
		t.Errorf("file: %+v, %v", st, err)
	}
	c, _ = mustLoad(t, LoadOptions{Environ: []string{"WALG_S3_PREFIX=s3://b/p", "AWS_ENDPOINT=http://127.0.0.1:1"}})
	st, err = c.Storage()
	if err != nil || st.Kind != StorageS3 || st.Root != "s3://b/p" || !st.Traits.SignsPayload || st.Memory.UnknownSize == 0 {
		t.Errorf("s3: %+v, %v", st, err)
	}
	// A bad prefix is one line naming the variable as the user spelt it.
	_, _, err = loadAll(LoadOptions{Environ: []string{"WALE_FILE_PREFIX=relative/path"}})
	if err == nil || !strings.HasPrefix(err.Error(), "WALE_FILE_PREFIX: ") || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("relative file prefix: %v", err)
	}
}

// A program linking fewer backends (tusk-archive) configures those as
// tusk does, and refuses a storage tusk has but it does not link in one
// line naming the setting as the user spelt it, also in a failover
// storage. Nothing is refused before it is selected.
func TestRegistrySubset(t *testing.T) {
	few := storage.Registry{file.Backend(), s3.Backend()}
	c, _, err := Load(LoadOptions{Backends: few, Environ: []string{"WALG_FILE_PREFIX=/var/b"}})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Storage(); err != nil || st.Root != "file:///var/b" {
		t.Errorf("file: %+v, %v", st, err)
	}
	if _, _, err := Load(LoadOptions{Backends: few}); err != nil {
		t.Errorf("nothing set: %v", err)
	}
	for _, tt := range []struct{ env, want string }{
		{"WALE_GS_PREFIX=gs://b/p", "WALE_GS_PREFIX: Google Cloud storage is not built into this program (it has file and S3 storage only); use tusk for it"},
		{"WALG_SSH_PREFIX=ssh://h/p", "WALG_SSH_PREFIX: SSH storage is not built into this program"},
		{`WALG_FAILOVER_STORAGES={"a": {"WALG_AZ_PREFIX": "azure://c/p"}}`, `storage "a": WALG_AZ_PREFIX: Azure storage is not built into this program`},
	} {
		env := []string{tt.env}
		if strings.HasPrefix(tt.env, "WALG_FAILOVER") {
			env = append(env, "WALG_FILE_PREFIX=/var/b")
		}
		_, _, err := Load(LoadOptions{Backends: few, Environ: env})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", tt.env, err)
		}
		// tusk itself accepts it.
		if _, _, err := loadAll(LoadOptions{Environ: env}); err != nil && strings.Contains(err.Error(), "not built into") {
			t.Errorf("%s with every backend: %v", tt.env, err)
		}
	}
}

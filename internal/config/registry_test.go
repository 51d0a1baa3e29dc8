package config

import (
	"strings"
	"testing"
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
	for _, r := range Backends() {
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
	_, _, err = Load(LoadOptions{Environ: []string{"WALE_FILE_PREFIX=relative/path"}})
	if err == nil || !strings.HasPrefix(err.Error(), "WALE_FILE_PREFIX: ") || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("relative file prefix: %v", err)
	}
}

package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/storage/s3"
)

// ErrNoStorage is wrapped by StorageKind when no storage prefix is set.
var ErrNoStorage = errors.New("no storage configured")

// selectStorage applies WAL-G's adapter order: the first WALG_<T>_PREFIX
// (or WALE_<T>_PREFIX) set wins; the others set are returned as shadowed.
func (c *Config) selectStorage() (sel *Setting, shadowed []Setting) {
	for _, name := range storageOrder() {
		if !c.explicit[name] {
			continue
		}
		s := c.settings[c.index[name]]
		if sel == nil {
			sel = &s
			continue
		}
		shadowed = append(shadowed, s)
	}
	return sel, shadowed
}

// StorageKind returns the selected storage (StorageS3 or StorageFile) and
// its prefix exactly as configured, with WALG_STORAGE_PREFIX appended as a
// sub-folder ("s3://b/p" + "x" → "s3://b/p/x"), as WAL-G's
// ConfigureStoragePrefix does. The error wraps ErrNoStorage when nothing
// is configured, and names the variable when the selected storage is one
// tusk does not support (Load has already refused that case).
func (c *Config) StorageKind() (kind, prefix string, err error) {
	sel, _ := c.selectStorage()
	if sel == nil {
		return "", "", fmt.Errorf("%w: set WALG_S3_PREFIX (s3://bucket/path) or WALG_FILE_PREFIX (/path); "+
			"WALE_S3_PREFIX and WALE_FILE_PREFIX are accepted too", ErrNoStorage)
	}
	key := c.from[sel.Name]
	if sel.Status == NotYet {
		return "", "", fmt.Errorf("%s is set, but tusk does not support %s yet", key, sel.Feature)
	}
	prefix = c.values[sel.Name]
	if sub := strings.Trim(c.value("WALG_STORAGE_PREFIX"), "/"); sub != "" {
		prefix = strings.TrimRight(prefix, "/") + "/" + sub
	}
	return sel.Storage, prefix, nil
}

// checkStorage checks the selected storage's settings as opening it will,
// without I/O, so that every command (a memory plan included) refuses them
// in Load, naming the variable. The S3 options are kept for S3Options.
func (c *Config) checkStorage(sel *Setting) []string {
	key := c.from[sel.Name]
	switch sel.Storage {
	case StorageFile:
		_, prefix, err := c.StorageKind()
		if err == nil {
			_, err = file.New(prefix) // parses the prefix; no I/O
		}
		if err != nil {
			return []string{fmt.Sprintf("%s: %v%s", key, err, c.where(key))}
		}
	case StorageS3:
		c.s3, c.s3Err = c.s3Options()
		if c.s3Err != nil {
			// Lines start with the canonical name; show the spelling the
			// user set (S3_SSE, WALE_S3_PREFIX, ...).
			var problems []string
			for _, line := range strings.Split(c.s3Err.Error(), "\n") {
				if name, rest, ok := strings.Cut(line, ":"); ok && c.from[name] != "" {
					line = c.from[name] + ":" + rest + c.where(c.from[name])
				}
				problems = append(problems, line)
			}
			return problems
		}
	}
	return nil
}

// S3Options returns the options of the S3 storage the configuration
// selects, with WALG_STORAGE_PREFIX applied, without contacting S3. The
// s3 package reads its settings by their canonical names
// (s3.SettingNames), which TestS3SettingNames keeps in the catalogue.
func (c *Config) S3Options() (s3.Options, error) {
	if kind, _, err := c.StorageKind(); err != nil || kind != StorageS3 {
		return c.s3Options() // names the problem
	}
	return c.s3, c.s3Err
}

func (c *Config) s3Options() (s3.Options, error) {
	kind, prefix, err := c.StorageKind()
	if err != nil {
		return s3.Options{}, err
	}
	if kind != StorageS3 {
		return s3.Options{}, fmt.Errorf("the configured storage is %s, not S3", storageName(kind))
	}
	return s3.OptionsFromSettings(func(name string) (string, bool) {
		if name == "WALG_S3_PREFIX" {
			return prefix, true
		}
		return c.lookup(name)
	})
}

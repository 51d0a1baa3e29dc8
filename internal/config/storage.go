package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tusk-pg/tusk/internal/storage"
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
		var names []string
		for _, kind := range implementedStorages() {
			names = append(names, "WALG_"+strings.ToUpper(kind)+"_PREFIX")
		}
		return "", "", fmt.Errorf("%w: set one of %s (the WALE_ spellings are accepted too)",
			ErrNoStorage, strings.Join(names, ", "))
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

// implementedStorage reports whether tusk has a backend of this kind
// (storage/all lists them): its prefix is then a supported setting, even in
// a program that does not link that backend (which refuses it in Load,
// naming the setting).
func implementedStorage(kind string) bool { return slices.Contains(implementedStorages(), kind) }

// implementedStorages are the kinds storage/all lists, in its order.
func implementedStorages() []string {
	return []string{StorageFile, StorageS3, StorageGS, StorageAzure, StorageSSH}
}

// Storage returns the selected backend with its options read and checked,
// not connected (storage.Open connects it).
func (c *Config) Storage() (storage.Configured, error) {
	if c.storeErr != nil || c.store.Connect != nil {
		return c.store, c.storeErr
	}
	return c.configureStorage()
}

func (c *Config) configureStorage() (storage.Configured, error) {
	kind, _, err := c.StorageKind()
	if err != nil {
		return storage.Configured{}, err
	}
	b, ok := c.backends.Lookup(kind)
	if !ok {
		var have []string
		for _, b := range c.backends {
			have = append(have, b.Name)
		}
		return storage.Configured{}, fmt.Errorf("%s storage is not built into this program (it has %s storage only); use tusk for it",
			storageName(kind), strings.Join(have, " and "))
	}
	setting, err := c.StorageSettings()
	if err != nil {
		return storage.Configured{}, err
	}
	return b.Configure(setting)
}

// checkStorage checks the selected storage's settings as opening it will,
// without I/O, so that every command (a memory plan included) refuses them
// in Load, naming the variable. The result is kept for Storage.
func (c *Config) checkStorage(sel *Setting) []string {
	c.store, c.storeErr = c.configureStorage()
	if c.storeErr == nil {
		return nil
	}
	// A line naming a setting shows the spelling the user set (S3_SSE,
	// WALE_S3_PREFIX, ...); any other line is about the prefix.
	key := c.from[sel.Name]
	var problems []string
	for _, line := range strings.Split(c.storeErr.Error(), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		_, known := c.index[name]
		switch {
		case ok && c.from[name] != "":
			line = c.from[name] + ":" + rest + c.where(c.from[name])
		case !ok || !known:
			line = key + ": " + line + c.where(key)
		}
		problems = append(problems, line)
	}
	return problems
}

// StorageSettings is the lookup the selected backend's options are read
// from (storage.Backend's Configure, s3.OptionsFromSettings): its prefix
// setting answers with the prefix, WALG_STORAGE_PREFIX applied; every
// other name, in any of WAL-G's spellings, as WAL-G would read it.
func (c *Config) StorageSettings() (func(string) (string, bool), error) {
	kind, prefix, err := c.StorageKind()
	if err != nil {
		return nil, err
	}
	prefixName := ""
	for _, s := range c.settings {
		if s.Storage == kind {
			prefixName = s.Name
		}
	}
	return func(name string) (string, bool) {
		if name == prefixName {
			return prefix, true
		}
		return c.lookup(name)
	}, nil
}

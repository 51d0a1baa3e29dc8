package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/azure"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/storage/gcs"
	"github.com/tusk-pg/tusk/internal/storage/s3"
	"github.com/tusk-pg/tusk/internal/storage/sftp"
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
		for _, b := range registry() {
			names = append(names, b.reg.Prefix)
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

// backend is one entry of the storage registry: a backend's registration
// and the adapter from this configuration to its options.
type backend struct {
	reg storage.Registration
	// configure reads the backend's options through typed accessors and
	// checks them without I/O; prefix has WALG_STORAGE_PREFIX applied.
	configure func(c *Config, prefix string) (storage.Configured, error)
}

// registry lists every backend tusk opens: the one place that knows them
// by name. A backend is its folder, one entry here, and its settings in
// the catalogue (its prefix is supported once registered).
func registry() []backend {
	return []backend{
		{file.Registration(), func(_ *Config, prefix string) (storage.Configured, error) {
			return file.Configure(prefix)
		}},
		{s3.Registration(), func(c *Config, _ string) (storage.Configured, error) {
			o, err := c.s3Options()
			if err != nil {
				return storage.Configured{}, err
			}
			return s3.Configure(o), nil
		}},
		{gcs.Registration(), func(c *Config, prefix string) (storage.Configured, error) {
			o, err := gcs.OptionsFromSettings(c.backendSettings("WALG_GS_PREFIX", prefix))
			if err != nil {
				return storage.Configured{}, err
			}
			return gcs.Configure(o)
		}},
		{azure.Registration(), func(c *Config, prefix string) (storage.Configured, error) {
			o, err := azure.OptionsFromSettings(c.backendSettings("WALG_AZ_PREFIX", prefix))
			if err != nil {
				return storage.Configured{}, err
			}
			return azure.Configure(o)
		}},
		{sftp.Registration(), func(c *Config, prefix string) (storage.Configured, error) {
			o, err := c.sshOptions(prefix)
			if err != nil {
				return storage.Configured{}, err
			}
			return sftp.Configure(o)
		}},
	}
}

// Backends returns the registrations of every backend tusk opens.
func Backends() []storage.Registration {
	var out []storage.Registration
	for _, b := range registry() {
		out = append(out, b.reg)
	}
	return out
}

// registered reports whether a backend of this kind is in the registry.
func registered(kind string) bool {
	for _, b := range registry() {
		if b.reg.Kind == kind {
			return true
		}
	}
	return false
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
	kind, prefix, err := c.StorageKind()
	if err != nil {
		return storage.Configured{}, err
	}
	for _, b := range registry() {
		if b.reg.Kind == kind {
			return b.configure(c, prefix)
		}
	}
	return storage.Configured{}, fmt.Errorf("%s storage is not supported", storageName(kind))
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

// S3Options returns the options of the S3 storage the configuration
// selects, with WALG_STORAGE_PREFIX applied, without contacting S3. The
// s3 package reads its settings by their canonical names
// (s3.SettingNames), which TestS3SettingNames keeps in the catalogue.
func (c *Config) S3Options() (s3.Options, error) { return c.s3Options() }

func (c *Config) s3Options() (s3.Options, error) {
	kind, prefix, err := c.StorageKind()
	if err != nil {
		return s3.Options{}, err
	}
	if kind != StorageS3 {
		return s3.Options{}, fmt.Errorf("the configured storage is %s, not S3", storageName(kind))
	}
	return s3.OptionsFromSettings(c.backendSettings("WALG_S3_PREFIX", prefix))
}

// backendSettings is the lookup a backend's OptionsFromSettings reads: the
// prefix setting answers with prefix (WALG_STORAGE_PREFIX applied), every
// other name as WAL-G would read it.
func (c *Config) backendSettings(prefixName, prefix string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if name == prefixName {
			return prefix, true
		}
		return c.lookup(name)
	}
}

// sshOptions maps WALG_SSH_PREFIX and the SSH settings to the sftp
// backend's options; TUSK_SSH_KNOWN_HOSTS defaults to ~/.ssh/known_hosts.
func (c *Config) sshOptions(prefix string) (sftp.Options, error) {
	host, dir, err := sftp.ParsePrefix(prefix)
	if err != nil {
		return sftp.Options{}, fmt.Errorf("WALG_SSH_PREFIX: %w", err)
	}
	known := c.value("TUSK_SSH_KNOWN_HOSTS")
	if known == "" {
		if home, err := os.UserHomeDir(); err == nil {
			known = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	return sftp.Options{
		Host:                  host,
		Port:                  c.intValue("SSH_PORT"),
		Path:                  dir,
		User:                  c.value("SSH_USERNAME"),
		Password:              c.value("SSH_PASSWORD"),
		PrivateKeyPath:        c.value("SSH_PRIVATE_KEY_PATH"),
		KnownHostsPath:        known,
		InsecureIgnoreHostKey: c.boolValue("TUSK_SSH_INSECURE_IGNORE_HOST_KEY"),
	}, nil
}

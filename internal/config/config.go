// Package config resolves tusk's settings exactly as WAL-G does: flags >
// environment > config file > defaults, with WAL-G's names and aliases.
//
// Sources are merged per key first, then each setting walks its lookup
// chain (Setting.Lookup) and takes the first key set by any source:
//
//   - storage options: exact key, WALG_<key>, WALE_<key>; S3 options are
//     named WALG_S3_* here (chain S3_X, WALG_S3_X, WALE_S3_X), so a bare
//     S3_SSE in the config file beats WALG_S3_SSE in the environment, as
//     in WAL-G;
//   - AWS_ACCESS_KEY_ID, then AWS_ACCESS_KEY (each with WALG_/WALE_);
//     likewise AWS_SECRET_ACCESS_KEY, then AWS_SECRET_KEY;
//   - storage prefixes: WALG_<T>_PREFIX, then WALE_<T>_PREFIX;
//   - GPG_KEY_ID, WALG_GPG_KEY_ID, WALE_GPG_KEY_ID.
//
// When keys of one chain hold different values, the earlier one wins and a
// warning names both. Empty values count as unset (viper ignores empty
// environment variables).
//
// Everything is validated in Load, before any command touches PostgreSQL or
// storage: a bad value fails with one line naming the variable, so a typo in
// archive_command's environment is reported instead of half-working.
// The rules of a value that a package consumes are that package's (codec's
// method names and zstd level, crypt's key transforms, the file and S3
// storage options): config calls them in Load rather than restating them,
// so it imports codec, crypt and storage, and none of those imports config
// (they take options structs). Commands read settings through the typed
// accessors only, so a misspelt name does not compile.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/storage"
)

// Source says where a value came from.
type Source int

const (
	SourceDefault Source = iota
	SourceFile
	SourceEnv
	SourceFlag
)

func (s Source) String() string {
	switch s {
	case SourceFile:
		return "file"
	case SourceEnv:
		return "env"
	case SourceFlag:
		return "flag"
	default:
		return "default"
	}
}

// LoadOptions are the inputs of Load; the package reads nothing else except
// the config file, so tests and the CLI control every source.
type LoadOptions struct {
	// ConfigFile is --config. Empty: WALG_CONFIG_PATH, then $Home/.walg.*.
	ConfigFile string
	// ConfigFileFlag names the flag ConfigFile came from in messages;
	// empty: "--config".
	ConfigFileFlag string
	// Flags maps a setting key (canonical name or alias, see FlagNames) to
	// the value of its flag; only flags the user passed belong here.
	Flags map[string]string
	// Environ is os.Environ().
	Environ []string
	// Home is the user's home directory; empty skips the $HOME search.
	Home string
	// Turbo is WAL-G's --turbo: rate limits and GOMAXPROCS are ignored and
	// the disk read concurrency becomes 4.
	Turbo bool
	// Backends are the storage backends the program links (storage/all
	// for tusk). A storage tusk has but the program does not link is
	// refused in Load, naming its prefix setting.
	Backends storage.Registry
}

// rawValue is one key's value as given by its highest-precedence source.
type rawValue struct {
	value   string
	src     Source
	complex bool // a map or list from a config file, JSON-encoded
}

// Config is the resolved, validated set of settings. It is immutable after
// Load and safe for concurrent reads.
type Config struct {
	values   map[string]string // canonical name → value (user or default)
	from     map[string]string // canonical name → key that supplied it ("" = default)
	explicit map[string]bool   // canonical name → set by the user
	raw      map[string]rawValue
	index    map[string]int // every known key → catalogue position
	settings []Setting
	file     string
	turbo    bool
	method   codec.Method // WALG_COMPRESSION_METHOD with WALG_ZSTD_LEVEL
	backends storage.Registry
	store    storage.Configured // with storeErr: the selected storage, read in Load
	storeErr error
	// failovers are WALG_FAILOVER_STORAGES, read in Load.
	failovers []FailoverStorage
}

// Load resolves and validates the configuration. Warnings (unknown names,
// ignored features, shadowed aliases, an unreadable $HOME/.walg.* file) are
// returned for the caller to log, also alongside an error; err joins one
// line per problem.
func Load(opts LoadOptions) (*Config, []string, error) {
	env := parseEnviron(opts.Environ)
	file, fileVals, fileWarn, err := readConfigFile(opts.ConfigFile, opts.ConfigFileFlag, env["WALG_CONFIG_PATH"], opts.Home)
	if err != nil {
		return nil, nil, err
	}
	return build(opts, env, file, fileVals, fileWarn)
}

// build resolves and validates the sources once the config file is read.
func build(opts LoadOptions, env map[string]string, file string, fileVals map[string]rawValue,
	warnings []string) (*Config, []string, error) {
	settings := catalogue()
	c := &Config{
		values:   map[string]string{},
		from:     map[string]string{},
		explicit: map[string]bool{},
		raw:      map[string]rawValue{},
		index:    indexOf(settings),
		settings: settings,
		file:     file,
		turbo:    opts.Turbo,
		backends: opts.Backends,
	}

	// Per key: flag > env > file, as viper does; an empty value counts as
	// unset, as viper treats empty environment variables. A value over
	// MaxValueSize is refused whatever its source, without being shown.
	var problems []string
	set := func(k string, rv rawValue) {
		switch {
		case rv.value == "":
		case len(rv.value) > MaxValueSize:
			problems = append(problems, fmt.Sprintf("%s: the value is %d bytes, more than the %d KiB a setting may hold%s",
				shortName(k), len(rv.value), MaxValueSize>>10, c.whereFrom(rv.src, k)))
		default:
			c.raw[k] = rv
		}
	}
	for k, v := range fileVals {
		set(k, v)
	}
	for k, v := range env {
		if _, known := c.index[k]; !known {
			continue // already in the environment; nothing to resolve or export
		}
		set(k, rawValue{value: trimValue(v), src: SourceEnv})
	}
	for k, v := range opts.Flags {
		if _, ok := c.index[k]; !ok {
			problems = append(problems, fmt.Sprintf("%s: not a setting tusk knows (passed as a flag)", shortName(k)))
			continue
		}
		set(k, rawValue{value: trimValue(v), src: SourceFlag})
	}

	warnings = append(warnings, c.unknownWarnings(env, fileVals)...)
	warnings = append(warnings, c.resolve()...)
	p, w := c.validate()
	problems = append(problems, p...)
	warnings = append(warnings, w...)

	if len(problems) > 0 {
		problems = dedupe(problems)
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = errors.New(p)
		}
		return nil, warnings, errors.Join(errs...)
	}
	return c, dedupe(warnings), nil
}

func indexOf(settings []Setting) map[string]int {
	idx := map[string]int{}
	// Canonical names first so a key that is both a canonical name and an
	// alias (WALG_UPLOAD_CONCURRENCY) maps to its own setting.
	for i, s := range settings {
		idx[s.Name] = i
	}
	for i, s := range settings {
		for _, k := range s.Lookup {
			if _, ok := idx[k]; !ok {
				idx[k] = i
			}
		}
	}
	return idx
}

// parseEnviron keeps the first occurrence of a key, as os.Getenv does.
func parseEnviron(environ []string) map[string]string {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if _, seen := env[k]; !seen {
			env[k] = v
		}
	}
	return env
}

// trimValue drops trailing CR/LF as WAL-G's GetSetting does (values pasted
// from files often carry them).
func trimValue(v string) string { return strings.TrimRight(v, "\r\n") }

// resolve picks each setting's value along its lookup chain. WAL-G consults
// the keys in order and takes the first one set by any source, so an exact
// key from the config file beats a WALG_ alias from the environment.
func (c *Config) resolve() []string {
	var warnings []string
	for _, s := range c.settings {
		var chosen string
		var shadowed []string
		for _, k := range s.Lookup {
			rv, ok := c.raw[k]
			if !ok {
				continue
			}
			if chosen == "" {
				chosen = k
				c.values[s.Name], c.from[s.Name], c.explicit[s.Name] = rv.value, k, true
				continue
			}
			// A shadowed key that is another setting's own name is used
			// there (WALG_UPLOAD_CONCURRENCY under UPLOAD_CONCURRENCY).
			if other := c.settings[c.index[k]].Name; other == k && k != s.Name {
				continue
			}
			if rv.value != c.raw[chosen].value {
				shadowed = append(shadowed, k)
			}
		}
		if len(shadowed) > 0 {
			warnings = append(warnings, fmt.Sprintf("%s are set with different values; using %s",
				joinAnd(append([]string{chosen}, shadowed...)), chosen))
		}
		if chosen != "" {
			continue
		}
		if s.Default != "" {
			c.values[s.Name] = s.Default
			continue
		}
		// WAL-G's viper defaults live on WALG_* keys, so a chain that
		// reaches one inherits its default (UPLOAD_CONCURRENCY → 16).
		for _, k := range s.Lookup {
			if i, ok := c.index[k]; ok && c.settings[i].Name == k && c.settings[i].Default != "" {
				c.values[s.Name] = c.settings[i].Default
				break
			}
		}
	}
	return warnings
}

// joinAnd renders "a and b" or "a, b and c".
func joinAnd(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func dedupe(lines []string) []string {
	seen := map[string]bool{}
	out := lines[:0]
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// setting returns the catalogue entry of a canonical name; using a name
// that is not one is a programming error.
func (c *Config) setting(name string, kinds ...Kind) Setting {
	i, ok := c.index[name]
	if !ok || c.settings[i].Name != name {
		panic(fmt.Sprintf("config: %q is not a canonical setting name", name))
	}
	s := c.settings[i]
	for _, k := range kinds {
		if s.Kind == k {
			return s
		}
	}
	panic(fmt.Sprintf("config: %s is a %s setting, not %v", name, s.Kind, kinds))
}

// get returns a setting's resolved value and whether it was set (by any
// source, including a default). name is the canonical name.
func (c *Config) get(name string) (string, bool) {
	if i, ok := c.index[name]; !ok || c.settings[i].Name != name {
		return "", false
	}
	v, ok := c.values[name]
	return v, ok
}

// value returns a setting's value, or "" when unset; like the other typed
// getters it panics on a name that is not canonical.
func (c *Config) value(name string) string {
	if i, ok := c.index[name]; !ok || c.settings[i].Name != name {
		panic(fmt.Sprintf("config: %q is not a canonical setting name", name))
	}
	return c.values[name]
}

// lookup is get that also accepts WAL-G's other spellings (S3_SSE,
// WALE_S3_PREFIX, AWS_ACCESS_KEY, ...) and answers for the setting they
// belong to, so storage code written against WAL-G's keys sees the value
// WAL-G would use. Its method value fits func(string) (string, bool).
func (c *Config) lookup(key string) (string, bool) {
	i, ok := c.index[key]
	if !ok {
		return "", false
	}
	v, ok := c.values[c.settings[i].Name]
	return v, ok
}

// isSet reports whether the user set the setting (any spelling, any
// source); defaults do not count.
func (c *Config) isSet(name string) bool { return c.explicit[name] }

// intValue returns a KindInt setting; 0 when unset without default.
func (c *Config) intValue(name string) int {
	c.setting(name, KindInt)
	n, _ := strconv.Atoi(c.values[name])
	return n
}

// boolValue returns a KindBool setting; false when unset without default.
func (c *Config) boolValue(name string) bool {
	c.setting(name, KindBool)
	b, _ := strconv.ParseBool(c.values[name])
	return b
}

// durationValue returns a KindDuration setting; 0 when unset without
// default.
func (c *Config) durationValue(name string) time.Duration {
	c.setting(name, KindDuration)
	d, _ := time.ParseDuration(c.values[name])
	return d
}

// bytesValue returns a KindBytes setting; 0 when unset without default.
func (c *Config) bytesValue(name string) int64 {
	c.setting(name, KindBytes)
	n, _ := strconv.ParseInt(c.values[name], 10, 64)
	return n
}

// ConfigFileUsed is the config file that was loaded, or "" (for passing
// --config to a spawned wal-prefetch, as WAL-G does).
func (c *Config) ConfigFileUsed() string { return c.file }

// Turbo reports --turbo.
func (c *Config) Turbo() bool { return c.turbo }

// UploadConcurrency is WALG_UPLOAD_CONCURRENCY (≥ 1).
func (c *Config) UploadConcurrency() int { return c.intValue("WALG_UPLOAD_CONCURRENCY") }

// DownloadConcurrency is WALG_DOWNLOAD_CONCURRENCY (≥ 1).
func (c *Config) DownloadConcurrency() int { return c.intValue("WALG_DOWNLOAD_CONCURRENCY") }

// UploadDiskConcurrency is WALG_UPLOAD_DISK_CONCURRENCY, or 4 with --turbo
// (WAL-G GetMaxUploadDiskConcurrency).
func (c *Config) UploadDiskConcurrency() int {
	if c.turbo {
		return 4
	}
	return c.intValue("WALG_UPLOAD_DISK_CONCURRENCY")
}

// UploadQueue is WALG_UPLOAD_QUEUE (≥ 1).
func (c *Config) UploadQueue() int { return c.intValue("WALG_UPLOAD_QUEUE") }

// DiskRateLimit is WALG_DISK_RATE_LIMIT in bytes/s; 0 = unlimited (unset,
// 0, or --turbo).
func (c *Config) DiskRateLimit() int64 {
	if c.turbo {
		return 0
	}
	return c.bytesValue("WALG_DISK_RATE_LIMIT")
}

// NetworkRateLimit is WALG_NETWORK_RATE_LIMIT in bytes/s; 0 = unlimited.
func (c *Config) NetworkRateLimit() int64 {
	if c.turbo {
		return 0
	}
	return c.bytesValue("WALG_NETWORK_RATE_LIMIT")
}

// WalSegmentSize is WALG_PG_WAL_SIZE converted from MiB to bytes.
func (c *Config) WalSegmentSize() int64 { return int64(c.intValue("WALG_PG_WAL_SIZE")) << 20 }

// LogLevel is the least severe record WALG_LOG_LEVEL lets through, with
// WAL-G's meaning (tracelog.Setup): NORMAL logs information, warnings and
// errors; DEVEL adds debugging records; ERROR logs errors only.
func (c *Config) LogLevel() slog.Level {
	switch c.value("WALG_LOG_LEVEL") {
	case "DEVEL":
		return slog.LevelDebug
	case "ERROR":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// LogFormat is TUSK_LOG_FORMAT: "text" (key=value records) or "json" (one
// JSON object per line).
func (c *Config) LogFormat() string { return c.value("TUSK_LOG_FORMAT") }

// GoMaxProcs is the GOMAXPROCS to apply, 0 for "leave alone" (unset or
// --turbo), as WAL-G's SetGoMaxProcs.
func (c *Config) GoMaxProcs() int {
	if c.turbo {
		return 0
	}
	return c.intValue("GOMAXPROCS")
}

// Compression is the method WALG_COMPRESSION_METHOD and WALG_ZSTD_LEVEL
// select, resolved by codec.FromConfig in Load.
func (c *Config) Compression() codec.Method { return c.method }

// Crypt returns the encryption settings for crypt.FromSettings. Load has
// refused the kinds tusk does not implement (GnuPG, envelope PGP, Yandex
// Cloud KMS).
func (c *Config) Crypt() crypt.Settings {
	return crypt.Settings{
		PGPKey:                c.value("WALG_PGP_KEY"),
		PGPKeyPath:            c.value("WALG_PGP_KEY_PATH"),
		PGPKeyPassphrase:      c.value("WALG_PGP_KEY_PASSPHRASE"),
		LibsodiumKey:          c.value("WALG_LIBSODIUM_KEY"),
		LibsodiumKeyPath:      c.value("WALG_LIBSODIUM_KEY_PATH"),
		LibsodiumKeyTransform: c.value("WALG_LIBSODIUM_KEY_TRANSFORM"),
		KMSKeyID:              c.value("WALG_CSE_KMS_ID"),
		KMSRegion:             c.value("WALG_CSE_KMS_REGION"),
		KMSEndpoint:           c.value("TUSK_KMS_ENDPOINT"),
	}
}

// Export calls setenv for every non-empty setting, as WAL-G's
// bindConfigToEnv does, so libraries that read the environment (the AWS
// SDK, pgx's PG* handling) see config-file and flag values. Keys are the
// ones the user wrote (aliases, and config-file keys tusk does not know,
// such as other AWS SDK variables, included) plus defaults under their
// canonical names; map/list values from a config file are skipped.
// The package never mutates the process environment itself.
func (c *Config) Export(setenv func(k, v string)) {
	out := map[string]string{}
	for _, s := range c.settings {
		if s.Default != "" {
			out[s.Name] = s.Default
		}
	}
	for k, rv := range c.raw {
		if !rv.complex {
			out[k] = rv.value
		}
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		setenv(k, out[k])
	}
}

// Dump lists every setting that has a value as "NAME=value (source)", sorted,
// with secrets as --HIDDEN--, for DEVEL logs.
func (c *Config) Dump() []string {
	var lines []string
	for _, s := range c.settings {
		v, ok := c.values[s.Name]
		if !ok || v == "" {
			continue
		}
		if s.Secret {
			v = hidden
		}
		src := "default"
		if k := c.from[s.Name]; k != "" {
			src = c.raw[k].src.String()
			if k != s.Name {
				src += " " + k
			}
		}
		lines = append(lines, fmt.Sprintf("%s=%s (%s)", s.Name, v, src))
	}
	sort.Strings(lines)
	return lines
}

const hidden = "--HIDDEN--"

// shortName is a key as messages show it: a name longer than any
// setting's is cut, so a hostile one is not echoed whole.
func shortName(k string) string {
	if len(k) <= 80 {
		return k
	}
	return fmt.Sprintf("%s... (a %d-byte name)", k[:48], len(k))
}

// shortValue quotes a value for a message, cut when long.
func shortValue(v string) string {
	if len(v) <= 64 {
		return strconv.Quote(v)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(v[:32]), len(v))
}

func flagName(key string) string { return strings.ReplaceAll(strings.ToLower(key), "_", "-") }

// Source says where a setting's value came from: a flag, the environment,
// the config file, or SourceDefault (also for a setting with no value).
// name is the canonical name.
func (c *Config) Source(name string) Source {
	if k := c.from[name]; k != "" {
		return c.raw[k].src
	}
	return SourceDefault
}

// Explicit lists, sorted, the canonical names of the settings the user
// set (by any spelling and source).
func (c *Config) Explicit() []string {
	names := make([]string, 0, len(c.explicit))
	for n := range c.explicit {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

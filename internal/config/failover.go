package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/multi"
)

// FailoverStorage is one entry of WALG_FAILOVER_STORAGES, checked and not
// connected.
type FailoverStorage struct {
	// Name is the map key, lower-cased as WAL-G's configuration library
	// reads it.
	Name string
	// Hash identifies the storage's settings (see storageHash).
	Hash    string
	Storage storage.Configured
}

// fraction declares a number strictly between 0 and 1.
func fraction(name, def string) Setting {
	return str(name).def(def).rule(func(v string) string {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f < 1) {
			return "is not a number between 0 and 1 (exclusive)"
		}
		return ""
	})
}

// parseSizeInBytes reads a size as WAL-G's configuration library does
// (viper's GetSizeInBytes): a whole number of bytes, or one followed by
// kb, mb or gb (powers of 1024, any case).
func parseSizeInBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	if n := len(s); n > 1 && (s[n-1] == 'b' || s[n-1] == 'B') {
		switch unicode.ToLower(rune(s[n-2])) {
		case 'k':
			mult, s = 1<<10, s[:n-2]
		case 'm':
			mult, s = 1<<20, s[:n-2]
		case 'g':
			mult, s = 1<<30, s[:n-2]
		default:
			s = s[:n-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size", v)
	}
	return n * mult, nil
}

// checkFailoverMap accepts a map of storage names to maps of settings:
// from a config file, or JSON in the environment (which WAL-G's
// configuration library decodes too).
func checkFailoverMap(v string) string {
	if _, err := decodeFailovers(v); err != nil {
		return err.Error()
	}
	return ""
}

func decodeFailovers(v string) (map[string]map[string]any, error) {
	var m map[string]map[string]any
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return nil, fmt.Errorf("is not a map of storage names to maps of settings")
	}
	return m, nil
}

// loadFailovers reads each failover storage's settings as a configuration
// of its own, as WAL-G does: only the settings in its map count (nothing
// is inherited from the environment), except WALG_STORAGE_PREFIX, which
// applies to every storage. Problems name the storage.
func (c *Config) loadFailovers() (problems, warnings []string) {
	raw := c.value("WALG_FAILOVER_STORAGES")
	if raw == "" || !c.valid("WALG_FAILOVER_STORAGES") {
		return nil, nil
	}
	m, _ := decodeFailovers(raw)
	key := c.from["WALG_FAILOVER_STORAGES"]
	src := c.raw[key].src
	seen := map[string]string{}
	for orig, settings := range m {
		name := strings.ToLower(orig)
		where := fmt.Sprintf("%s: storage %q", key, name)
		if prev, ok := seen[name]; ok {
			problems = append(problems, fmt.Sprintf("%s: configured twice (%q and %q)", where, prev, orig))
			continue
		}
		seen[name] = orig
		if name == multi.Default || name == multi.All {
			problems = append(problems, fmt.Sprintf("%s: the name is reserved", where))
			continue
		}
		vals := map[string]rawValue{}
		for k, x := range settings {
			rv, ok := fileValue(x)
			if !ok {
				continue
			}
			rv.src = src
			vals[strings.ToUpper(k)] = rv
		}
		if _, nested := vals["WALG_FAILOVER_STORAGES"]; nested {
			problems = append(problems, fmt.Sprintf("%s: WALG_FAILOVER_STORAGES cannot be nested", where))
			continue
		}
		if p := c.value("WALG_STORAGE_PREFIX"); p != "" {
			vals["WALG_STORAGE_PREFIX"] = rawValue{value: p, src: c.raw[c.from["WALG_STORAGE_PREFIX"]].src}
		}
		sub, w, err := build(LoadOptions{Backends: c.backends}, nil, "", vals, nil)
		for _, line := range w {
			warnings = append(warnings, where+": "+line)
		}
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				problems = append(problems, where+": "+line)
			}
			continue
		}
		st, err := sub.Storage()
		if err != nil {
			problems = append(problems, where+": "+err.Error())
			continue
		}
		c.failovers = append(c.failovers, FailoverStorage{Name: name, Hash: sub.storageHash(st), Storage: st})
	}
	slices.SortFunc(c.failovers, func(a, b FailoverStorage) int { return strings.Compare(a.Name, b.Name) })
	return problems, warnings
}

// storageHash identifies a storage by the values of its backend's
// settings, so that the status cache file, shared by every configuration
// of the user, keeps apart two storages given the same name.
func (c *Config) storageHash(st storage.Configured) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", st.Kind, st.Root)
	for _, name := range st.Settings {
		v, _ := c.lookup(name)
		fmt.Fprintf(h, "%s=%s\n", name, v)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// FailoverStorages are the storages of WALG_FAILOVER_STORAGES, by name.
func (c *Config) FailoverStorages() []FailoverStorage { return c.failovers }

// StorageHash identifies the primary storage (see storageHash).
func (c *Config) StorageHash() string {
	st, err := c.Storage()
	if err != nil {
		return ""
	}
	return c.storageHash(st)
}

// TargetStorage is WALG_TARGET_STORAGE: the storage a command that takes
// --target-storage uses when the flag is not given.
func (c *Config) TargetStorage() string { return c.value("WALG_TARGET_STORAGE") }

// FailoverOptions are the WALG_FAILOVER_STORAGES_* settings; the caller
// sets CheckWrite and Log. The checks default to on when failover
// storages are configured; the cache file lives in the home directory
// (WAL-G's place), or /tmp without one.
func (c *Config) FailoverOptions() multi.Options {
	check := len(c.failovers) > 0
	if c.isSet("WALG_FAILOVER_STORAGES_CHECK") {
		check = c.boolValue("WALG_FAILOVER_STORAGES_CHECK")
	}
	size, _ := parseSizeInBytes(c.value("WALG_FAILOVER_STORAGES_CHECK_SIZE"))
	dir, err := os.UserHomeDir()
	if err != nil {
		dir = "/tmp"
	}
	f := func(name string) float64 {
		v, _ := strconv.ParseFloat(c.value("WALG_FAILOVER_STORAGES_CACHE_EMA_"+name), 64)
		return v
	}
	return multi.Options{
		Check:         check,
		CheckTimeout:  c.durationValue("WALG_FAILOVER_STORAGES_CHECK_TIMEOUT"),
		CheckSize:     size,
		CacheLifetime: c.durationValue("WALG_FAILOVER_STORAGES_CACHE_LIFETIME"),
		EMA: multi.EMAParams{
			AliveLimit: f("ALIVE_LIMIT"), DeadLimit: f("DEAD_LIMIT"),
			AlphaAlive: multi.AlphaRange{Min: f("ALPHA_ALIVE_MIN"), Max: f("ALPHA_ALIVE_MAX")},
			AlphaDead:  multi.AlphaRange{Min: f("ALPHA_DEAD_MIN"), Max: f("ALPHA_DEAD_MAX")},
		},
		CacheDir: dir,
	}
}

// Package config resolves tusk's settings exactly as WAL-G does: flags >
// environment > config file > defaults, with WAL-G's names and aliases.
package config

// Config is the resolved, validated set of settings. It is immutable after
// Load and safe for concurrent reads.
type Config struct {
	values map[string]string
}

// Get returns a setting's resolved value and whether it was set (by any
// source, including a default).
func (c *Config) Get(name string) (string, bool) {
	v, ok := c.values[name]
	return v, ok
}

// String returns a setting's value, or "" when unset.
func (c *Config) String(name string) string {
	return c.values[name]
}

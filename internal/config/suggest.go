package config

import (
	"fmt"
	"sort"
	"strings"
)

// unknownWarnings reports WALG_/WALE_/TUSK_ environment variables and
// config-file keys tusk does not know, with the nearest known name: a
// misspelt setting otherwise silently falls back to its default.
func (c *Config) unknownWarnings(env map[string]string, file map[string]rawValue) []string {
	var out []string
	var envKeys []string
	for k := range env {
		if strings.HasPrefix(k, "WALG_") || strings.HasPrefix(k, "WALE_") || strings.HasPrefix(k, "TUSK_") {
			envKeys = append(envKeys, k)
		}
	}
	sort.Strings(envKeys)
	for _, k := range envKeys {
		if _, ok := c.index[k]; !ok {
			out = append(out, shortName(k)+" is unknown"+c.suggestion(k))
		}
	}
	var fileKeys []string
	for k := range file {
		fileKeys = append(fileKeys, k)
	}
	sort.Strings(fileKeys)
	for _, k := range fileKeys {
		if _, ok := c.index[k]; !ok {
			out = append(out, fmt.Sprintf("%s in config file %s is unknown%s", shortName(k), c.file, c.suggestion(k)))
		}
	}
	return out
}

// suggestion returns " (did you mean X?)" for the closest known key within
// a small edit distance, or "".
func (c *Config) suggestion(key string) string {
	if len(key) > 80 {
		return "" // no setting name is that long; spare the quadratic work
	}
	best, bestD := "", -1
	for k := range c.index {
		d := editDistance(key, k)
		if bestD < 0 || d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	// A third of the name (at least 2) separates typos from other names.
	limit := max(2, len(key)/3)
	if bestD < 0 || bestD > limit {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

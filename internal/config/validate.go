package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
)

// validate checks every value the user set and the rules that span
// settings. It returns problems (fatal) and warnings.
func (c *Config) validate() (problems, warnings []string) {
	for _, s := range c.settings {
		if !c.explicit[s.Name] {
			continue
		}
		key := c.from[s.Name]
		rv := c.raw[key]
		where := c.where(key)
		if rv.complex && !s.Complex {
			problems = append(problems, fmt.Sprintf(
				"%s: expected a single value, not a list or map%s", key, where))
			continue
		}
		if s.Status == Inactive {
			continue
		}
		if msg := checkValue(s, rv.value); msg != "" {
			shown := shortValue(rv.value)
			if s.Secret {
				shown = "the value"
			}
			problems = append(problems, fmt.Sprintf("%s: %s %s%s", key, shown, msg, where))
			continue
		}
		if s.Status != NotYet || s.Storage != "" || isInert(s, rv.value) {
			continue
		}
		// The value came through another setting's own name
		// (WALG_UPLOAD_CONCURRENCY under UPLOAD_CONCURRENCY), which that
		// setting honours; only a bare spelling is reported.
		if i := c.index[key]; key != s.Name && c.settings[i].Name == key {
			continue
		}
		if s.Risky {
			problems = append(problems, fmt.Sprintf(
				"%s is set%s, but tusk does not implement %s yet; refusing to run rather than ignore it",
				key, where, s.Feature))
		} else {
			warnings = append(warnings, fmt.Sprintf(
				"%s is recognised but not implemented by tusk yet (%s); ignored", key, s.Feature))
		}
	}
	p, w := c.crossChecks()
	return append(problems, p...), append(warnings, w...)
}

// where names a non-environment source for messages.
func (c *Config) where(key string) string { return c.whereFrom(c.raw[key].src, key) }

func (c *Config) whereFrom(src Source, key string) string {
	switch src {
	case SourceFile:
		return " (in config file " + c.file + ")"
	case SourceFlag:
		return " (flag --" + flagName(key) + ")"
	}
	return ""
}

// isInert compares booleans by meaning ("0" is "false").
func isInert(s Setting, v string) bool {
	if s.Kind != KindBool {
		return slices.Contains(s.Inert, v)
	}
	b, err := strconv.ParseBool(v)
	return err == nil && slices.ContainsFunc(s.Inert, func(i string) bool {
		ib, ierr := strconv.ParseBool(i)
		return ierr == nil && ib == b
	})
}

// checkValue returns what is wrong with v for s, or "".
func checkValue(s Setting, v string) string {
	switch s.Kind {
	case KindInt, KindBytes:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || (s.hasMin && n < s.min) {
			return "is not " + describeRange(s)
		}
	case KindBool:
		if _, err := strconv.ParseBool(v); err != nil {
			return "is not a boolean (accepted: true, false, 1, 0, t, f)"
		}
	case KindDuration:
		if _, err := time.ParseDuration(v); err != nil {
			return "is not a duration (e.g. 30s, 5m, 1h30m)"
		}
	case KindEnum:
		ok := slices.ContainsFunc(s.Values, func(a string) bool {
			return a == v || (s.FoldCase && strings.EqualFold(a, v))
		})
		if !ok {
			return "is not one of " + strings.Join(s.Values, ", ")
		}
	case KindJSON:
		if !json.Valid([]byte(v)) {
			return "is not valid JSON"
		}
	}
	if s.check != nil {
		return s.check(v)
	}
	return ""
}

func describeRange(s Setting) string {
	what := "an integer"
	if s.Kind == KindBytes {
		what = "a number of bytes (plain integer)"
	}
	switch {
	case s.hasMin && s.min == 1 && s.Kind == KindInt:
		return "a positive integer"
	case s.hasMin && s.min == 0 && s.Kind == KindInt:
		return "a non-negative integer"
	case s.hasMin:
		return fmt.Sprintf("%s >= %d", what, s.min)
	}
	return what
}

// crossChecks are WAL-G's rules that involve several settings.
func (c *Config) crossChecks() (problems, warnings []string) {
	// The method and level together; codec owns the rule that a level
	// needs zstd. A value that failed its own check is reported already.
	method, level := c.value("WALG_COMPRESSION_METHOD"), strings.ToLower(c.value("WALG_ZSTD_LEVEL"))
	if c.valid("WALG_COMPRESSION_METHOD") && c.valid("WALG_ZSTD_LEVEL") {
		m, err := codec.FromConfig(method, level)
		if err != nil {
			problems = append(problems, err.Error())
		}
		c.method = m
	}

	// internal/configure.go ConfigureCrypterForSpecificConfig. The
	// envelope kinds themselves are refused (catalogue); this names the
	// conflict, which WAL-G reports first.
	pgp := c.firstSet("WALG_PGP_KEY", "WALG_PGP_KEY_PATH", "WALG_GPG_KEY_ID")
	envelope := c.firstSet("WALG_ENVELOPE_PGP_KEY", "WALG_ENVELOPE_PGP_KEY_PATH")
	if pgp != "" && envelope != "" {
		problems = append(problems, fmt.Sprintf(
			"%s and %s are both set: plain PGP and envelope PGP cannot be configured together, choose one",
			pgp, envelope))
	}
	// WAL-G's precedence: OpenPGP, AWS KMS, libsodium; the first set wins.
	winner, kind := "", ""
	for _, k := range []struct{ set, kind string }{
		{pgp, "OpenPGP"},
		{c.firstSet("WALG_CSE_KMS_ID"), "AWS KMS"},
		{c.firstSet("WALG_LIBSODIUM_KEY", "WALG_LIBSODIUM_KEY_PATH"), "libsodium"},
	} {
		switch {
		case k.set == "":
		case winner == "":
			winner, kind = k.set, k.kind
		default:
			warnings = append(warnings, fmt.Sprintf(
				"%s is ignored: %s is set and %s encryption takes precedence", k.set, winner, kind))
		}
	}

	sel, shadowed := c.selectStorage()
	if sel != nil && sel.Status == NotYet {
		k := c.from[sel.Name]
		problems = append(problems, fmt.Sprintf(
			"%s is set%s, but tusk does not support %s yet; refusing to run rather than use another storage",
			k, c.where(k), sel.Feature))
	}
	if sel != nil && sel.Status == Implemented && c.valid(sel.Name) {
		problems = append(problems, c.checkStorage(sel)...)
	}
	for _, s := range shadowed {
		warnings = append(warnings, fmt.Sprintf(
			"%s is ignored: %s is set and takes precedence (WAL-G's storage order)",
			c.from[s.Name], c.from[sel.Name]))
	}
	p, w := c.loadFailovers()
	problems, warnings = append(problems, p...), append(warnings, w...)
	emaValid := true
	for _, n := range []string{"ALIVE_LIMIT", "DEAD_LIMIT", "ALPHA_ALIVE_MIN", "ALPHA_ALIVE_MAX", "ALPHA_DEAD_MIN", "ALPHA_DEAD_MAX"} {
		emaValid = emaValid && c.valid("WALG_FAILOVER_STORAGES_CACHE_EMA_"+n)
	}
	if emaValid {
		if err := c.FailoverOptions().EMA.Validate(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	return problems, warnings
}

// valid reports whether a setting is unset or its value passes its own
// checks.
func (c *Config) valid(name string) bool {
	v := c.values[name]
	return v == "" || checkValue(c.settings[c.index[name]], v) == ""
}

// firstSet returns the key the user used for the first of names that is
// set, or "".
func (c *Config) firstSet(names ...string) string {
	for _, n := range names {
		if c.explicit[n] {
			return c.from[n]
		}
	}
	return ""
}

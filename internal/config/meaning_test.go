package config

import (
	"strings"
	"testing"
)

// Every setting of the catalogue has one line of meaning, and every line
// belongs to a setting.
func TestEverySettingHasAMeaning(t *testing.T) {
	m := meanings()
	seen := map[string]bool{}
	for _, s := range Settings() {
		seen[s.Name] = true
		switch {
		case s.Meaning == "":
			t.Errorf("%s: no meaning in meanings()", s.Name)
		case strings.ContainsAny(s.Meaning, "\n|"):
			t.Errorf("%s: the meaning must be one line without '|': %q", s.Name, s.Meaning)
		}
	}
	for name := range m {
		if !seen[name] {
			t.Errorf("meanings() describes %s, which is not in the catalogue", name)
		}
	}
}

// State follows the catalogue: what Load refuses is "refused", what it
// accepts without effect is "ignored" with a reason, the rest "honoured".
func TestSettingStates(t *testing.T) {
	byName := map[string]Setting{}
	for _, s := range Settings() {
		byName[s.Name] = s
		state, why := s.State()
		if (state == Honoured) != (why == "") {
			t.Errorf("%s: state %s with reason %q", s.Name, state, why)
		}
	}
	for _, tc := range []struct {
		name  string
		state State
		why   string
	}{
		{"WALG_COMPRESSION_METHOD", Honoured, ""},
		{"TUSK_LOG_FORMAT", Honoured, ""},
		{"WALG_GPG_KEY_ID", Refused, "GnuPG keyring"},
		{"WALG_USE_WAL_DELTA", Refused, "accepted when false"},
		{"WALG_STATSD_ADDRESS", Ignored, "StatsD metrics"},
		{"OSS_REGION", Ignored, "storage tusk does not implement"},
		{"AZURE_STORAGE_ACCOUNT", Honoured, ""},
		{"WALG_STREAM_CREATE_COMMAND", Ignored, "other databases"},
		{"WALG_USE_REVERSE_UNPACK", Ignored, "oldest first"},
	} {
		state, why := byName[tc.name].State()
		if state != tc.state || !strings.Contains(why, tc.why) {
			t.Errorf("%s: %s (%q), want %s with %q", tc.name, state, why, tc.state, tc.why)
		}
	}
	// The states agree with what Load does when the setting is set.
	for _, tc := range []struct {
		env     string
		refused bool
	}{
		{"WALG_GPG_KEY_ID=abc", true},
		{"WALG_USE_WAL_DELTA=true", true},
		{"WALG_USE_WAL_DELTA=false", false},
		{"WALG_STATSD_ADDRESS=localhost:8125", false},
		{"OSS_REGION=x", false},
		{"WALG_USE_REVERSE_UNPACK=true", false},
	} {
		_, _, err := loadAll(LoadOptions{Environ: []string{tc.env}})
		if (err != nil) != tc.refused {
			t.Errorf("%s: Load error %v, refused = %v", tc.env, err, tc.refused)
		}
	}
}

package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// jsonLevels parses every stderr line as one JSON record and returns their
// levels.
func jsonLevels(t *testing.T, stderr string) []string {
	t.Helper()
	var levels []string
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			Time  string `json:"time"`
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time == "" || rec.Level == "" || rec.Msg == "" {
			t.Errorf("not a JSON log record (%v): %q", err, line)
			continue
		}
		levels = append(levels, rec.Level)
	}
	return levels
}

// textLevels returns the level of each key=value record on stderr.
func textLevels(t *testing.T, stderr string) []string {
	t.Helper()
	var levels []string
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if line == "" {
			continue
		}
		_, rest, ok := strings.Cut(line, " level=")
		if !ok || !strings.HasPrefix(line, "time=") {
			t.Errorf("not a text log record: %q", line)
			continue
		}
		lvl, _, _ := strings.Cut(rest, " ")
		levels = append(levels, lvl)
	}
	return levels
}

// WALG_LOG_LEVEL filters as WAL-G's: NORMAL shows information and
// warnings, DEVEL adds debugging, ERROR shows errors alone; in both
// TUSK_LOG_FORMATs. A restore logs at each level: a warning for an
// unknown setting, debug records per tar, an information summary.
func TestLogLevelsAndFormats(t *testing.T) {
	prefix := t.TempDir()
	putProgressBackup(t, prefix)
	for _, format := range []string{"text", "json"} {
		for _, tc := range []struct {
			level     string
			want, not []string
		}{
			{"", []string{"INFO", "WARN"}, []string{"DEBUG"}},
			{"NORMAL", []string{"INFO", "WARN"}, []string{"DEBUG"}},
			{"DEVEL", []string{"DEBUG", "INFO", "WARN"}, nil},
			{"ERROR", nil, []string{"DEBUG", "INFO", "WARN"}},
		} {
			env := map[string]string{
				"WALG_FILE_PREFIX":   prefix,
				"WALG_NO_SUCH_THING": "1", // a warning: not a setting tusk knows
				"WALG_LOG_LEVEL":     tc.level,
				"TUSK_LOG_FORMAT":    format,
			}
			dest := filepath.Join(t.TempDir(), "restore")
			_, stderr, code := runMain(t, env, "backup-fetch", dest, progressTestBackup)
			if code != 0 {
				t.Fatalf("%s %s: backup-fetch exit %d\n%s", format, tc.level, code, stderr)
			}
			levels := textLevels
			if format == "json" {
				levels = jsonLevels
			}
			got := levels(t, stderr)
			for _, l := range tc.want {
				if !slices.Contains(got, l) {
					t.Errorf("%s, WALG_LOG_LEVEL=%q: no %s record in %q", format, tc.level, l, stderr)
				}
			}
			for _, l := range tc.not {
				if slices.Contains(got, l) {
					t.Errorf("%s, WALG_LOG_LEVEL=%q: a %s record in %q", format, tc.level, l, stderr)
				}
			}
		}
	}
}

// The error that ends a command starts with "ERROR: " on stderr, as WAL-G's
// do; with TUSK_LOG_FORMAT=json it is a JSON record at level ERROR, so
// every line of stderr parses. The usage line follows an argument error in
// either form.
func TestErrorLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "000000010000000000000001")
	env := map[string]string{"WALG_FILE_PREFIX": t.TempDir()}
	_, stderr, code := runMain(t, env, "wal-push", missing)
	if code != 1 || !strings.HasPrefix(stderr, "ERROR: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, missing) {
		t.Errorf("text: exit %d, stderr %q; want one line starting ERROR: naming the file", code, stderr)
	}

	env["TUSK_LOG_FORMAT"] = "json"
	_, stderr, code = runMain(t, env, "wal-push", missing)
	if levels := jsonLevels(t, stderr); code != 1 || !slices.Equal(levels, []string{"ERROR"}) || !strings.Contains(stderr, "open WAL file") {
		t.Errorf("json: exit %d, stderr %q; want one ERROR record", code, stderr)
	}
	// Arguments are checked before the configuration is read: the format
	// is not known yet, and the error is the plain line with the usage.
	_, stderr, code = runMain(t, env, "wal-push")
	if want := "ERROR: wal-push: takes 1 argument, got 0\nUsage: tusk wal-push WAL_FILE_PATH [flags]\n"; code != 1 || stderr != want {
		t.Errorf("json, argument error: exit %d, %q; want %q", code, stderr, want)
	}
}

// A TUSK_LOG_FORMAT tusk does not know is refused, naming the variable and
// the accepted values, before anything runs.
func TestBadLogFormat(t *testing.T) {
	env := map[string]string{"WALG_FILE_PREFIX": t.TempDir(), "TUSK_LOG_FORMAT": "xml"}
	_, stderr, code := runMain(t, env, "wal-push", filepath.Join(t.TempDir(), "000000010000000000000001"))
	want := `ERROR: TUSK_LOG_FORMAT: "xml" is not one of text, json` + "\n"
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want %q", code, stderr, want)
	}
}

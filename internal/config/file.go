package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// searchExts is viper's SupportedExts order, used by WAL-G to find
// $HOME/.walg.<ext>: the first existing file wins.
func searchExts() []string {
	return []string{"json", "toml", "yaml", "yml", "properties", "props", "prop", "hcl", "tfvars", "dotenv", "env", "ini"}
}

// parsable reports the formats viper v1.21 can actually decode; viper still
// finds files with the other extensions, and then fails to parse them.
func parsable(ext string) bool {
	switch ext {
	case "json", "toml", "yaml", "yml", "dotenv", "env":
		return true
	}
	return false
}

// readConfigFile finds and parses the config file.
//
// WAL-G only warns when a config file cannot be read or parsed, even one
// named by --config, and then runs without it. tusk is stricter for a file
// the user named (--config or WALG_CONFIG_PATH): a missing or unparsable
// file is an error naming it, because running on defaults instead (for
// example without the encryption key it holds) is worse than not running.
// A $HOME/.walg.* file that fails to parse only warns, as in WAL-G.
func readConfigFile(explicit, envPath, home string) (string, map[string]rawValue, []string, error) {
	path, named := explicit, "--config"
	if path == "" && envPath != "" {
		path, named = envPath, "WALG_CONFIG_PATH"
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", nil, nil, fmt.Errorf("config file %s (from %s): %w", path, named, err)
		}
		vals, err := parseConfigFile(path, data)
		if err != nil {
			return "", nil, nil, fmt.Errorf("config file %s (from %s): %w", path, named, err)
		}
		return path, vals, nil, nil
	}
	if home == "" {
		return "", nil, nil, nil
	}
	for _, ext := range searchExts() {
		p := filepath.Join(home, ".walg."+ext)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		data, err := os.ReadFile(p)
		if err == nil {
			var vals map[string]rawValue
			if vals, err = parseConfigFile(p, data); err == nil {
				return p, vals, nil, nil
			}
		}
		return "", nil, []string{fmt.Sprintf("config file %s ignored: %v", p, err)}, nil
	}
	return "", nil, nil, nil
}

// parseConfigFile decodes a config file with viper's codecs, chosen by the
// file extension as WAL-G does, into upper-cased keys (viper matches keys
// case-insensitively).
func parseConfigFile(path string, data []byte) (vals map[string]rawValue, err error) {
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	if !parsable(ext) {
		return nil, fmt.Errorf("unsupported format %q (use .json, .yaml, .yml, .toml or .env)", ext)
	}
	// The decoders are third-party code fed with user-edited text; a panic
	// in one must surface as a parse error naming the file, not a crash.
	defer func() {
		if r := recover(); r != nil {
			vals, err = nil, fmt.Errorf("cannot parse %s: %v", ext, r)
		}
	}()
	v := viper.New()
	v.SetConfigType(ext)
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("cannot parse %s: %w", ext, err)
	}
	vals = map[string]rawValue{}
	for k, x := range v.AllSettings() {
		rv, ok := fileValue(x)
		if !ok {
			continue
		}
		rv.src = SourceFile
		vals[strings.ToUpper(k)] = rv
	}
	return vals, nil
}

// fileValue renders a decoded value as the string viper's GetString would
// give; maps and lists become JSON and are marked complex. nil (an empty
// YAML value) counts as unset.
func fileValue(x any) (rawValue, bool) {
	switch t := x.(type) {
	case nil:
		return rawValue{}, false
	case string:
		return rawValue{value: trimValue(t)}, true
	case bool:
		return rawValue{value: strconv.FormatBool(t)}, true
	case int:
		return rawValue{value: strconv.Itoa(t)}, true
	case int64:
		return rawValue{value: strconv.FormatInt(t, 10)}, true
	case uint64:
		return rawValue{value: strconv.FormatUint(t, 10)}, true
	case float64:
		return rawValue{value: strconv.FormatFloat(t, 'f', -1, 64)}, true
	case time.Time:
		return rawValue{value: t.Format(time.RFC3339Nano)}, true
	case map[string]any, []any:
		b, err := json.Marshal(t)
		if err != nil {
			b = []byte(fmt.Sprint(t))
		}
		return rawValue{value: string(b), complex: true}, true
	}
	return rawValue{value: fmt.Sprint(x)}, true
}

package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// Limits on what a config file and a setting may hold. Real values are far
// smaller (an armored PGP key is a few KiB); the caps keep a hostile or
// mistaken input from costing seconds and hundreds of MiB, and keep it out
// of messages.
const (
	// MaxConfigFileSize bounds a config file.
	MaxConfigFileSize = 1 << 20
	// MaxValueSize bounds one setting's value, from any source.
	MaxValueSize = 64 << 10
)

// readConfigFile finds and parses the config file.
//
// WAL-G only warns when a config file cannot be read or parsed, even one
// named by --config, and then runs without it. tusk is stricter for a file
// the user named (--config or WALG_CONFIG_PATH): a missing or unparsable
// file is an error naming it, because running on defaults instead (for
// example without the encryption key it holds) is worse than not running.
// A $HOME/.walg.* file that fails to parse only warns, as in WAL-G.
//
// Any config file, found or named, that others could have written is
// refused (see openConfigFile), as ssh refuses its own.
func readConfigFile(explicit, flag, envPath, home string) (string, map[string]rawValue, []string, error) {
	if flag == "" {
		flag = "--config"
	}
	path, named := explicit, flag
	if path == "" && envPath != "" {
		path, named = envPath, "WALG_CONFIG_PATH"
	}
	if path != "" {
		data, err := openConfigFile(path)
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
		data, err := openConfigFile(p)
		var vals map[string]rawValue
		if err == nil {
			if vals, err = parseConfigFile(p, data); err == nil {
				return p, vals, nil, nil
			}
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return "", nil, nil, fmt.Errorf("config file %s: %w", p, err)
		}
		return "", nil, []string{fmt.Sprintf("config file %s ignored: %v", p, err)}, nil
	}
	return "", nil, nil, nil
}

// refusedError is a config file openConfigFile will not use; unlike an
// unreadable or unparsable $HOME/.walg.* file, it is an error wherever the
// file came from.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func refuse(format string, a ...any) error { return &refusedError{fmt.Sprintf(format, a...)} }

// openConfigFile reads a config file after checking, on the open file,
// that it is a regular file of at most MaxConfigFileSize bytes that only
// its owner, root or the current user, can write. The open does not block:
// a FIFO or a device is refused, not waited on. Group-writable files are
// accepted (a shared postgres group is common).
func openConfigFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, refuse("not a regular file (%s)", st.Mode().Type())
	}
	if st.Mode().Perm()&0o002 != 0 {
		return nil, refuse("writable by every user; refusing to use it (chmod o-w)")
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := int(sys.Uid); uid != 0 && uid != os.Geteuid() {
			return nil, refuse("owned by uid %d, neither root nor the current user (uid %d); refusing to use it",
				uid, os.Geteuid())
		}
	}
	if st.Size() > MaxConfigFileSize {
		return nil, refuse("%d bytes, more than the %d KiB a config file may hold", st.Size(), MaxConfigFileSize>>10)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxConfigFileSize {
		return nil, refuse("more than the %d KiB a config file may hold", MaxConfigFileSize>>10)
	}
	return data, nil
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

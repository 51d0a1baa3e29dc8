package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// genericSpec is an archiver given on the command line:
//
//	--archiver name=walg,daemon='wal-g daemon {sock}',archive_command='walg-daemon-client {sock} wal-push %f',process=wal-g
//
// Values may be single-quoted (a doubled ” inside quotes is one quote) so
// they can hold commas. Placeholders, expanded per run: {sock} a socket path
// in the run's directory, {pgdata} the data directory, {dir} the run's
// directory, {tusk} the tusk binary under test.
type genericSpec struct {
	Name           string
	Daemon         string // shell command, started beside PostgreSQL; optional
	ArchiveCommand string
	Process        []string // command names (comm) of the archiver's processes
	Env            []string // NAME=value, added to the server's and daemon's environment
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// parseGeneric reads one --archiver value.
func parseGeneric(s string) (genericSpec, error) {
	var g genericSpec
	kvs, err := splitSpec(s)
	if err != nil {
		return g, fmt.Errorf("--archiver %q: %w", s, err)
	}
	for _, kv := range kvs {
		switch kv[0] {
		case "name":
			g.Name = kv[1]
		case "daemon":
			g.Daemon = kv[1]
		case "archive_command":
			g.ArchiveCommand = kv[1]
		case "process":
			for p := range strings.SplitSeq(kv[1], "|") {
				if p = strings.TrimSpace(p); p != "" {
					g.Process = append(g.Process, p)
				}
			}
		case "env":
			for _, e := range strings.Fields(kv[1]) {
				if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
					return g, fmt.Errorf("--archiver %q: env entry %q is not NAME=value", s, e)
				}
				g.Env = append(g.Env, e)
			}
		default:
			return g, fmt.Errorf("--archiver %q: unknown key %q (want name, daemon, archive_command, process, env)", s, kv[0])
		}
	}
	if !nameRE.MatchString(g.Name) {
		return g, fmt.Errorf("--archiver %q: name %q must be letters, digits, '.', '_' or '-'", s, g.Name)
	}
	if g.ArchiveCommand == "" {
		return g, fmt.Errorf("--archiver %q: archive_command is required", s)
	}
	if len(g.Process) == 0 {
		// The archiver's processes are most likely named after the program
		// that runs: the daemon's, or archive_command's.
		cmd := g.Daemon
		if cmd == "" {
			cmd = g.ArchiveCommand
		}
		if f := strings.Fields(cmd); len(f) > 0 {
			g.Process = []string{filepath.Base(f[0])}
		}
	}
	for i, p := range g.Process {
		// The kernel keeps 15 bytes of a command name.
		if len(p) > 15 {
			g.Process[i] = p[:15]
		}
	}
	return g, nil
}

// splitSpec splits "k=v,k2='v, with comma'" into pairs.
func splitSpec(s string) ([][2]string, error) {
	var out [][2]string
	i := 0
	for i < len(s) {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q has no '='", s[i:])
		}
		key := strings.TrimSpace(s[i : i+eq])
		if key == "" {
			return nil, fmt.Errorf("empty key at offset %d", i)
		}
		i += eq + 1
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						val.WriteByte('\'')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				val.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("value of %s: unterminated quote", key)
			}
			if i < len(s) && s[i] != ',' {
				return nil, fmt.Errorf("value of %s: text after the closing quote", key)
			}
		} else {
			end := strings.IndexByte(s[i:], ',')
			if end < 0 {
				end = len(s) - i
			}
			val.WriteString(s[i : i+end])
			i += end
		}
		for _, kv := range out {
			if kv[0] == key {
				return nil, fmt.Errorf("key %s given twice", key)
			}
		}
		out = append(out, [2]string{key, val.String()})
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
	return out, nil
}

// expand replaces the placeholders of a generic archiver's commands.
func expand(s string, vars map[string]string) string {
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// confQuote quotes s as a postgresql.conf string value.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

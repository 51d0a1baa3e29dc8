package push

import (
	"strconv"
	"strings"
)

// walgExcluded are the base names WAL-G leaves out of a backup, anywhere in
// the tree (internal/databases/postgres/bundle.go ExcludedFilenames): a
// directory of that name is stored as an empty directory entry, a file of
// that name is not stored at all.
func walgExcluded(name string) bool {
	switch name {
	case "log", "pg_log", "pg_xlog", "pg_wal",
		"pgsql_tmp", "postgresql.auto.conf.tmp", "postmaster.pid", "postmaster.opts", "recovery.conf",
		"pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_stat_tmp", "pg_snapshots", "pg_subtrans",
		"standby.signal":
		return true
	}
	return false
}

// pgExcludedFile reports files PostgreSQL's own base backup leaves out
// (basebackup.c excludeFiles) beyond WAL-G's list: files that are rebuilt
// at startup or that describe another backup. backup_label and
// tablespace_map of the running backup come from pg_backup_stop instead.
func pgExcludedFile(name string) bool {
	switch name {
	case "current_logfiles.tmp", "backup_label", "tablespace_map", "backup_manifest":
		return true
	}
	// The relation cache init files (pg_internal.init and its per-process
	// temporaries) are removed by PostgreSQL on every recovery.
	return strings.HasPrefix(name, "pg_internal.init")
}

// isTempPrefixed reports temporary files and directories other than the
// pgsql_tmp directory itself, which PostgreSQL never backs up.
func isTempPrefixed(name string) bool {
	return name != "pgsql_tmp" && strings.HasPrefix(name, "pgsql_tmp")
}

// relFile is a relation data file name: <relnode>[_<fork>][.<segment>].
type relFile struct {
	node    string // decimal relfilenode
	fork    string // "", "fsm", "vm" or "init"
	segment uint32
}

// parseRelFile parses a relation file name as PostgreSQL names them in a
// database directory. Temporary relations ("t<backend>_<node>...") are not
// matched; see isTempRelation.
func parseRelFile(name string) (relFile, bool) {
	var rf relFile
	rest := name
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		seg, ok := parseDigits(rest[i+1:])
		if !ok || seg == 0 || rest[i+1] == '0' {
			// ".0" is never written (segment 0 has no suffix), nor are
			// leading zeros: such a file is not a relation segment.
			return relFile{}, false
		}
		rf.segment = uint32(seg)
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '_'); i >= 0 {
		rf.fork = rest[i+1:]
		switch rf.fork {
		case "fsm", "vm", "init":
		default:
			return relFile{}, false
		}
		rest = rest[:i]
	}
	if _, ok := parseDigits(rest); !ok || (len(rest) > 1 && rest[0] == '0') {
		return relFile{}, false
	}
	rf.node = rest
	return rf, true
}

// parseDigits parses a non-empty decimal number of at most 10 digits that
// fits in 32 bits (OIDs, segment numbers).
func parseDigits(s string) (uint64, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return n, err == nil
}

// isTempRelation reports a temporary relation's file: t<backend>_<node>
// with an optional fork and segment. PostgreSQL removes them at startup and
// never backs them up (basebackup.c looks_like_temp_rel_name).
func isTempRelation(name string) bool {
	rest, ok := strings.CutPrefix(name, "t")
	if !ok {
		return false
	}
	backend, rel, ok := strings.Cut(rest, "_")
	if !ok {
		return false
	}
	if _, ok := parseDigits(backend); !ok {
		return false
	}
	_, ok = parseRelFile(rel)
	return ok
}

// unloggedNodes returns the relfilenodes of a database directory's listing
// that have an init fork: unlogged relations, whose other forks PostgreSQL
// resets from the init fork at startup and leaves out of base backups.
func unloggedNodes(names []string) map[string]bool {
	var m map[string]bool
	for _, n := range names {
		if rf, ok := parseRelFile(n); ok && rf.fork == "init" {
			if m == nil {
				m = map[string]bool{}
			}
			m[rf.node] = true
		}
	}
	return m
}

// isDatabaseDir reports whether rel (slash-separated, relative to PGDATA)
// is a database directory: base/<oid> or pg_tblspc/<oid>/<version>/<oid>.
func isDatabaseDir(rel string) bool {
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) == 2 && parts[0] == "base":
		_, ok := parseDigits(parts[1])
		return ok
	case len(parts) == 4 && parts[0] == "pg_tblspc":
		_, ok1 := parseDigits(parts[1])
		_, ok2 := parseDigits(parts[3])
		return ok1 && ok2
	}
	return false
}

package push

import (
	"strings"

	"github.com/tusk-pg/tusk/internal/pgdata"
)

// catchupExcluded are the configuration files catchup-push leaves out
// (WAL-G's extendExcludedFiles): the standby keeps its own.
func catchupExcluded(name string) bool {
	switch name {
	case "pg_hba.conf", "postgresql.conf", "postgresql.auto.conf":
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
	if _, ok := pgdata.ParseDigits(backend); !ok {
		return false
	}
	_, ok = pgdata.ParseRelFile(rel)
	return ok
}

// unloggedNodes returns the relfilenodes of a database directory's listing
// that have an init fork: unlogged relations, whose other forks PostgreSQL
// resets from the init fork at startup and leaves out of base backups.
func unloggedNodes(names []string) map[string]bool {
	var m map[string]bool
	for _, n := range names {
		if rf, ok := pgdata.ParseRelFile(n); ok && rf.Fork == "init" {
			if m == nil {
				m = map[string]bool{}
			}
			m[rf.Node] = true
		}
	}
	return m
}

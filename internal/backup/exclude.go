package backup

// Excluded reports the base names WAL-G leaves out of a backup, anywhere in
// the tree (internal/databases/postgres/bundle.go ExcludedFilenames): a
// directory of that name is stored as an empty directory entry, a file of
// that name is not stored at all.
func Excluded(name string) bool {
	switch name {
	case "log", "pg_log", "pg_xlog", "pg_wal",
		"pgsql_tmp", "postgresql.auto.conf.tmp", "postmaster.pid", "postmaster.opts", "recovery.conf",
		"pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_stat_tmp", "pg_snapshots", "pg_subtrans",
		"standby.signal":
		return true
	}
	return false
}

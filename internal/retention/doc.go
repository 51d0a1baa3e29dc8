// Package retention runs a backup repository in WAL-G's format: the delete
// forms (retain, before, everything, target, garbage) with WAL-G's
// decisions, and backup-mark.
//
// A delete is split in two jobs: choosing (repo.go loads the backups and
// their permanence, select.go picks the target the way each form does,
// order.go orders storage keys as WAL-G does) and sweeping (sweep.go), which
// removes in an order that survives being killed: the chosen backups' stop
// sentinels first, then every other object of those backups, then WAL. A
// backup therefore leaves the listing before any of its data goes, and
// running the same delete again finishes the job.
//
// Memory: one small record per backup (sentinel and metadata.json fields,
// not files_metadata); objects are judged one at a time while the storage
// listing streams page by page, and deletions go in batches of at most
// BatchSize keys. Nothing grows with the number of WAL objects.
package retention

// Package pgdata knows PostgreSQL's on-disk formats that a backup reads
// without a server: relation file names, data pages (the page checksum
// and the header rules) and pg_control. backup-push --verify and
// backup-verify judge pages with the same functions here.
//
// Memory: nothing here buffers more than one page (PageVerifier keeps one
// page for rereads and the list of corrupt block numbers its caller has
// not taken yet).
package pgdata

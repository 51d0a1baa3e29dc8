// Package restore restores base backups (backup-fetch): it resolves a
// delta chain, downloads and decodes the tar partitions, extracts them
// into the destination and the tablespace locations, and writes the
// recovery settings.
//
// Everything written goes through os.Root handles opened on directories
// that were absent or empty, so no member name and no symlink planted
// during the restore can lead a write elsewhere; pg_control is put in
// place only once every other file and directory is written and synced.
//
// Memory is per worker (WALG_DOWNLOAD_CONCURRENCY): one decryptor, one
// decompressor, an ExtractBufferSize copy buffer and archive/tar's header
// bound; nothing grows with the backup's size.
package restore

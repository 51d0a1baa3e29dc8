// Package push takes base backups (backup-push): it walks the data
// directory with WAL-G's exclusions, packs files into tar partitions,
// streams each through one pipe.Encoder into storage, and writes
// files_metadata.json, metadata.json and the stop sentinel last. Delta
// backups store page increments against a base found in the catalogue.
//
// Memory is bounded by the options, not by the cluster's size: per tar
// builder one encoder (compressor and encryptor state), one read buffer
// and the storage upload's part buffers, plus an unlinked spool file per
// builder for the files metadata. MemoryPlan states the bound.
package push

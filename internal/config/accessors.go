package config

import "time"

// Typed accessors, one per implemented setting a command reads, so a
// misspelt name fails to compile. Storage options and encryption keys are
// read as a whole (S3Options, Crypt); PG* and AWS SDK variables reach
// their libraries through Export.

// PGData is PGDATA.
func (c *Config) PGData() string { return c.value("PGDATA") }

// PGAppName is PGAPPNAME, the application_name of tusk's connections.
func (c *Config) PGAppName() string { return c.value("PGAPPNAME") }

// SlotName is WALG_SLOTNAME, the physical replication slot of wal-receive.
func (c *Config) SlotName() string { return c.value("WALG_SLOTNAME") }

// WALReceiveDir is TUSK_WAL_RECEIVE_DIR; "" means a private temp dir.
func (c *Config) WALReceiveDir() string { return c.value("TUSK_WAL_RECEIVE_DIR") }

// LogDestination is WALG_LOG_DESTINATION: a file path, or "" / "stderr".
func (c *Config) LogDestination() string { return c.value("WALG_LOG_DESTINATION") }

// PrefetchDir is WALG_PREFETCH_DIR; "" means the default under pg_wal.
func (c *Config) PrefetchDir() string { return c.value("WALG_PREFETCH_DIR") }

// DownloadFileRetries is WALG_DOWNLOAD_FILE_RETRIES.
func (c *Config) DownloadFileRetries() int { return c.intValue("WALG_DOWNLOAD_FILE_RETRIES") }

// FetchRetryTimeout is TUSK_FETCH_RETRY_TIMEOUT.
func (c *Config) FetchRetryTimeout() time.Duration {
	return c.durationValue("TUSK_FETCH_RETRY_TIMEOUT")
}

// FetchAbortOnStorageError is TUSK_FETCH_ABORT_ON_STORAGE_ERROR.
func (c *Config) FetchAbortOnStorageError() bool {
	return c.boolValue("TUSK_FETCH_ABORT_ON_STORAGE_ERROR")
}

// WALUploadBuffer is TUSK_WAL_UPLOAD_BUFFER: recompress or memory.
func (c *Config) WALUploadBuffer() string { return c.value("TUSK_WAL_UPLOAD_BUFFER") }

// PreventWALOverwrite is WALG_PREVENT_WAL_OVERWRITE.
func (c *Config) PreventWALOverwrite() bool { return c.boolValue("WALG_PREVENT_WAL_OVERWRITE") }

// TotalBGUploadedLimit is TOTAL_BG_UPLOADED_LIMIT.
func (c *Config) TotalBGUploadedLimit() int { return c.intValue("TOTAL_BG_UPLOADED_LIMIT") }

// PGReadyRename is PG_READY_RENAME.
func (c *Config) PGReadyRename() bool { return c.boolValue("PG_READY_RENAME") }

// DaemonMaxConnections is TUSK_DAEMON_MAX_CONNECTIONS.
func (c *Config) DaemonMaxConnections() int { return c.intValue("TUSK_DAEMON_MAX_CONNECTIONS") }

// DaemonWALUploadTimeout is WALG_DAEMON_WAL_UPLOAD_TIMEOUT.
func (c *Config) DaemonWALUploadTimeout() time.Duration {
	return c.durationValue("WALG_DAEMON_WAL_UPLOAD_TIMEOUT")
}

// DaemonShutdownGrace is TUSK_DAEMON_SHUTDOWN_GRACE.
func (c *Config) DaemonShutdownGrace() time.Duration {
	return c.durationValue("TUSK_DAEMON_SHUTDOWN_GRACE")
}

// SentinelUserData is WALG_SENTINEL_USER_DATA (JSON text, or "").
func (c *Config) SentinelUserData() string { return c.value("WALG_SENTINEL_USER_DATA") }

// TarSizeThreshold is WALG_TAR_SIZE_THRESHOLD; 0 when unset (the backup
// package's default applies).
func (c *Config) TarSizeThreshold() int64 { return c.bytesValue("WALG_TAR_SIZE_THRESHOLD") }

// VerifyPageChecksums is WALG_VERIFY_PAGE_CHECKSUMS.
func (c *Config) VerifyPageChecksums() bool { return c.boolValue("WALG_VERIFY_PAGE_CHECKSUMS") }

// StoreAllCorruptBlocks is WALG_STORE_ALL_CORRUPT_BLOCKS.
func (c *Config) StoreAllCorruptBlocks() bool { return c.boolValue("WALG_STORE_ALL_CORRUPT_BLOCKS") }

// WithoutFilesMetadata is WALG_WITHOUT_FILES_METADATA.
func (c *Config) WithoutFilesMetadata() bool { return c.boolValue("WALG_WITHOUT_FILES_METADATA") }

// DisablePartialRestore is WALG_DISABLE_PARTIAL_RESTORE.
func (c *Config) DisablePartialRestore() bool { return c.boolValue("WALG_DISABLE_PARTIAL_RESTORE") }

// StopBackupTimeout is WALG_STOP_BACKUP_TIMEOUT; 0 means none.
func (c *Config) StopBackupTimeout() time.Duration {
	return c.durationValue("WALG_STOP_BACKUP_TIMEOUT")
}

// AliveCheckInterval is WALG_ALIVE_CHECK_INTERVAL.
func (c *Config) AliveCheckInterval() time.Duration {
	return c.durationValue("WALG_ALIVE_CHECK_INTERVAL")
}

// DeltaMaxSteps is WALG_DELTA_MAX_STEPS.
func (c *Config) DeltaMaxSteps() int { return c.intValue("WALG_DELTA_MAX_STEPS") }

// DeltaOrigin is WALG_DELTA_ORIGIN: "", LATEST or LATEST_FULL.
func (c *Config) DeltaOrigin() string { return c.value("WALG_DELTA_ORIGIN") }

// DeltaFromName is WALG_DELTA_FROM_NAME.
func (c *Config) DeltaFromName() string { return c.value("WALG_DELTA_FROM_NAME") }

// DeltaFromUserData is WALG_DELTA_FROM_USER_DATA (JSON text, or "").
func (c *Config) DeltaFromUserData() string { return c.value("WALG_DELTA_FROM_USER_DATA") }

// DeltaSource is TUSK_DELTA_SOURCE: auto, page-scan or wal-summaries.
func (c *Config) DeltaSource() string { return c.value("TUSK_DELTA_SOURCE") }

// FetchTargetUserData is WALG_FETCH_TARGET_USER_DATA (JSON text, or "").
func (c *Config) FetchTargetUserData() string { return c.value("WALG_FETCH_TARGET_USER_DATA") }

// TarDisableFsync is WALG_TAR_DISABLE_FSYNC.
func (c *Config) TarDisableFsync() bool { return c.boolValue("WALG_TAR_DISABLE_FSYNC") }

// IntegrityMaxDelayedWALs is WALG_INTEGRITY_MAX_DELAYED_WALS.
func (c *Config) IntegrityMaxDelayedWALs() int { return c.intValue("WALG_INTEGRITY_MAX_DELAYED_WALS") }

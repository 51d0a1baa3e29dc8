package pg

import (
	"context"
	"fmt"
	"time"
)

// BackupStart is what starting a non-exclusive backup returns.
type BackupStart struct {
	LSN LSN
	// WalFileName is pg_walfile_name_offset(lsn).file_name on a primary
	// (the server's current timeline), "" on a standby, where PostgreSQL
	// refuses that function.
	WalFileName string
	InRecovery  bool
}

// BackupStop is what stopping it returns: the contents PostgreSQL would
// have written to backup_label and tablespace_map, and the end LSN.
type BackupStop struct {
	LSN           LSN
	Label         string
	TablespaceMap string
}

func (c *Conn) checkVersion() error {
	if c.version < MinVersion {
		return fmt.Errorf("PostgreSQL %d is not supported: tusk needs the non-exclusive backup API of PostgreSQL 10 or later", c.version)
	}
	return nil
}

// StartBackup starts a non-exclusive backup with an immediate checkpoint:
// pg_backup_start(label, fast => true) on PostgreSQL 15 and later,
// pg_start_backup(label, true, false) before. The backup belongs to this
// session: closing it aborts the backup.
func (c *Conn) StartBackup(ctx context.Context, label string) (BackupStart, error) {
	if err := c.checkVersion(); err != nil {
		return BackupStart{}, err
	}
	fn := "pg_catalog.pg_backup_start($1, true)"
	if c.version < 150000 {
		fn = "pg_catalog.pg_start_backup($1, true, false)"
	}
	sql := "SELECT lsn::text, pg_catalog.pg_is_in_recovery()," +
		" CASE WHEN pg_catalog.pg_is_in_recovery() THEN ''" +
		" ELSE (pg_catalog.pg_walfile_name_offset(lsn)).file_name END" +
		" FROM " + fn + " lsn"
	var lsn string
	var s BackupStart
	if err := c.queryRow(ctx, "start backup", sql, []any{label}, &lsn, &s.InRecovery, &s.WalFileName); err != nil {
		return BackupStart{}, err
	}
	var err error
	if s.LSN, err = ParseLSN(lsn); err != nil {
		return BackupStart{}, fmt.Errorf("start backup: %w", err)
	}
	return s, nil
}

// StopBackup ends the session's backup: pg_backup_stop(wait) on 15 and
// later, pg_stop_backup(false, wait) before. With waitForArchive the server
// returns only once the WAL up to the end LSN is archived (on a standby:
// only with archive_mode = always), which is what makes the backup
// restorable from the archive. timeout > 0 bounds the call with
// statement_timeout (WALG_STOP_BACKUP_TIMEOUT); 0 waits without limit.
//
// It ignores ctx's cancellation so that a signal arriving now cannot leave
// the server in backup mode; the statement timeout bounds it instead.
func (c *Conn) StopBackup(ctx context.Context, waitForArchive bool, timeout time.Duration) (BackupStop, error) {
	if err := c.checkVersion(); err != nil {
		return BackupStop{}, err
	}
	ctx = context.WithoutCancel(ctx)
	fn := "pg_catalog.pg_backup_stop($1)"
	if c.version < 150000 {
		fn = "pg_catalog.pg_stop_backup(false, $1)"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return BackupStop{}, fmt.Errorf("stop backup: %w", errClosed)
	}
	tx, err := c.conn.Begin(ctx)
	if err != nil {
		return BackupStop{}, fmt.Errorf("stop backup: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit this is a no-op
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", timeout.Milliseconds())); err != nil {
		return BackupStop{}, fmt.Errorf("stop backup: set statement_timeout: %w", err)
	}
	var s BackupStop
	var lsn string
	err = tx.QueryRow(ctx, "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM "+fn, waitForArchive).
		Scan(&lsn, &s.Label, &s.TablespaceMap)
	if err != nil {
		return BackupStop{}, fmt.Errorf("stop backup: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return BackupStop{}, fmt.Errorf("stop backup: commit: %w", err)
	}
	if s.LSN, err = ParseLSN(lsn); err != nil {
		return BackupStop{}, fmt.Errorf("stop backup: %w", err)
	}
	return s, nil
}

// SwitchWAL forces a switch to a new WAL segment (primary only) and returns
// the LSN pg_switch_wal reports.
func (c *Conn) SwitchWAL(ctx context.Context) (LSN, error) {
	var s string
	if err := c.queryRow(ctx, "pg_switch_wal", "SELECT pg_catalog.pg_switch_wal()::text", nil, &s); err != nil {
		return 0, err
	}
	return ParseLSN(s)
}

package pg

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ServerInfo holds the server facts a base backup checks and records.
type ServerInfo struct {
	Version int
	// DataDirectory is the server's data_directory with symlinks resolved
	// (what WAL-G records as DataDir and compares the command line with).
	DataDirectory string
	// WalSegmentSize is wal_segment_size in bytes.
	WalSegmentSize int64
	// BlockSize is block_size (BLCKSZ) in bytes.
	BlockSize int
	// RelSegmentBlocks is segment_size in blocks: how many blocks one
	// relation segment file holds (131072 for 1 GiB of 8 KiB pages).
	RelSegmentBlocks uint32
	DataChecksums    bool
	ArchiveMode      string // off, on, always
	ArchiveCommand   string
	ArchiveLibrary   string // PostgreSQL 15 and later; "" before
	SystemIdentifier uint64
	// HasSystemIdentifier is false when pg_control_system() could not be
	// read (WAL-G then leaves SystemIdentifier out of the sentinel).
	HasSystemIdentifier bool
	InRecovery          bool
}

// Info reads ServerInfo.
func (c *Conn) Info(ctx context.Context) (ServerInfo, error) {
	si := ServerInfo{Version: c.version}
	var dataDir, segSize, blockSize, relSeg, checksums string
	err := c.queryRow(ctx, "read server settings",
		"SELECT current_setting('data_directory'), current_setting('block_size'),"+
			" (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'),"+
			" (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'segment_size'),"+
			" current_setting('data_checksums'), current_setting('archive_mode'),"+
			" current_setting('archive_command'), coalesce(current_setting('archive_library', true), ''),"+
			" pg_catalog.pg_is_in_recovery()",
		nil, &dataDir, &blockSize, &segSize, &relSeg, &checksums, &si.ArchiveMode, &si.ArchiveCommand,
		&si.ArchiveLibrary, &si.InRecovery)
	if err != nil {
		return si, err
	}
	if si.DataDirectory, err = filepath.EvalSymlinks(dataDir); err != nil {
		// The server may run on another host or in a container; keep its
		// text, the caller's comparison will report the mismatch.
		si.DataDirectory = filepath.Clean(dataDir)
	}
	if si.BlockSize, err = strconv.Atoi(blockSize); err != nil {
		return si, fmt.Errorf("block_size %q: %w", blockSize, err)
	}
	n, err := strconv.ParseInt(segSize, 10, 64)
	if err != nil {
		return si, fmt.Errorf("wal_segment_size %q: %w", segSize, err)
	}
	if c.version < 110000 {
		n *= int64(si.BlockSize) // counted in WAL blocks before PostgreSQL 11
	}
	si.WalSegmentSize = n
	rs, err := strconv.ParseUint(relSeg, 10, 32)
	if err != nil {
		return si, fmt.Errorf("segment_size %q: %w", relSeg, err)
	}
	si.RelSegmentBlocks = uint32(rs)
	si.DataChecksums = checksums == "on"

	var sysID int64
	if err := c.queryRow(ctx, "read system identifier",
		"SELECT system_identifier FROM pg_catalog.pg_control_system()", nil, &sysID); err == nil {
		// bigint on the wire; the identifier is unsigned (WAL-G converts
		// the same way).
		si.SystemIdentifier, si.HasSystemIdentifier = uint64(sysID), true
	} else {
		c.log.Warn("cannot read the system identifier; the backup will not record it", "error", err)
	}
	return si, nil
}

// Timeline returns the timeline of the latest checkpoint (or restartpoint
// on a standby) and bytes_per_wal_segment, from pg_control: WAL-G's
// ReadTimeline.
func (c *Conn) Timeline(ctx context.Context) (timeline uint32, segSize int64, err error) {
	var tli int64
	err = c.queryRow(ctx, "read timeline",
		"SELECT timeline_id, bytes_per_wal_segment FROM pg_catalog.pg_control_checkpoint(), pg_catalog.pg_control_init()",
		nil, &tli, &segSize)
	return uint32(tli), segSize, err
}

// Tablespace is a row of pg_tablespace outside the data directory.
type Tablespace struct {
	OID      uint32
	Name     string
	Location string // pg_tablespace_location; "" for pg_default/pg_global
}

// Tablespaces lists user tablespaces (pg_default and pg_global have no
// location).
func (c *Conn) Tablespaces(ctx context.Context) ([]Tablespace, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, fmt.Errorf("list tablespaces: %w", errClosed)
	}
	rows, err := c.conn.Query(ctx,
		"SELECT oid::bigint, spcname::text, pg_catalog.pg_tablespace_location(oid) FROM pg_catalog.pg_tablespace"+
			" WHERE pg_catalog.pg_tablespace_location(oid) <> '' ORDER BY oid")
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	defer rows.Close()
	var out []Tablespace
	for rows.Next() {
		var t Tablespace
		var oid int64
		if err := rows.Scan(&oid, &t.Name, &t.Location); err != nil {
			return nil, fmt.Errorf("list tablespaces: %w", err)
		}
		t.OID = uint32(oid)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	return out, nil
}

// Database is a row of pg_database that accepts connections.
type Database struct {
	OID  uint32
	Name string
}

// Databases lists the databases WAL-G visits for partial-restore metadata.
func (c *Conn) Databases(ctx context.Context) ([]Database, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, fmt.Errorf("list databases: %w", errClosed)
	}
	rows, err := c.conn.Query(ctx, "SELECT oid::bigint, datname::text FROM pg_catalog.pg_database WHERE datallowconn ORDER BY oid")
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	defer rows.Close()
	var out []Database
	for rows.Next() {
		var d Database
		var oid int64
		if err := rows.Scan(&oid, &d.Name); err != nil {
			return nil, fmt.Errorf("list databases: %w", err)
		}
		d.OID = uint32(oid)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return out, nil
}

// Relation is one pg_class row with storage (or a partitioned table, which
// WAL-G keeps to nest its partitions), as WAL-G's getTables reads it.
type Relation struct {
	OID         uint32
	RelFileNode uint32 // for mapped catalogs, taken from pg_relation_filepath
	Name        string // relname
	Namespace   string // nspname
	Parent      string // relname of the pg_inherits parent, "" if none
}

// Relations calls fn for every relation of the connected database with
// storage, and for partitioned tables, streaming the rows.
func (c *Conn) Relations(ctx context.Context, fn func(Relation) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return fmt.Errorf("list relations: %w", errClosed)
	}
	// pg_relation_filepath only for mapped catalogs (relfilenode 0): over
	// millions of relations it would exhaust the backend's syscache.
	rows, err := c.conn.Query(ctx,
		"SELECT c.relfilenode::bigint, c.oid::bigint,"+
			" CASE WHEN c.relfilenode = 0 THEN pg_catalog.pg_relation_filepath(c.oid) END,"+
			" c.relname::text, n.nspname::text, c.relkind::text, p.relname::text"+
			" FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid"+
			" LEFT JOIN pg_catalog.pg_inherits i ON c.oid = i.inhrelid"+
			" LEFT JOIN pg_catalog.pg_class p ON i.inhparent = p.oid")
	if err != nil {
		return fmt.Errorf("list relations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var relfilenode, oid int64
		var path, parent *string
		var r Relation
		var kind string
		if err := rows.Scan(&relfilenode, &oid, &path, &r.Name, &r.Namespace, &kind, &parent); err != nil {
			return fmt.Errorf("list relations: %w", err)
		}
		r.OID, r.RelFileNode = uint32(oid), uint32(relfilenode)
		if parent != nil {
			r.Parent = *parent
		}
		if kind != "p" && relfilenode == 0 {
			if path == nil || *path == "" {
				continue // no storage: view, foreign table, partitioned index
			}
			node, err := strconv.ParseUint((*path)[strings.LastIndexByte(*path, '/')+1:], 10, 32)
			if err != nil {
				continue
			}
			r.RelFileNode = uint32(node)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list relations: %w", err)
	}
	return nil
}

// ClusterSize is the sum of pg_database_size over every database: about
// what a base backup reads (WAL and the server's small files aside).
func (c *Conn) ClusterSize(ctx context.Context) (int64, error) {
	var n int64
	err := c.queryRow(ctx, "database sizes",
		"SELECT coalesce(sum(pg_catalog.pg_database_size(oid)), 0)::bigint FROM pg_catalog.pg_database", nil, &n)
	return n, err
}

package pg

import (
	"context"
	"fmt"
)

// WalSummary is one WAL summary file of PostgreSQL 17+ (summarize_wal):
// the blocks modified by the WAL of timeline TLI in [Start, End).
type WalSummary struct {
	TLI        uint32
	Start, End LSN
}

// WalSummaries lists pg_available_wal_summaries().
func (c *Conn) WalSummaries(ctx context.Context) ([]WalSummary, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, fmt.Errorf("list WAL summaries: %w", errClosed)
	}
	rows, err := c.conn.Query(ctx, "SELECT tli::bigint, start_lsn::text, end_lsn::text FROM pg_catalog.pg_available_wal_summaries()")
	if err != nil {
		return nil, fmt.Errorf("list WAL summaries: %w", err)
	}
	defer rows.Close()
	var out []WalSummary
	for rows.Next() {
		var tli int64
		var start, end string
		if err := rows.Scan(&tli, &start, &end); err != nil {
			return nil, fmt.Errorf("list WAL summaries: %w", err)
		}
		s := WalSummary{TLI: uint32(tli)}
		if s.Start, err = ParseLSN(start); err != nil {
			return nil, fmt.Errorf("list WAL summaries: %w", err)
		}
		if s.End, err = ParseLSN(end); err != nil {
			return nil, fmt.Errorf("list WAL summaries: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list WAL summaries: %w", err)
	}
	return out, nil
}

// WalSummarized returns how far the WAL summarizer has got
// (pg_get_wal_summarizer_state()).
func (c *Conn) WalSummarized(ctx context.Context) (tli uint32, lsn LSN, err error) {
	var t int64
	var l string
	if err := c.queryRow(ctx, "read the WAL summarizer state",
		"SELECT summarized_tli::bigint, summarized_lsn::text FROM pg_catalog.pg_get_wal_summarizer_state()", nil, &t, &l); err != nil {
		return 0, 0, err
	}
	lsn, err = ParseLSN(l)
	return uint32(t), lsn, err
}

// SummaryBlock is one row of pg_wal_summary_contents(): a modified block,
// or with IsLimit the length a relation fork was truncated to.
type SummaryBlock struct {
	RelFileNode, Tablespace, Database uint32
	Fork                              int16
	Block                             uint32
	IsLimit                           bool
}

// WalSummaryContents streams the blocks of one summary to fn.
func (c *Conn) WalSummaryContents(ctx context.Context, s WalSummary, fn func(SummaryBlock) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return fmt.Errorf("read WAL summary: %w", errClosed)
	}
	rows, err := c.conn.Query(ctx,
		"SELECT relfilenode::bigint, reltablespace::bigint, reldatabase::bigint, relforknumber::int, relblocknumber::bigint, is_limit_block"+
			" FROM pg_catalog.pg_wal_summary_contents($1, $2::text::pg_lsn, $3::text::pg_lsn)",
		int64(s.TLI), s.Start.String(), s.End.String())
	if err != nil {
		return fmt.Errorf("read WAL summary %d %s-%s: %w", s.TLI, s.Start, s.End, err)
	}
	defer rows.Close()
	for rows.Next() {
		var rel, spc, db, blk int64
		var fork int32
		var b SummaryBlock
		if err := rows.Scan(&rel, &spc, &db, &fork, &blk, &b.IsLimit); err != nil {
			return fmt.Errorf("read WAL summary %d %s-%s: %w", s.TLI, s.Start, s.End, err)
		}
		b.RelFileNode, b.Tablespace, b.Database, b.Fork, b.Block = uint32(rel), uint32(spc), uint32(db), int16(fork), uint32(blk)
		if err := fn(b); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read WAL summary %d %s-%s: %w", s.TLI, s.Start, s.End, err)
	}
	return nil
}

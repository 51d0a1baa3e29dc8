package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/ratelimit"
)

// TUSK_DELTA_SOURCE values: where a delta learns which pages changed.
const (
	// DeltaSourceAuto uses WAL summaries when PostgreSQL 17+ has them
	// (summarize_wal = on) for the whole range, else the page scan.
	DeltaSourceAuto = "auto"
	// DeltaSourcePageScan reads every page and compares its LSN (WAL-G).
	DeltaSourcePageScan = "page-scan"
	// DeltaSourceWalSummaries requires WAL summaries; the backup fails
	// without them.
	DeltaSourceWalSummaries = "wal-summaries"
)

// maxSummaryBlocks bounds the changed-block lists read from WAL summaries
// (16 MiB of block numbers); beyond it the page scan is used, which needs
// no list.
const maxSummaryBlocks = 1 << 22

// summaryWait is how long backup-push waits for the WAL summarizer to
// reach the backup's start.
const summaryWait = 2 * time.Minute

// Tablespace OIDs of the data directory's own tablespaces.
const defaultTablespaceOID = 1663

// relKey names a relation's main fork.
type relKey struct{ spc, db, rel uint32 }

// changedBlocks are the main-fork blocks WAL summaries saw modified.
type changedBlocks struct {
	// blocks are absolute block numbers, sorted and unique.
	blocks map[relKey][]uint32
	// limits are the smallest length a relation was truncated to: every
	// block from there on may be new.
	limits map[relKey]uint32
}

// errNoSummaries is wrapped when the summaries cannot serve a delta.
var errNoSummaries = errors.New("WAL summaries cannot serve this delta")

// deltaFromSummaries returns the changed blocks between the delta base's
// start and this backup's start from WAL summaries, or nil when the page
// scan is to be used.
func deltaFromSummaries(ctx context.Context, conn *pg.Conn, source string, version int, from, to pg.LSN, log *slog.Logger) (*changedBlocks, error) {
	switch source {
	case DeltaSourcePageScan:
		return nil, nil
	case "", DeltaSourceAuto, DeltaSourceWalSummaries:
	default:
		return nil, fmt.Errorf("TUSK_DELTA_SOURCE %q: want auto, page-scan or wal-summaries", source)
	}
	required := source == DeltaSourceWalSummaries
	fail := func(err error) (*changedBlocks, error) {
		if required {
			return nil, fmt.Errorf("TUSK_DELTA_SOURCE=wal-summaries: %w", err)
		}
		log.Info("delta: using the page scan", "reason", err.Error())
		return nil, nil
	}
	if version < 170000 {
		return fail(fmt.Errorf("%w: PostgreSQL %d has none (17 and later)", errNoSummaries, version/10000))
	}
	on, err := conn.Setting(ctx, "summarize_wal")
	if err != nil {
		return nil, err
	}
	if on != "on" {
		return fail(fmt.Errorf("%w: summarize_wal is off", errNoSummaries))
	}
	cb, err := readSummaries(ctx, conn, from, to, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return fail(err)
	}
	return cb, nil
}

func readSummaries(ctx context.Context, conn *pg.Conn, from, to pg.LSN, log *slog.Logger) (*changedBlocks, error) {
	deadline := time.Now().Add(summaryWait)
	var tli uint32
	for {
		t, done, err := conn.WalSummarized(ctx)
		if err != nil {
			return nil, err
		}
		if done >= to {
			tli = t
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: the WAL summarizer reached only %s of %s after %v", errNoSummaries, done, to, summaryWait)
		}
		if err := ratelimit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	all, err := conn.WalSummaries(ctx)
	if err != nil {
		return nil, err
	}
	use, err := coveringSummaries(all, tli, from, to)
	if err != nil {
		return nil, err
	}
	cb := &changedBlocks{blocks: map[relKey][]uint32{}, limits: map[relKey]uint32{}}
	n := 0
	for _, s := range use {
		err := conn.WalSummaryContents(ctx, s, func(b pg.SummaryBlock) error {
			if b.Fork != 0 {
				return nil // only main forks are stored as increments
			}
			k := relKey{b.Tablespace, b.Database, b.RelFileNode}
			if b.IsLimit {
				if l, ok := cb.limits[k]; !ok || b.Block < l {
					cb.limits[k] = b.Block
				}
				return nil
			}
			if n++; n > maxSummaryBlocks {
				return fmt.Errorf("%w: more than %d changed blocks", errNoSummaries, maxSummaryBlocks)
			}
			cb.blocks[k] = append(cb.blocks[k], b.Block)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for k, bl := range cb.blocks {
		slices.Sort(bl)
		cb.blocks[k] = slices.Compact(bl)
	}
	log.Info("delta: changed blocks from WAL summaries", "summaries", len(use), "blocks", n, "relations", len(cb.blocks))
	return cb, nil
}

// coveringSummaries picks the summaries of timeline tli that together
// cover [from, to) without a gap.
func coveringSummaries(all []pg.WalSummary, tli uint32, from, to pg.LSN) ([]pg.WalSummary, error) {
	var use []pg.WalSummary
	for _, s := range all {
		if s.TLI == tli && s.End > from && s.Start < to {
			use = append(use, s)
		}
	}
	sort.Slice(use, func(i, j int) bool { return use[i].Start < use[j].Start })
	if len(use) > 0 && use[0].Start > from {
		return nil, fmt.Errorf("%w: the WAL summaries of timeline %d start at %s, after the delta base's start %s (summarize_wal turned on later, or summaries removed)",
			errNoSummaries, tli, use[0].Start, from)
	}
	covered := from
	for _, s := range use {
		if s.Start > covered {
			break
		}
		covered = max(covered, s.End)
	}
	if covered < to {
		return nil, fmt.Errorf("%w: WAL summaries of timeline %d cover %s to %s only, not to %s", errNoSummaries, tli, from, covered, to)
	}
	return use, nil
}

// relationOf maps a relation segment's member name to its relation and
// segment number: /base/<db>/<rel>[.<seg>] or
// /pg_tblspc/<spc>/<version dir>/<db>/<rel>[.<seg>].
func relationOf(name string) (relKey, uint32, bool) {
	parts := strings.Split(strings.TrimPrefix(name, "/"), "/")
	var spc, db uint64
	var ok bool
	switch {
	case len(parts) == 3 && parts[0] == "base":
		spc = defaultTablespaceOID
		if db, ok = pgdata.ParseDigits(parts[1]); !ok {
			return relKey{}, 0, false
		}
	case len(parts) == 5 && parts[0] == "pg_tblspc":
		if spc, ok = pgdata.ParseDigits(parts[1]); !ok {
			return relKey{}, 0, false
		}
		if db, ok = pgdata.ParseDigits(parts[3]); !ok {
			return relKey{}, 0, false
		}
	default:
		return relKey{}, 0, false
	}
	node, segStr, hasSeg := strings.Cut(parts[len(parts)-1], ".")
	rel, ok := pgdata.ParseDigits(node)
	if !ok {
		return relKey{}, 0, false
	}
	var seg uint64
	if hasSeg {
		if seg, ok = pgdata.ParseDigits(segStr); !ok {
			return relKey{}, 0, false
		}
	}
	return relKey{uint32(spc), uint32(db), uint32(rel)}, uint32(seg), true
}

// fileBlocks lists, relative to the file, the blocks of segment seg of
// relation k (fileBlocks pages long, relSegBlocks per segment) that
// changed, appending to dst: summarized blocks, and every block at or
// past a truncation limit.
func (cb *changedBlocks) fileBlocks(dst []uint32, k relKey, seg, relSegBlocks uint32, fileBlocks int64) []uint32 {
	first := uint64(seg) * uint64(relSegBlocks)
	end := first + uint64(fileBlocks) // exclusive
	rangeFrom := end
	if l, ok := cb.limits[k]; ok {
		rangeFrom = max(uint64(l), first)
	}
	bl := cb.blocks[k]
	i := sort.Search(len(bl), func(i int) bool { return uint64(bl[i]) >= first })
	for ; i < len(bl) && uint64(bl[i]) < min(end, rangeFrom); i++ {
		dst = append(dst, uint32(uint64(bl[i])-first))
	}
	for b := rangeFrom; b < end; b++ {
		dst = append(dst, uint32(b-first))
	}
	return dst
}

package storecopy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// BackupOptions select what Backups copies.
type BackupOptions struct {
	// Backup names the one backup to copy, or LATEST; "" copies every
	// backup of the source.
	Backup string
	// WithHistory also copies the WAL from each backup's start through the
	// latest archived when the copy starts (WAL-G's --with-history);
	// otherwise only the WAL from its start to its end.
	WithHistory bool
	// SegmentSize is the WAL segment size in bytes.
	SegmentSize int64
}

// Backups copies backups as WAL-G's copy does: each selected backup with
// the backups its delta chain needs, and the WAL each selected backup
// needs to be restored (with WithHistory, up to the latest); objects the
// target holds with the same size are skipped. Before anything is written
// the source is checked: every backup of a chain complete, and each
// selected backup's WAL present from its start segment (to its end
// segment, without WithHistory) without a gap. Objects become visible in
// an order that never shows an incomplete backup: backup data and WAL
// first, then each backup's metadata.json, then the stop sentinels, a
// delta's after its base's.
func (c *Copier) Backups(ctx context.Context, o BackupOptions) error {
	if o.SegmentSize <= 0 {
		return fmt.Errorf("WAL segment size %d", o.SegmentSize)
	}
	names, err := c.selectBackups(ctx, o.Backup)
	if err != nil {
		return err
	}
	depth := map[string]int{}
	var ranges []*walRange
	for _, name := range names {
		s, err := backup.FetchSentinel(ctx, c.From, name)
		if err != nil {
			return fmt.Errorf("backup %s: %w", name, err)
		}
		chain, err := backup.ResolveChain(ctx, c.From, name, s)
		if err != nil {
			return err
		}
		for i, l := range chain {
			depth[l.Name] = i
		}
		r, err := c.backupWAL(ctx, name, s, o)
		if err != nil {
			return err
		}
		ranges = append(ranges, r)
	}
	scan, err := c.checkWAL(ctx, ranges, o.WithHistory, o.SegmentSize)
	if err != nil {
		return err
	}

	// Every backup once, bases first.
	closure := make([]string, 0, len(depth))
	for n := range depth {
		closure = append(closure, n)
	}
	slices.SortFunc(closure, func(a, b string) int {
		if d := depth[a] - depth[b]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	c.log().Info("copying backups", "from", c.From.String(), "to", c.To.String(), "backups", len(closure), "selected", len(names))

	// Data, then WAL.
	err = c.copyAll(ctx, func(fn func(storage.ObjectInfo) error) error {
		for _, n := range closure {
			err := c.From.List(ctx, backup.FolderKey(n), func(obj storage.ObjectInfo) error {
				if obj.Key == backup.MetadataKey(n) {
					return nil
				}
				return fn(obj)
			})
			if err != nil {
				return fmt.Errorf("list backup %s in %s: %w", n, c.From, err)
			}
		}
		return c.From.List(ctx, wal.Folder, func(obj storage.ObjectInfo) error {
			if scan.selects(obj.Key) {
				return fn(obj)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	// metadata.json, then the sentinels, one depth at a time.
	var meta []storage.ObjectInfo
	for _, n := range closure {
		info, err := c.From.Stat(ctx, backup.MetadataKey(n))
		if errors.Is(err, storage.ErrNotFound) {
			continue // an old backup without one
		}
		if err != nil {
			return fmt.Errorf("backup %s: %w", n, err)
		}
		meta = append(meta, info)
	}
	if err := c.Objects(ctx, meta); err != nil {
		return err
	}
	for i := 0; i < len(closure); {
		var sentinels []storage.ObjectInfo
		d := depth[closure[i]]
		for ; i < len(closure) && depth[closure[i]] == d; i++ {
			info, err := c.From.Stat(ctx, backup.SentinelKey(closure[i]))
			if err != nil {
				return fmt.Errorf("backup %s: %w", closure[i], err)
			}
			sentinels = append(sentinels, info)
		}
		if err := c.Objects(ctx, sentinels); err != nil {
			return err
		}
	}
	return nil
}

// selectBackups returns the backups asked for: all of the source's, or
// the one named (LATEST included).
func (c *Copier) selectBackups(ctx context.Context, name string) ([]string, error) {
	if name != "" {
		b, err := backup.Find(ctx, c.From, name)
		if err != nil {
			return nil, err
		}
		return []string{b.Name}, nil
	}
	all, err := backup.List(ctx, c.From)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%s: %w", c.From, backup.ErrNoBackups)
	}
	names := make([]string, len(all))
	for i, b := range all {
		names[i] = b.Name
	}
	slices.Sort(names)
	return names, nil
}

// walRange is the WAL one selected backup needs, as WAL-G's copy decides
// it: from the segment holding the byte before its start LSN to the one
// holding its finish LSN, on the timeline of its name.
type walRange struct {
	backup      string
	first, last string
	runs        map[uint32]*runs // segments found, per timeline
	foundFirst  bool
	foundLast   bool
}

func (c *Copier) backupWAL(ctx context.Context, name string, s *backup.Sentinel, o BackupOptions) (*walRange, error) {
	start, finish := s.LSN, s.FinishLSN
	m, err := backup.FetchMetadata(ctx, c.From, name)
	switch {
	case err == nil:
		start, finish = m.StartLSN, m.FinishLSN
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("backup %s: %w", name, err)
	}
	n, err := backup.ParseName(name)
	if err != nil {
		return nil, err
	}
	seg, err := wal.ParseSegment(n.Start, o.SegmentSize)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", name, err)
	}
	if start == 0 || finish < start {
		return nil, fmt.Errorf("backup %s: start LSN %s and finish LSN %s make no WAL range", name, start, finish)
	}
	first := wal.Segment{Timeline: seg.Timeline, No: (start - 1).Segment(o.SegmentSize)}
	last := wal.Segment{Timeline: seg.Timeline, No: pg.LSN(finish).Segment(o.SegmentSize)}
	return &walRange{backup: name, first: first.Name(o.SegmentSize), last: last.Name(o.SegmentSize), runs: map[uint32]*runs{}}, nil
}

// walName splits a WAL object's key as WAL-G's copy does: the name without
// a compression extension, and its "logical" name, up to the first dot,
// which ranges are compared with.
func walName(key string) (archive, logical string) {
	archive = path.Base(key)
	if ext := codec.ExtOf(archive); ext != "" {
		if _, err := codec.ByExt(ext); err == nil {
			archive = strings.TrimSuffix(archive, "."+ext)
		}
	}
	logical, _, _ = strings.Cut(archive, ".")
	return archive, logical
}

// selects reports whether the range wants a WAL object: timeline history
// files always (they are small, and which ones a restore needs is only
// known by reading them), others by their logical name.
func (r *walRange) selects(archive, logical string, withHistory bool) bool {
	if strings.HasSuffix(archive, ".history") {
		return true
	}
	return logical >= r.first && (withHistory || logical <= r.last)
}

// walScan is the WAL selection, fixed by checkWAL's listing.
type walScan struct {
	ranges      []*walRange
	withHistory bool
	// newest is, with history, the greatest logical name the check saw:
	// WAL archived later is not copied, as WAL-G's copy works from the
	// listing it starts with.
	newest string
}

func (s *walScan) selects(key string) bool {
	archive, logical := walName(key)
	if s.withHistory && logical > s.newest && !strings.HasSuffix(archive, ".history") {
		return false
	}
	for _, r := range s.ranges {
		if r.selects(archive, logical, s.withHistory) {
			return true
		}
	}
	return false
}

// checkWAL lists the source's WAL once and checks each range as WAL-G's
// copy does: its first segment present, its last too without history, and
// no gap between the segments selected on any one timeline. Sidecars
// (.partial, .backup) are copied with their segment but prove nothing.
func (c *Copier) checkWAL(ctx context.Context, ranges []*walRange, withHistory bool, segSize int64) (*walScan, error) {
	scan := &walScan{ranges: ranges, withHistory: withHistory}
	err := c.From.List(ctx, wal.Folder, func(obj storage.ObjectInfo) error {
		archive, logical := walName(obj.Key)
		for _, r := range ranges {
			if !r.selects(archive, logical, withHistory) {
				continue
			}
			if !strings.HasSuffix(archive, ".history") && logical > scan.newest {
				scan.newest = logical
			}
			r.foundFirst = r.foundFirst || archive == r.first
			r.foundLast = r.foundLast || archive == r.last
			if seg, err := wal.ParseSegment(archive, segSize); err == nil {
				rs := r.runs[seg.Timeline]
				if rs == nil {
					rs = &runs{}
					r.runs[seg.Timeline] = rs
				}
				rs.add(seg.No)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list WAL in %s: %w", c.From, err)
	}
	for _, r := range ranges {
		if !r.foundFirst {
			return nil, fmt.Errorf("backup %s: first required WAL segment %s is missing from %s", r.backup, r.first, c.From)
		}
		if !withHistory && !r.foundLast {
			return nil, fmt.Errorf("backup %s: last required WAL segment %s is missing from %s", r.backup, r.last, c.From)
		}
		for tli, rs := range r.runs {
			if len(rs.spans) > 1 {
				return nil, fmt.Errorf("backup %s: gap in the WAL of timeline %08X after segment %s", r.backup, tli,
					wal.Segment{Timeline: tli, No: rs.spans[0].hi}.Name(segSize))
			}
		}
	}
	return scan, nil
}

// runs holds a set of segment numbers as maximal runs of consecutive
// numbers, sorted: one run when the set has no gap, whatever the order
// the numbers come in.
type runs struct{ spans []span }

type span struct{ lo, hi uint64 }

func (r *runs) add(n uint64) {
	// The first run ending at or after n-1 is where n joins or goes.
	i, _ := slices.BinarySearchFunc(r.spans, n, func(s span, n uint64) int {
		switch {
		case s.hi+1 < n:
			return -1
		case s.lo > n+1:
			return 1
		}
		return 0
	})
	if i == len(r.spans) || r.spans[i].lo > n+1 {
		r.spans = slices.Insert(r.spans, i, span{n, n})
		return
	}
	s := &r.spans[i]
	s.lo, s.hi = min(s.lo, n), max(s.hi, n)
	// n may have closed the hole to the next run.
	if i+1 < len(r.spans) && r.spans[i+1].lo <= s.hi+1 {
		s.hi = max(s.hi, r.spans[i+1].hi)
		r.spans = slices.Delete(r.spans, i+1, i+2)
	}
}

// Package restorewindow computes what a repository can restore to, per
// timeline: the ranges of WAL positions and times a point-in-time
// recovery can reach, the backups each range starts from, the gaps and
// damage that end them, and the named restore points
// (pg_create_restore_point) with their times and positions.
//
// The WAL listing comes from walindex, the backups from their sentinels,
// the history of each timeline from its .history file; times and restore
// points come from the WAL records themselves (walrecord), read from the
// earliest backup's first segment onwards, one segment at a time.
//
// Memory: one segment is open at a time, streamed through the same
// decrypt/decompress path as wal-fetch (the codec's window; see memplan)
// into a walrecord.Decoder (one WAL page plus 8 KiB of the current
// record), so it does not grow with segment or record size. What is kept
// grows with the repository's shape, not its WAL volume: the walindex
// ranges (one per unbroken run of segments), one entry per backup, per
// timeline, per gap or damaged spot, and per restore point.
package restorewindow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// Point is a WAL position and, when the WAL tells it, a time.
type Point struct {
	LSN  pg.LSN
	Time time.Time // zero: unknown
}

// Range is a stretch of WAL a restore can reach any point of: from the
// consistency point of its earliest backup to the end of the last record
// before the next gap.
type Range struct {
	// Start is the earliest backup's finish LSN (the restore is
	// consistent from there); its time is the last commit or abort
	// before it (or the backup's start time when the WAL holds none):
	// the earliest recovery_target_time that works.
	Start Point
	// End is the end of the last complete record; its time is the last
	// commit or abort: recovery_target_time must be earlier, as
	// PostgreSQL stops only at a commit past the target.
	End Point
	// StartSegment and EndSegment are the WAL files the range spans.
	StartSegment, EndSegment string
	// Backups are the backups whose restore reaches this range, oldest
	// first.
	Backups []string
}

// Gap is missing or unreadable WAL that ends a range.
type Gap struct {
	// StartSegment..EndSegment are missing; for damage both name the
	// segment holding it.
	StartSegment, EndSegment string
	// At is where the WAL becomes unreadable.
	At pg.LSN
	// Reason is "missing" or what is wrong.
	Reason string
}

// RestorePoint is a pg_create_restore_point record.
type RestorePoint struct {
	Name string
	// LSN is the end of the record, as pg_create_restore_point returns
	// it: recovery_target_name stops there.
	LSN  pg.LSN
	Time time.Time
	// Reachable says whether it lies in one of the timeline's ranges,
	// so recovery_target_name can reach it.
	Reachable bool
}

// Timeline is the window of one timeline: a restore that follows it
// (recovery_target_timeline), through its ancestors up to its switch
// points.
type Timeline struct {
	ID uint32
	// Parent and Begins: the timeline it branched from and where; zero
	// for a first timeline or when the history file is not archived
	// (HistoryMissing).
	Parent         uint32
	Begins         pg.LSN
	HistoryMissing bool
	Ranges         []Range
	Gaps           []Gap
	RestorePoints  []RestorePoint
}

// Report is the restore window of every timeline, ascending.
type Report struct {
	Timelines []Timeline
}

// Options configure Compute.
type Options struct {
	SegmentSize int64
	Log         *slog.Logger
}

type backupRef struct {
	name          string
	tli           uint32
	startSeg      uint64
	start, finish pg.LSN
	startTime     time.Time
}

// piece is the stretch of segments a timeline's path takes from one
// timeline: [lo, hi].
type piece struct {
	tli    uint32
	lo, hi uint64
}

// part is archived segments [a, b] of a timeline on a path.
type part struct {
	tli  uint32
	a, b uint64
}

type timelinePlan struct {
	tl      Timeline
	pieces  []piece
	backups []backupRef // those on the path
	low     uint64
	runs    [][]part // unbroken runs of archived segments from low, ascending
}

// Compute builds the report. Backups come from store, WAL files through
// o (decoded), the listing from ix.
func Compute(ctx context.Context, store storage.Storage, ix *walindex.Index, o walindex.Opener, opts Options) (*Report, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	segSize := opts.SegmentSize
	backups, err := loadBackups(ctx, store, segSize, log)
	if err != nil {
		return nil, err
	}
	// Every timeline with WAL, a history file or a backup.
	ids := map[uint32]bool{}
	for _, t := range ix.Timelines() {
		ids[t] = true
	}
	for _, t := range ix.HistoryTimelines() {
		ids[t] = true
	}
	for _, b := range backups {
		ids[b.tli] = true
	}
	var plans []*timelinePlan
	for t := range ids {
		p, err := planTimeline(ctx, ix, o, t, backups, segSize)
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	slices.SortFunc(plans, func(a, b *timelinePlan) int { return int(a.tl.ID) - int(b.tl.ID) })

	jobs := decodeJobs(plans, segSize)
	results := map[uint32]*decoded{}
	for _, tli := range slices.Sorted(mapKeys(jobs)) {
		log.Info("reading WAL records", "timeline", tli,
			"from", wal.Segment{Timeline: tli, No: jobs[tli].lo}.Name(segSize),
			"to", wal.Segment{Timeline: tli, No: jobs[tli].hi}.Name(segSize))
		res, err := decodeTimeline(ctx, ix, o, *jobs[tli], segSize)
		if err != nil {
			return nil, err
		}
		results[tli] = res
	}
	rep := &Report{}
	for _, p := range plans {
		rep.Timelines = append(rep.Timelines, p.finish(results, segSize))
	}
	return rep, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// loadBackups reads every backup's sentinel. A backup whose sentinel
// cannot be read serves no range; it is named in a warning.
func loadBackups(ctx context.Context, store storage.Storage, segSize int64, log *slog.Logger) ([]backupRef, error) {
	infos, err := backup.List(ctx, store)
	if err != nil {
		return nil, err
	}
	var out []backupRef
	for _, info := range infos {
		seg, err := wal.ParseSegment(info.WalFileName, segSize)
		if err != nil {
			log.Warn("backup name holds no WAL segment; skipped", "backup", info.Name)
			continue
		}
		s, err := backup.FetchSentinel(ctx, store, info.Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			log.Warn("backup sentinel unreadable; it serves no range", "backup", info.Name, "error", err)
			continue
		}
		if s.LSN == 0 || s.FinishLSN < s.LSN || s.LSN.Segment(segSize) != seg.No {
			log.Warn("backup sentinel's start and finish LSN do not fit its name; it serves no range", "backup", info.Name)
			continue
		}
		out = append(out, backupRef{name: info.Name, tli: seg.Timeline, startSeg: seg.No,
			start: s.LSN, finish: s.FinishLSN, startTime: s.StartTime})
	}
	return out, nil
}

// planTimeline finds timeline t's path (pieces of its ancestors up to
// their switch points, then its own), the backups on it, and its runs of
// archived segments from the earliest such backup.
func planTimeline(ctx context.Context, ix *walindex.Index, o walindex.Opener, t uint32, backups []backupRef, segSize int64) (*timelinePlan, error) {
	p := &timelinePlan{tl: Timeline{ID: t}}
	var history []walindex.HistoryRecord
	if t > 1 {
		h, err := walindex.LoadHistory(ctx, o, t)
		switch {
		case errors.Is(err, walindex.ErrNoHistory):
			p.tl.HistoryMissing = true
		case err != nil:
			return nil, err
		default:
			history = h
		}
	}
	lo := uint64(0)
	for _, h := range history {
		end := h.SwitchPoint.Segment(segSize)
		if end > lo {
			p.pieces = append(p.pieces, piece{h.Timeline, lo, end - 1})
		}
		// Switch points out of order (a damaged file) never make
		// pieces overlap.
		lo = max(lo, end)
	}
	if n := len(history); n > 0 {
		p.tl.Parent = history[n-1].Timeline
		p.tl.Begins = history[n-1].SwitchPoint
	}
	p.pieces = append(p.pieces, piece{t, lo, math.MaxUint64})

	p.low = math.MaxUint64
	for _, b := range backups {
		if pc, ok := p.pieceAt(b.startSeg); ok && pc.tli == b.tli {
			p.backups = append(p.backups, b)
			p.low = min(p.low, b.startSeg)
		}
	}
	if len(p.backups) == 0 {
		return p, nil
	}
	// Runs of archived segments along the path, from the earliest backup.
	var run []part
	for _, pc := range p.pieces {
		for _, r := range ix.Segments(pc.tli).Ranges() {
			a, b := max(r.Lo, pc.lo, p.low), min(r.Hi, pc.hi)
			if a > b {
				continue
			}
			if n := len(run); n > 0 && run[n-1].b+1 != a {
				p.runs = append(p.runs, run)
				run = nil
			}
			run = append(run, part{pc.tli, a, b})
		}
	}
	if len(run) > 0 {
		p.runs = append(p.runs, run)
	}
	return p, nil
}

// pieceAt is the piece of the path holding segment no.
func (p *timelinePlan) pieceAt(no uint64) (piece, bool) {
	for _, pc := range p.pieces {
		if pc.lo <= no && no <= pc.hi {
			return pc, true
		}
	}
	return piece{}, false
}

// decodeJobs merges what every timeline's path needs read, per timeline
// of the segments.
func decodeJobs(plans []*timelinePlan, segSize int64) map[uint32]*decodeJob {
	jobs := map[uint32]*decodeJob{}
	byID := map[uint32]*timelinePlan{}
	for _, p := range plans {
		byID[p.tl.ID] = p
	}
	for _, p := range plans {
		for _, run := range p.runs {
			for _, pt := range run {
				j := jobs[pt.tli]
				if j == nil {
					j = &decodeJob{tli: pt.tli, lo: pt.a, hi: pt.b, endsAt: map[uint64]bool{}}
					jobs[pt.tli] = j
				}
				j.lo, j.hi = min(j.lo, pt.a), max(j.hi, pt.b)
				j.endsAt[pt.b] = true
			}
		}
		for _, b := range p.backups {
			if j := jobs[b.tli]; j != nil && !slices.Contains(j.before, b.finish) {
				j.before = append(j.before, b.finish)
			}
		}
	}
	// A timeline read from its first segment starts with the end of its
	// parent's record stream: read the parent's segment before it first.
	for tli, j := range jobs {
		if p := byID[tli]; p != nil && p.tl.Parent != 0 && j.lo == p.tl.Begins.Segment(segSize) && j.lo > 0 {
			j.prime = &wal.Segment{Timeline: p.tl.Parent, No: j.lo - 1}
		}
	}
	return jobs
}

// span is a stretch of replayable WAL on a path.
type span struct {
	start pg.LSN
	end   snapshot
}

// finish turns a plan and the decoded WAL into the timeline's report.
func (p *timelinePlan) finish(results map[uint32]*decoded, segSize int64) Timeline {
	tl := p.tl
	segStart := func(no uint64) pg.LSN { return pg.LSN(no * uint64(segSize)) }
	name := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	var spans []span
	for i, run := range p.runs {
		if i > 0 {
			prev := p.runs[i-1][len(p.runs[i-1])-1]
			first := run[0]
			lo, hi := prev.b+1, first.a-1
			loPiece, _ := p.pieceAt(lo)
			hiPiece, _ := p.pieceAt(hi)
			tl.Gaps = append(tl.Gaps, Gap{StartSegment: name(loPiece.tli, lo), EndSegment: name(hiPiece.tli, hi),
				At: segStart(lo), Reason: "missing"})
		}
		cur := span{start: segStart(run[0].a)}
		// carry is the record stream at the end of the run's previous
		// part: a part read from another timeline's stream starts where
		// it left off.
		var carry snapshot
		inherit := func(snap snapshot, from pg.LSN) snapshot {
			if snap.end < from {
				return carry // nothing of this part was read before
			}
			if snap.lastXact.IsZero() {
				snap.lastXact = carry.lastXact
			}
			return snap
		}
		for _, pt := range run {
			res := results[pt.tli]
			if res == nil {
				continue
			}
			for i := range res.breaks {
				br := &res.breaks[i]
				if no := br.lsn.Segment(segSize); no < pt.a || no > pt.b || br.lsn < cur.start {
					continue
				}
				cur.end = inherit(br.before, max(segStart(pt.a), cur.start))
				spans = append(spans, cur)
				tl.Gaps = append(tl.Gaps, Gap{StartSegment: name(pt.tli, br.lsn.Segment(segSize)),
					EndSegment: name(pt.tli, br.lsn.Segment(segSize)), At: br.lsn, Reason: br.reason})
				cur = span{start: br.lsn + 1}
				carry = snapshot{}
			}
			carry = inherit(res.segEnd[pt.b], max(segStart(pt.a), cur.start))
		}
		cur.end = carry
		spans = append(spans, cur)
	}
	for _, s := range spans {
		var r Range
		for _, b := range p.backups {
			if b.start < s.start || b.finish > s.end.end || s.end.end == 0 {
				continue
			}
			r.Backups = append(r.Backups, b.name)
			if r.Start.LSN == 0 || b.finish < r.Start.LSN {
				r.Start.LSN = b.finish
				r.Start.Time = b.startTime
				if res := results[b.tli]; res != nil {
					if at := res.xactBefore[b.finish]; !at.IsZero() && at.After(b.startTime) {
						r.Start.Time = at
					}
				}
				r.StartSegment = name(b.tli, b.startSeg)
			}
		}
		if len(r.Backups) == 0 {
			continue
		}
		r.End = Point{LSN: s.end.end, Time: s.end.lastXact}
		endNo := s.end.end.Segment(segSize)
		if uint64(s.end.end)%uint64(segSize) == 0 && endNo > 0 {
			endNo--
		}
		endPiece, _ := p.pieceAt(endNo)
		r.EndSegment = name(endPiece.tli, endNo)
		tl.Ranges = append(tl.Ranges, r)
	}
	// Restore points on the path, each read from the timeline recovery
	// would read its segment from.
	for _, pc := range p.pieces {
		res := results[pc.tli]
		if res == nil || len(p.backups) == 0 {
			continue
		}
		for _, rp := range res.points {
			if no := rp.start.Segment(segSize); no < max(pc.lo, p.low) || no > pc.hi {
				continue
			}
			reach := false
			for _, r := range tl.Ranges {
				if rp.lsn >= r.Start.LSN && rp.lsn <= r.End.LSN {
					reach = true
				}
			}
			tl.RestorePoints = append(tl.RestorePoints, RestorePoint{Name: rp.name, LSN: rp.lsn, Time: rp.at, Reachable: reach})
		}
	}
	sort.SliceStable(tl.RestorePoints, func(i, j int) bool { return tl.RestorePoints[i].LSN < tl.RestorePoints[j].LSN })
	sort.SliceStable(tl.Gaps, func(i, j int) bool { return tl.Gaps[i].At < tl.Gaps[j].At })
	return tl
}

// String names a gap for a one-line report.
func (g Gap) String() string {
	if g.StartSegment == g.EndSegment {
		return fmt.Sprintf("%s at %s: %s", g.StartSegment, g.At, g.Reason)
	}
	return fmt.Sprintf("%s to %s from %s: %s", g.StartSegment, g.EndSegment, g.At, g.Reason)
}

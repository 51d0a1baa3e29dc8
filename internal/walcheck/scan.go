package walcheck

import (
	"log/slog"
	"slices"
	"sort"

	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// scanIntegrity walks back from the segment below current to segment
// number stop, as WAL-G's integrity check does, and returns the runs it
// found, ascending.
//
// The walk stays on a timeline until it reaches a segment where, by the
// current timeline's history, that timeline began; there it continues on
// the parent, unless the segment below also exists on the child (a history
// entry from a restore that never became this cluster's past; WAL-G then
// stays). Missing segments are classified by how far the walk has come:
// the first delayed of them, up to the first archived one, are DELAYED; the
// next uploading steps UPLOADING; the rest LOST.
//
// WAL-G visits one segment at a time; this walks whole runs of the
// index's ranges, so its cost follows the number of gaps and timeline
// switches, not the length of the range.
func scanIntegrity(ix *walindex.Index, current wal.Segment, stop uint64, history []walindex.HistoryRecord,
	uploading, delayed int, log *slog.Logger) []IntegrityRow {
	segSize := ix.SegmentSize()
	// Timeline switches by the segment holding the switch point. Later
	// records win a shared segment, as in WAL-G's map.
	switches := map[uint64]uint32{}
	for _, h := range history {
		switches[h.SwitchPoint.Segment(segSize)] = h.Timeline
	}
	keys := make([]uint64, 0, len(switches))
	for k := range switches {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	c := classifier{delayedLeft: delayed, uploadingLeft: uploading}
	cur := current
	for cur.No > stop {
		if parent, ok := switches[cur.No]; ok {
			next := wal.Segment{Timeline: cur.Timeline, No: cur.No - 1}
			if ix.Has(next) {
				log.Warn("timeline switch is not from this cluster's past, staying on the timeline",
					"segment", next.Name(segSize))
			} else {
				next.Timeline = parent
			}
			c.feed(next.Timeline, next.No, next.No, ix.Has(next))
			cur = next
			continue
		}
		// Down to the next switch below, or to stop, on this timeline.
		low := stop
		if i := sort.Search(len(keys), func(i int) bool { return keys[i] >= cur.No }); i > 0 && keys[i-1] > low {
			low = keys[i-1]
		}
		ix.Segments(cur.Timeline).Runs(low, cur.No-1, func(r walindex.Range, present bool) bool {
			c.feed(cur.Timeline, r.Lo, r.Hi, present)
			return true
		})
		cur.No = low
	}
	rows := make([]IntegrityRow, len(c.runs))
	for i, r := range c.runs {
		// c.runs is in walk order (descending); the output ascends.
		rows[len(rows)-1-i] = IntegrityRow{
			TimelineID:    r.tli,
			StartSegment:  wal.Segment{Timeline: r.tli, No: r.lo}.Name(segSize),
			EndSegment:    wal.Segment{Timeline: r.tli, No: r.hi}.Name(segSize),
			SegmentsCount: r.hi - r.lo + 1,
			Status:        r.status,
		}
	}
	if len(rows) == 0 {
		return nil
	}
	return rows
}

type run struct {
	tli    uint32
	lo, hi uint64
	status SegmentStatus
}

// classifier gives walked segments their status by the scan phase they
// fall in, and merges neighbours of one timeline and status into runs.
type classifier struct {
	delayedLeft, uploadingLeft int
	// phase 0: before the first archived segment, within delayedLeft
	// steps; 1: the next uploadingLeft steps; 2: the rest.
	phase int
	runs  []run // walk order: descending segment numbers
}

// feed takes segments hi down to lo of timeline tli, all archived or all
// missing.
func (c *classifier) feed(tli uint32, lo, hi uint64, present bool) {
	left := hi - lo + 1
	for left > 0 {
		var n uint64
		var st SegmentStatus
		switch c.phase {
		case 0:
			if c.delayedLeft <= 0 {
				c.phase = 1
				continue
			}
			if present {
				// The first archived segment ends the phase.
				n, st = 1, Found
				c.phase = 1
			} else {
				n, st = min(left, uint64(c.delayedLeft)), Delayed
				c.delayedLeft -= int(n)
			}
		case 1:
			if c.uploadingLeft <= 0 {
				c.phase = 2
				continue
			}
			n, st = min(left, uint64(c.uploadingLeft)), Uploading
			c.uploadingLeft -= int(n)
			if present {
				st = Found
			}
		default:
			n, st = left, Lost
			if present {
				st = Found
			}
		}
		c.add(tli, hi-n+1, hi, st)
		hi -= n
		left -= n
	}
}

func (c *classifier) add(tli uint32, lo, hi uint64, st SegmentStatus) {
	if k := len(c.runs); k > 0 {
		last := &c.runs[k-1]
		if last.tli == tli && last.status == st && last.lo == hi+1 {
			last.lo = lo
			return
		}
	}
	c.runs = append(c.runs, run{tli, lo, hi, st})
}

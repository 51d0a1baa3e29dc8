package restorewindow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
	"github.com/tusk-pg/tusk/internal/walrecord"
)

// snapshot is the state of the record stream at a point: the end of the
// last complete record and the time of the last commit or abort before
// it (zero when none was read).
type snapshot struct {
	end      pg.LSN
	lastXact time.Time
}

// breakAt is where decoded WAL stops being replayable: damage, or an
// object that cannot be read.
type breakAt struct {
	lsn    pg.LSN
	reason string
	before snapshot // the stream just before it
}

type restorePoint struct {
	name string
	// start is where the record starts, lsn where it ends: the position
	// pg_create_restore_point returns and recovery stops at.
	start, lsn pg.LSN
	at         time.Time
}

// decoded is what reading one timeline's segments found.
type decoded struct {
	// segEnd holds the stream's state after the asked segments.
	segEnd map[uint64]snapshot
	// xactBefore answers, for each asked LSN, the time of the last
	// commit or abort that starts before it.
	xactBefore map[pg.LSN]time.Time
	breaks     []breakAt
	points     []restorePoint
}

// decodeJob says which segments of a timeline to read and what to note.
type decodeJob struct {
	tli    uint32
	lo, hi uint64
	// prime: the segment before lo on the parent timeline, read first
	// (discarding its records) so a record continued into lo is whole.
	prime *wal.Segment
	// endsAt: segments after which to note the state; before: LSNs
	// before which to note the last commit time.
	endsAt map[uint64]bool
	before []pg.LSN
}

// decodeTimeline streams the job's archived segments through a record
// decoder, one segment at a time.
func decodeTimeline(ctx context.Context, ix *walindex.Index, o walindex.Opener, job decodeJob, segSize int64) (*decoded, error) {
	out := &decoded{segEnd: map[uint64]snapshot{}, xactBefore: map[pg.LSN]time.Time{}}
	before := slices.Clone(job.before)
	slices.Sort(before)
	var cur snapshot
	priming := false
	var recErr error
	d, err := walrecord.NewDecoder(walrecord.Options{
		SegmentSize: segSize,
		OnRecord: func(r *walrecord.Record) error {
			if priming {
				return nil
			}
			for len(before) > 0 && r.LSN >= before[0] {
				out.xactBefore[before[0]] = cur.lastXact
				before = before[1:]
			}
			if _, at, ok, err := r.XactTime(); ok {
				if err != nil {
					recErr = err
				} else {
					cur.lastXact = at
				}
			}
			if name, at, ok, err := r.RestorePoint(); ok {
				if err != nil {
					recErr = err
				} else {
					out.points = append(out.points, restorePoint{name: name, start: r.LSN, lsn: r.End, at: at})
				}
			}
			cur.end = r.End
			return nil
		},
		OnBreak: func(at pg.LSN, reason error) {
			if priming {
				return
			}
			out.breaks = append(out.breaks, breakAt{lsn: at, reason: reason.Error(), before: cur})
		},
	})
	if err != nil {
		return nil, err
	}
	read := func(seg wal.Segment) error {
		name := seg.Name(segSize)
		rc, key, err := o.Open(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			d.Gap()
			if !priming {
				out.breaks = append(out.breaks, breakAt{lsn: pg.LSN(seg.No * uint64(segSize)), reason: name + ": listed but gone", before: cur})
			}
			return nil
		}
		if err == nil {
			err = d.Segment(seg.No, rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			// An object that does not decode breaks the WAL like damage.
			if key == "" {
				key = wal.Folder + name
			}
			d.Gap()
			if !priming {
				out.breaks = append(out.breaks, breakAt{lsn: pg.LSN(seg.No * uint64(segSize)), reason: fmt.Sprintf("%s: %v", key, err), before: cur})
			}
		}
		return nil
	}
	if job.prime != nil && ix.Has(*job.prime) {
		priming = true
		if err := read(*job.prime); err != nil {
			return nil, err
		}
		priming = false
	}
	segs := ix.Segments(job.tli)
	for _, r := range segs.Ranges() {
		if r.Hi < job.lo || r.Lo > job.hi {
			continue
		}
		// Segment itself starts afresh after a missing segment.
		for no := max(r.Lo, job.lo); no <= min(r.Hi, job.hi); no++ {
			if err := read(wal.Segment{Timeline: job.tli, No: no}); err != nil {
				return nil, err
			}
			if recErr != nil {
				return nil, recErr
			}
			if job.endsAt[no] {
				out.segEnd[no] = cur
			}
		}
	}
	for _, q := range before {
		out.xactBefore[q] = cur.lastXact
	}
	return out, nil
}

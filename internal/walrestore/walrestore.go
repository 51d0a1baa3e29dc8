// Package walrestore implements wal-restore as WAL-G does it: before
// pg_rewind turns a former primary (the target) back into a replica of the
// cluster that replaced it (the source), put into the source's pg_wal the
// archived WAL it no longer has between the point where the two clusters'
// timelines diverged and its own end, so that pg_rewind copies it to the
// target and the target can replay it.
//
// Both clusters are local and stopped; only their pg_control, their local
// timeline history files and the names in the source's pg_wal are read.
// Memory: one file name per missing segment, plus one wal-fetch at a time
// (wal.Restorer's bound).
package walrestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// Cluster is what wal-restore reads of one stopped data directory.
type Cluster struct {
	Dir     string
	WALDir  string // pg_wal (pg_xlog before PostgreSQL 10)
	Control pgdata.Control
	// History is the history of the cluster's current timeline (the
	// latest checkpoint's), empty on timeline 1.
	History []walindex.HistoryRecord
	// Segments are the WAL segment files present in WALDir.
	Segments map[wal.Segment]bool
}

// Inspect reads the data directory dir.
func Inspect(dir string, segSize int64) (*Cluster, error) {
	c := &Cluster{Dir: dir, Segments: map[wal.Segment]bool{}}
	b, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if c.Control, err = pgdata.ParseControl(b); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "global", "pg_control"), err)
	}
	for _, d := range []string{"pg_wal", "pg_xlog"} {
		if st, err := os.Stat(filepath.Join(dir, d)); err == nil && st.IsDir() {
			c.WALDir = filepath.Join(dir, d)
			break
		}
	}
	if c.WALDir == "" {
		return nil, fmt.Errorf("%s: no pg_wal directory", dir)
	}
	if tli := c.Control.Timeline; tli > 1 {
		path := filepath.Join(c.WALDir, walindex.HistoryFile(tli))
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("history of timeline %d: %w", tli, err)
		}
		c.History, err = walindex.ParseHistoryOf(f, tli)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	entries, err := os.ReadDir(c.WALDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if seg, err := wal.ParseSegment(e.Name(), segSize); err == nil {
			c.Segments[seg] = true
		}
	}
	return c, nil
}

// Point is a position on a timeline.
type Point struct {
	Timeline uint32
	LSN      pg.LSN
}

// LastCommon is where the histories of target and source part, as WAL-G's
// FindLastCommonPoint decides it: the first switch point the two histories
// do not share (the earlier of the two), on the target's timeline there;
// with one cluster still on timeline 1, the other's first switch point.
func LastCommon(target, source []walindex.HistoryRecord) (Point, error) {
	p := Point{Timeline: 1, LSN: 1}
	if len(target) == len(source) {
		return p, errors.New("the two clusters are on the same timeline")
	}
	if len(target) == 0 {
		p = Point{Timeline: source[0].Timeline, LSN: source[0].SwitchPoint}
	}
	if len(source) == 0 {
		p = Point{Timeline: target[0].Timeline, LSN: target[0].SwitchPoint}
	}
	for i, t := range target {
		if i >= len(source) {
			break
		}
		if t.SwitchPoint == source[i].SwitchPoint {
			p = Point{Timeline: t.Timeline, LSN: t.SwitchPoint}
			continue
		}
		p = Point{Timeline: t.Timeline, LSN: min(t.SwitchPoint, source[i].SwitchPoint)}
		break
	}
	return p, nil
}

// Missing lists the source's WAL segments from its end back to the last
// common point, newest first, that its pg_wal lacks: on each of its
// timelines from the segment where that timeline began.
func Missing(target, source *Cluster, segSize int64) ([]string, error) {
	if target.Control.SystemIdentifier != source.Control.SystemIdentifier {
		return nil, fmt.Errorf("%s and %s are different clusters (system identifiers %d and %d)",
			target.Dir, source.Dir, target.Control.SystemIdentifier, source.Control.SystemIdentifier)
	}
	if target.Control.Timeline == source.Control.Timeline {
		return nil, fmt.Errorf("%s and %s have their latest checkpoint on the same timeline %d", target.Dir, source.Dir, target.Control.Timeline)
	}
	common, err := LastCommon(target.History, source.History)
	if err != nil {
		return nil, err
	}
	// The source's timelines with the segment each began in, oldest first.
	type span struct {
		tli   uint32
		begin uint64
	}
	spans := make([]span, 0, len(source.History)+1)
	begin := uint64(1)
	for _, rec := range source.History {
		spans = append(spans, span{rec.Timeline, begin})
		begin = rec.SwitchPoint.Segment(segSize)
	}
	current := source.Control.Timeline
	spans = append(spans, span{current, begin})

	// The end: the newest segment of the current timeline present, at
	// least the one holding the latest checkpoint.
	end := pg.LSN(source.Control.CheckPoint).Segment(segSize)
	for seg := range source.Segments {
		if seg.Timeline == current && seg.No > end {
			end = seg.No
		}
	}
	last := common.LSN.Segment(segSize)
	var names []string
	seg := end
	for i := len(spans) - 1; i >= 0 && spans[i].tli >= common.Timeline; i-- {
		for ; seg >= spans[i].begin; seg-- {
			s := wal.Segment{Timeline: spans[i].tli, No: seg}
			if !source.Segments[s] {
				names = append(names, s.Name(segSize))
			}
			if seg == last || seg == 0 {
				return names, nil
			}
		}
	}
	return names, nil
}

// Fetcher writes an archived WAL file to a path (wal.Restorer).
type Fetcher interface {
	Fetch(ctx context.Context, name, dest string) error
}

// Restore fetches each named file into dir. A file that is not archived is
// reported and skipped, as WAL-G does; any other failure stops it. It
// returns the names fetched and those not archived.
func Restore(ctx context.Context, f Fetcher, dir string, names []string) (fetched, absent []string, err error) {
	for _, name := range names {
		err := f.Fetch(ctx, name, filepath.Join(dir, name))
		if errors.Is(err, storage.ErrNotFound) {
			absent = append(absent, name)
			continue
		}
		if err != nil {
			return fetched, absent, err
		}
		fetched = append(fetched, name)
	}
	return fetched, absent, nil
}

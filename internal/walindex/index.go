// Package walindex reads what archived WAL a repository holds, for the
// commands that report on it or delete from it (wal-show, wal-verify,
// delete): it classifies the object names in wal_005/ as WAL-G does,
// streams the listing into per-timeline sets of segment ranges, and parses
// timeline history files.
//
// Memory: the listing is never held whole. An Index keeps, per timeline,
// one range per unbroken run of archived segments (so a repository of any
// length without gaps costs a few words per timeline), plus one storage key
// per timeline history file. A parsed history file is bounded by
// maxHistorySize.
package walindex

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// Kind says what an object in wal_005/ holds.
type Kind int

const (
	// Other is anything PostgreSQL does not archive (WAL-G's metadata
	// sidecars, temporary names, foreign files).
	Other Kind = iota
	// Segment is a whole WAL segment, 000000010000000000000002.
	Segment
	// Partial is the last, incomplete segment of a timeline,
	// 000000010000000000000002.partial.
	Partial
	// BackupHistory is a backup history file,
	// 000000010000000000000002.00000028.backup.
	BackupHistory
	// History is a timeline history file, 00000002.history.
	History
)

// Name is a parsed object name.
type Name struct {
	Kind Kind
	// File is PostgreSQL's name for the file: the object name without its
	// compression extension.
	File string
	// Timeline is the file's timeline (every kind but Other); Segment is
	// the segment it belongs to (Segment, Partial, BackupHistory).
	Timeline uint32
	Segment  uint64
}

// Seg is the named segment.
func (n Name) Seg() wal.Segment { return wal.Segment{Timeline: n.Timeline, No: n.Segment} }

// ParseName classifies an object name (without the wal_005/ folder) for
// segments of segSize bytes. WAL-G strips one extension (the compression
// method's, or none for uncompressed objects) and parses the rest; a name
// that is already a PostgreSQL file name is taken as it is, so an
// uncompressed 000000010000000000000002.partial is a partial segment, not
// segment 2 with a ".partial" extension.
func ParseName(name string, segSize int64) Name {
	if n, ok := parseFile(name, segSize); ok {
		return n
	}
	if ext := path.Ext(name); ext != "" {
		if n, ok := parseFile(strings.TrimSuffix(name, ext), segSize); ok {
			return n
		}
	}
	return Name{Kind: Other}
}

func parseFile(f string, segSize int64) (Name, bool) {
	if !wal.IsArchivableName(f) {
		return Name{}, false
	}
	if tli, ok := strings.CutSuffix(f, ".history"); ok {
		t, err := strconv.ParseUint(tli, 16, 32)
		if err != nil {
			return Name{}, false
		}
		return Name{Kind: History, File: f, Timeline: uint32(t)}, true
	}
	s, err := wal.ParseSegment(f[:24], segSize)
	if err != nil {
		return Name{}, false // segment part out of range for this size
	}
	n := Name{Kind: Segment, File: f, Timeline: s.Timeline, Segment: s.No}
	switch {
	case strings.HasSuffix(f, ".partial"):
		n.Kind = Partial
	case strings.HasSuffix(f, ".backup"):
		n.Kind = BackupHistory
	}
	return n, true
}

// Walk streams the objects directly in wal_005/ and calls fn with each and
// its parsed name. Like WAL-G's folder listing it does not descend into
// sub-folders. An error from fn stops the walk and is returned.
func Walk(ctx context.Context, store storage.Storage, segSize int64, fn func(storage.ObjectInfo, Name) error) error {
	err := store.List(ctx, wal.Folder, func(o storage.ObjectInfo) error {
		name, ok := strings.CutPrefix(o.Key, wal.Folder)
		if !ok || name == "" || strings.Contains(name, "/") {
			return nil
		}
		return fn(o, ParseName(name, segSize))
	})
	if err != nil {
		return fmt.Errorf("list %s/%s: %w", store, wal.Folder, err)
	}
	return nil
}

// Index is what archived WAL a repository holds: the segments of each
// timeline as ranges, and which timelines have a history file.
type Index struct {
	segSize   int64
	segments  map[uint32]*RangeSet
	histories map[uint32]string // timeline → object key
}

// Build lists wal_005/ once, streaming, into an Index.
func Build(ctx context.Context, store storage.Storage, segSize int64) (*Index, error) {
	ix := &Index{segSize: segSize, segments: map[uint32]*RangeSet{}, histories: map[uint32]string{}}
	err := Walk(ctx, store, segSize, func(o storage.ObjectInfo, n Name) error {
		ix.add(o.Key, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ix, nil
}

func (ix *Index) add(key string, n Name) {
	switch n.Kind {
	case Segment:
		rs := ix.segments[n.Timeline]
		if rs == nil {
			rs = &RangeSet{}
			ix.segments[n.Timeline] = rs
		}
		rs.Add(n.Segment)
	case History:
		ix.histories[n.Timeline] = key
	}
}

// SegmentSize is the segment size the names were parsed with.
func (ix *Index) SegmentSize() int64 { return ix.segSize }

// Timelines lists the timelines that have at least one segment, ascending.
func (ix *Index) Timelines() []uint32 {
	out := make([]uint32, 0, len(ix.segments))
	for t := range ix.segments {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Segments returns a timeline's archived segments (an empty set when it
// has none). The set is the index's own: callers must not modify it.
func (ix *Index) Segments(tli uint32) *RangeSet {
	if rs := ix.segments[tli]; rs != nil {
		return rs
	}
	return &RangeSet{}
}

// Has reports whether segment s is archived.
func (ix *Index) Has(s wal.Segment) bool {
	rs := ix.segments[s.Timeline]
	return rs != nil && rs.Contains(s.No)
}

// HasHistory reports whether timeline tli's history file is archived.
func (ix *Index) HasHistory(tli uint32) bool {
	_, ok := ix.histories[tli]
	return ok
}

// HistoryTimelines lists the timelines whose history file is archived,
// ascending.
func (ix *Index) HistoryTimelines() []uint32 {
	out := make([]uint32, 0, len(ix.histories))
	for t := range ix.histories {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// HighestTimeline is the highest timeline of an archived segment or
// history file, 0 when there is neither. (WAL-G counts a history file only
// when it has a compression extension; an uncompressed one counts here too,
// as it marks the same timeline switch.)
func (ix *Index) HighestTimeline() uint32 {
	var hi uint32
	for t := range ix.segments {
		hi = max(hi, t)
	}
	for t := range ix.histories {
		hi = max(hi, t)
	}
	return hi
}

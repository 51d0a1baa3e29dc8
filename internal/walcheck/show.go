// Package walcheck reports on a repository's archived WAL as WAL-G's
// wal-show and wal-verify do: timelines with their segment ranges, gaps,
// parents and backups; the integrity of the WAL a restore of the earliest
// backup needs; whether the cluster is on the newest timeline.
//
// It works on a walindex.Index, so memory follows the number of timelines,
// gaps and backups, not the number of archived segments. The one exception
// is what the output itself must list: wal-show --detailed-json names every
// missing segment, and those names are streamed to the writer, not held.
package walcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// Timeline statuses of wal-show.
const (
	StatusOK           = "OK"
	StatusLostSegments = "LOST_SEGMENTS"
)

// Timeline is one row of wal-show: the archived segments of a timeline.
type Timeline struct {
	ID uint32
	// ParentID and SwitchPoint come from the last line of the timeline's
	// history file: the timeline it branched from, and where. Both are 0
	// without a history file (timeline 1, or a lost history file).
	ParentID    uint32
	SwitchPoint pg.LSN
	Segments    *walindex.RangeSet
	// Backups are those whose WAL from start to finish lies within the
	// timeline's first and last segment, newest first.
	Backups []backup.Detail
}

// Status is LOST_SEGMENTS when segments are missing between the first and
// the last archived one.
func (t Timeline) Status() string {
	if len(t.Segments.Ranges()) > 1 {
		return StatusLostSegments
	}
	return StatusOK
}

// RangeSize is the number of segments from the first to the last.
func (t Timeline) RangeSize() uint64 { return t.Segments.Max() - t.Segments.Min() + 1 }

// Show builds wal-show's rows, one per timeline with archived segments,
// ascending. History files are read through o; a missing one leaves the
// parent unknown (0), an unreadable one is an error. backups (newest first,
// as LoadBackups returns them) are assigned to timelines; nil skips that.
func Show(ctx context.Context, ix *walindex.Index, o walindex.Opener, backups []backup.Detail) ([]Timeline, error) {
	segSize := ix.SegmentSize()
	refs, err := backupRefs(backups, segSize)
	if err != nil {
		return nil, err
	}
	var out []Timeline
	for _, id := range ix.Timelines() {
		tl := Timeline{ID: id, Segments: ix.Segments(id)}
		if ix.HasHistory(id) {
			recs, err := walindex.LoadHistory(ctx, o, id)
			if err != nil && !errors.Is(err, walindex.ErrNoHistory) {
				return nil, err
			}
			if n := len(recs); n > 0 {
				tl.ParentID, tl.SwitchPoint = recs[n-1].Timeline, recs[n-1].SwitchPoint
			}
		}
		lo, hi := tl.Segments.Min(), tl.Segments.Max()
		for i, r := range refs {
			// WAL-G compares the segment names of the backup's start and
			// finish LSNs with the timeline's first and last.
			start, finish := pg.LSN(r.meta.StartLSN).Segment(segSize), pg.LSN(r.meta.FinishLSN).Segment(segSize)
			if r.seg.Timeline == id && start >= lo && finish <= hi {
				tl.Backups = append(tl.Backups, backups[i])
			}
		}
		out = append(out, tl)
	}
	return out, nil
}

// LoadBackups lists the backups with their metadata.json, newest sentinel
// first (WAL-G's order for wal-show and wal-verify).
func LoadBackups(ctx context.Context, store storage.Storage) ([]backup.Detail, error) {
	infos, err := backup.List(ctx, store)
	if err != nil {
		return nil, err
	}
	out := make([]backup.Detail, 0, len(infos))
	for i := len(infos) - 1; i >= 0; i-- {
		m, err := backup.FetchMetadata(ctx, store, infos[i].Name)
		if err != nil {
			return nil, err
		}
		out = append(out, backup.Detail{Info: infos[i], Meta: *m})
	}
	return out, nil
}

// backupRef is what the checks need of a backup: its first WAL segment
// (from its name) and its metadata.
type backupRef struct {
	name string
	seg  wal.Segment
	meta backup.Metadata
}

func backupRefs(ds []backup.Detail, segSize int64) ([]backupRef, error) {
	out := make([]backupRef, len(ds))
	for i, d := range ds {
		s, err := wal.ParseSegment(d.WalFileName, segSize)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", d.Name, err)
		}
		out[i] = backupRef{name: d.Name, seg: s, meta: d.Meta}
	}
	return out, nil
}

// WriteShowTable prints wal-show's table (WAL-G draws it with go-pretty's
// default style; numeric columns align right).
func WriteShowTable(w io.Writer, tls []Timeline, segSize int64, withBackups bool) error {
	tw := table.NewWriter()
	header := table.Row{"TLI", "Parent TLI", "Switchpoint LSN", "Start segment",
		"End segment", "Segment range", "Segments count", "Status"}
	if withBackups {
		header = append(header, "Backups count")
	}
	tw.AppendHeader(header)
	for _, tl := range tls {
		row := table.Row{tl.ID, tl.ParentID, tl.SwitchPoint, segName(tl.ID, tl.Segments.Min(), segSize),
			segName(tl.ID, tl.Segments.Max(), segSize), tl.RangeSize(), tl.Segments.Count(), tl.Status()}
		if withBackups {
			row = append(row, len(tl.Backups))
		}
		tw.AppendRow(row)
	}
	_, err := io.WriteString(w, tw.Render()+"\n")
	return err
}

// WriteShowJSON prints wal-show --detailed-json: WAL-G's TimelineInfo
// array on one line, without a trailing newline. Missing segments are
// listed from the highest down, as WAL-G finds them, and streamed.
func WriteShowJSON(w io.Writer, tls []Timeline, segSize int64) error {
	bw := bufio.NewWriter(w)
	bw.WriteByte('[')
	for i, tl := range tls {
		if i > 0 {
			bw.WriteByte(',')
		}
		fmt.Fprintf(bw, `{"id":%d,"parent_id":%d,"switch_point_lsn":%d,"start_segment":"%s","end_segment":"%s","segments_count":%d,"missing_segments":[`,
			tl.ID, tl.ParentID, uint64(tl.SwitchPoint), segName(tl.ID, tl.Segments.Min(), segSize),
			segName(tl.ID, tl.Segments.Max(), segSize), tl.Segments.Count())
		gaps := tl.Segments.Gaps()
		first := true
		for g := len(gaps) - 1; g >= 0; g-- {
			for k := range gaps[g].Len() {
				if !first {
					bw.WriteByte(',')
				}
				first = false
				bw.WriteString(`"` + segName(tl.ID, gaps[g].Hi-k, segSize) + `"`)
			}
		}
		bw.WriteByte(']')
		if len(tl.Backups) > 0 {
			// Each backup as backup-list --detail --json prints it.
			var b bytes.Buffer
			if err := backup.WriteDetails(&b, tl.Backups, backup.ListFormat{JSON: true}); err != nil {
				return err
			}
			bw.WriteString(`,"backups":`)
			bw.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
		}
		fmt.Fprintf(bw, `,"segment_range_size":%d,"status":%s}`, tl.RangeSize(), strconv.Quote(tl.Status()))
	}
	bw.WriteByte(']')
	return bw.Flush()
}

func segName(tli uint32, no uint64, segSize int64) string {
	return wal.Segment{Timeline: tli, No: no}.Name(segSize)
}

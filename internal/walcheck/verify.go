package walcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// Check is one of wal-verify's checks.
type Check int

const (
	CheckIntegrity Check = iota + 1
	CheckTimeline
)

func (c Check) String() string {
	switch c {
	case CheckIntegrity:
		return "integrity"
	case CheckTimeline:
		return "timeline"
	}
	return fmt.Sprintf("check(%d)", int(c))
}

// ParseCheck resolves a check's command-line name.
func ParseCheck(s string) (Check, error) {
	for _, c := range []Check{CheckIntegrity, CheckTimeline} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("invalid check specified: %s (available: integrity, timeline)", s)
}

// Status is a check's verdict.
type Status int

const (
	OK Status = iota + 1
	Warning
	Failure
)

func (s Status) String() string {
	return [...]string{"", "OK", "WARNING", "FAILURE"}[s]
}

func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// SegmentStatus is what the integrity check found for a run of segments.
type SegmentStatus int

const (
	// Lost: missing, and far enough behind the current segment that it
	// will not arrive.
	Lost SegmentStatus = iota + 1
	// Uploading: missing within WALG_UPLOAD_CONCURRENCY segments of the
	// newest archived one, so possibly still being archived.
	Uploading
	// Delayed: missing among the first WALG_INTEGRITY_MAX_DELAYED_WALS
	// segments below the current one, before any archived segment.
	Delayed
	// Found: archived.
	Found
)

func (s SegmentStatus) String() string {
	return [...]string{"", "MISSING_LOST", "MISSING_UPLOADING", "MISSING_DELAYED", "FOUND"}[s]
}

func (s SegmentStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// IntegrityRow is a run of consecutive segments of one timeline with one
// status.
type IntegrityRow struct {
	TimelineID    uint32        `json:"timeline_id"`
	StartSegment  string        `json:"start_segment"`
	EndSegment    string        `json:"end_segment"`
	SegmentsCount uint64        `json:"segments_count"`
	Status        SegmentStatus `json:"status"`
}

// IntegrityResult is the integrity check's verdict and rows, ascending.
// Details is nil (JSON null, as WAL-G prints it) when nothing was scanned.
type IntegrityResult struct {
	Status  Status         `json:"status"`
	Details []IntegrityRow `json:"details"`
}

// TimelineResult is the timeline check's verdict.
type TimelineResult struct {
	Status  Status `json:"status"`
	Details struct {
		CurrentTimelineID        uint32 `json:"current_timeline_id"`
		HighestStorageTimelineID uint32 `json:"highest_storage_timeline_id"`
	} `json:"details"`
}

// Report holds the results of the checks that were run.
type Report struct {
	Integrity *IntegrityResult `json:"integrity,omitempty"`
	Timeline  *TimelineResult  `json:"timeline,omitempty"`
}

// VerifyOptions say what wal-verify checks and from where.
type VerifyOptions struct {
	Checks []Check
	// Current is the cluster's current segment: the one holding the LSN
	// before the current WAL position. The integrity scan starts below it.
	Current wal.Segment
	// BackupName, when set, starts the integrity range at that backup
	// instead of the earliest eligible one.
	BackupName string
	// UploadingRange is WALG_UPLOAD_CONCURRENCY, DelayedRange
	// WALG_INTEGRITY_MAX_DELAYED_WALS.
	UploadingRange, DelayedRange int
	Log                          *slog.Logger
}

// Verify runs the checks against an index of the repository's WAL.
// History files are read through o, backups from store.
func Verify(ctx context.Context, store storage.Storage, ix *walindex.Index, o walindex.Opener, opts VerifyOptions) (Report, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var r Report
	for _, c := range opts.Checks {
		switch c {
		case CheckTimeline:
			res := timelineCheck(opts.Current.Timeline, ix.HighestTimeline())
			r.Timeline = &res
		case CheckIntegrity:
			res, err := integrityCheck(ctx, store, ix, o, opts, log)
			if err != nil {
				return Report{}, fmt.Errorf("integrity check: %w", err)
			}
			r.Integrity = &res
		default:
			return Report{}, fmt.Errorf("unknown wal-verify check %v", c)
		}
	}
	return r, nil
}

// timelineCheck is OK when the cluster is on the highest timeline found in
// storage, FAILURE when not, WARNING when storage has no timeline at all.
func timelineCheck(current, highest uint32) TimelineResult {
	var r TimelineResult
	r.Details.CurrentTimelineID, r.Details.HighestStorageTimelineID = current, highest
	switch {
	case highest == 0:
		r.Status = Warning
	case current == highest:
		r.Status = OK
	default:
		r.Status = Failure
	}
	return r
}

func integrityCheck(ctx context.Context, store storage.Storage, ix *walindex.Index, o walindex.Opener, opts VerifyOptions, log *slog.Logger) (IntegrityResult, error) {
	var history []walindex.HistoryRecord
	if ix.HasHistory(opts.Current.Timeline) {
		h, err := walindex.LoadHistory(ctx, o, opts.Current.Timeline)
		if err != nil && !errors.Is(err, walindex.ErrNoHistory) {
			return IntegrityResult{}, fmt.Errorf("timeline history: %w", err)
		}
		history = h
	}
	segSize := ix.SegmentSize()
	ends := switchEnds(history, segSize)
	var stop uint64
	noBackups := false
	if opts.BackupName != "" {
		ref, err := namedBackup(ctx, store, opts.BackupName, segSize)
		if err != nil {
			return IntegrityResult{}, err
		}
		if !backupEligible(ref, opts.Current.Timeline, ends, true, log) {
			return IntegrityResult{}, fmt.Errorf("backup %s cannot start the range: its first segment %s is not in timeline %d's history",
				ref.name, ref.seg.Name(segSize), opts.Current.Timeline)
		}
		log.Info("Detected correct backup with specified name", "backup", ref.name)
		stop = ref.seg.No
	} else {
		ref, err := earliestBackup(ctx, store, opts.Current.Timeline, ends, segSize, log)
		if err != nil {
			// WAL-G scans everything then, down to segment 1.
			log.Warn("cannot find the earliest eligible backup; scanning down to segment 1", "error", err)
			stop, noBackups = 1, true
		} else {
			log.Info("Detected earliest available backup", "backup", ref.name)
			stop = ref.seg.No
		}
	}
	rows := scanIntegrity(ix, opts.Current, stop, history, opts.UploadingRange, opts.DelayedRange, log)
	return IntegrityResult{Status: integrityStatus(rows, noBackups), Details: rows}, nil
}

// integrityStatus is FAILURE for a lost run (unless no backup bounds the
// range and nothing was found below it yet: then the start of the scan is
// a guess, and only a WARNING), WARNING for runs that may still arrive.
func integrityStatus(rows []IntegrityRow, noBackups bool) Status {
	st := OK
	found := false
	for _, r := range rows {
		switch r.Status {
		case Found:
			found = true
		case Lost:
			if !noBackups || found {
				return Failure
			}
			st = Warning
		case Uploading, Delayed:
			st = Warning
		}
	}
	return st
}

// errNoEligibleBackup: no backup can start the integrity range.
var errNoEligibleBackup = errors.New("could not find any correct backup in storage")

// earliestBackup picks the eligible backup with the lowest first segment.
func earliestBackup(ctx context.Context, store storage.Storage, current uint32, ends map[uint32]uint64, segSize int64, log *slog.Logger) (backupRef, error) {
	ds, err := LoadBackups(ctx, store)
	if err != nil {
		return backupRef{}, err
	}
	if len(ds) == 0 {
		return backupRef{}, backup.ErrNoBackups
	}
	refs, err := backupRefs(ds, segSize)
	if err != nil {
		return backupRef{}, err
	}
	var best *backupRef
	for i := range refs {
		if !backupEligible(refs[i], current, ends, false, log) {
			continue
		}
		if best == nil || refs[i].seg.No < best.seg.No {
			best = &refs[i]
		}
	}
	if best == nil {
		return backupRef{}, errNoEligibleBackup
	}
	return *best, nil
}

// namedBackup finds --backup-name among the listed backups (the exact
// name; LATEST is not resolved, as in WAL-G).
func namedBackup(ctx context.Context, store storage.Storage, name string, segSize int64) (backupRef, error) {
	infos, err := backup.List(ctx, store)
	if err != nil {
		return backupRef{}, err
	}
	i := slices.IndexFunc(infos, func(b backup.Info) bool { return b.Name == name })
	if i < 0 {
		return backupRef{}, fmt.Errorf("backup %q not found in %s: %w", name, store, backup.ErrBackupNotFound)
	}
	m, err := backup.FetchMetadata(ctx, store, name)
	if err != nil {
		return backupRef{}, err
	}
	refs, err := backupRefs([]backup.Detail{{Info: infos[i], Meta: *m}}, segSize)
	if err != nil {
		return backupRef{}, err
	}
	return refs[0], nil
}

// switchEnds maps each ancestor timeline in a history to the segment where
// it ended.
func switchEnds(history []walindex.HistoryRecord, segSize int64) map[uint32]uint64 {
	m := make(map[uint32]uint64, len(history))
	for _, h := range history {
		m[h.Timeline] = h.SwitchPoint.Segment(segSize)
	}
	return m
}

// backupEligible is WAL-G's test of whether a backup can start the
// integrity range: not permanent (unless named), and, when the current
// timeline's history is known (ends not empty), taken on the current
// timeline or on an ancestor before it ended, and not before its own
// timeline began.
func backupEligible(b backupRef, current uint32, ends map[uint32]uint64, allowPermanent bool, log *slog.Logger) bool {
	if b.meta.IsPermanent && !allowPermanent {
		log.Warn("backup is permanent: not eligible to start the integrity range", "backup", b.name)
		return false
	}
	if len(ends) == 0 {
		return true
	}
	if b.seg.Timeline > 1 {
		if began, ok := ends[b.seg.Timeline-1]; ok && b.seg.No < began {
			log.Warn("backup starts before its timeline began", "backup", b.name)
			return false
		}
	}
	if b.seg.Timeline == current {
		return true
	}
	ended, ok := ends[b.seg.Timeline]
	if !ok {
		log.Warn("backup timeline is neither current nor in the current timeline's history", "backup", b.name, "timeline", b.seg.Timeline)
		return false
	}
	if b.seg.No >= ended {
		log.Warn("backup starts after its timeline ended", "backup", b.name)
		return false
	}
	return true
}

// WriteVerify prints wal-verify's plain output: per check, its status and
// details (the integrity runs as a go-pretty table).
func WriteVerify(w io.Writer, r Report) error {
	var b strings.Builder
	head := func(c Check, s Status) {
		fmt.Fprintf(&b, "[wal-verify] %s check status: %s\n[wal-verify] %s check details:\n", c, s, c)
	}
	if r.Integrity != nil {
		head(CheckIntegrity, r.Integrity.Status)
		tw := table.NewWriter()
		tw.AppendHeader(table.Row{"TLI", "Start", "End", "Segments count", "Status"})
		for _, row := range r.Integrity.Details {
			tw.AppendRow(table.Row{row.TimelineID, row.StartSegment, row.EndSegment, row.SegmentsCount, row.Status})
		}
		b.WriteString(tw.Render() + "\n")
	}
	if r.Timeline != nil {
		head(CheckTimeline, r.Timeline.Status)
		fmt.Fprintf(&b, "Highest timeline found in storage: %d\nCurrent cluster timeline: %d\n",
			r.Timeline.Details.HighestStorageTimelineID, r.Timeline.Details.CurrentTimelineID)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteVerifyJSON prints wal-verify --json: one line, no trailing newline.
func WriteVerifyJSON(w io.Writer, r Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

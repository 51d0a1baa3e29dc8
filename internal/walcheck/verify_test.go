package walcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// repo is a synthetic repository on file storage: segments and history
// files stored uncompressed (wal.Restorer reads them as WAL-G's "none").
type repo struct {
	t  *testing.T
	st storage.Storage
}

func newRepo(t *testing.T) *repo {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &repo{t, st}
}

func (r *repo) put(key, body string) {
	r.t.Helper()
	if err := r.st.Put(context.Background(), key, strings.NewReader(body), int64(len(body))); err != nil {
		r.t.Fatal(err)
	}
}

// segs stores segments lo..hi of a timeline, except those in skip.
func (r *repo) segs(tli uint32, lo, hi uint64, skip ...uint64) {
	for n := lo; n <= hi; n++ {
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == n
		}
		if !skipped {
			r.put(wal.Folder+wal.Segment{Timeline: tli, No: n}.Name(seg16)+".lz4", "x")
		}
	}
}

func (r *repo) history(tli uint32, body string) {
	r.put(wal.Folder+walindex.HistoryFile(tli), body)
}

// backup stores a sentinel and metadata.json for a backup starting in
// segment no of tli.
func (r *repo) backup(tli uint32, no uint64, permanent bool) string {
	name := "base_" + wal.Segment{Timeline: tli, No: no}.Name(seg16)
	start := no*seg16 + 0x28
	r.put(backup.SentinelKey(name), "{}")
	r.put(backup.MetadataKey(name), fmt.Sprintf(`{"start_lsn":%d,"finish_lsn":%d,"is_permanent":%v}`, start, start+0x100, permanent))
	return name
}

func (r *repo) verify(current wal.Segment, opts VerifyOptions) (Report, error) {
	r.t.Helper()
	ctx := context.Background()
	ix, err := walindex.Build(ctx, r.st, seg16)
	if err != nil {
		r.t.Fatal(err)
	}
	if opts.Checks == nil {
		opts.Checks = []Check{CheckIntegrity, CheckTimeline}
	}
	opts.Current = current
	return Verify(ctx, r.st, ix, &wal.Restorer{Store: r.st, SegmentSize: seg16}, opts)
}

// rows renders integrity rows compactly: "tli:lo-hi:STATUS".
func rows(res *IntegrityResult) string {
	var parts []string
	for _, r := range res.Details {
		lo, _ := wal.ParseSegment(r.StartSegment, seg16)
		hi, _ := wal.ParseSegment(r.EndSegment, seg16)
		if hi.No-lo.No+1 != r.SegmentsCount {
			return fmt.Sprintf("bad count in %+v", r)
		}
		parts = append(parts, fmt.Sprintf("%d:%d-%d:%s", r.TimelineID, lo.No, hi.No, r.Status))
	}
	return strings.Join(parts, " ")
}

func seg(tli uint32, no uint64) wal.Segment { return wal.Segment{Timeline: tli, No: no} }

func TestIntegrityGapsAndWindows(t *testing.T) {
	r := newRepo(t)
	r.segs(1, 1, 10, 4, 9)
	r.backup(1, 2, false)
	for _, c := range []struct {
		uploading, delayed int
		want               string
		status             Status
	}{
		// Segment 11 (missing, just below the current one) may still be
		// uploading; 9 and 4, further back, are lost.
		{2, 0, "1:2-3:FOUND 1:4-4:MISSING_LOST 1:5-8:FOUND 1:9-9:MISSING_LOST 1:10-10:FOUND 1:11-11:MISSING_UPLOADING", Failure},
		// One delayed segment allowed: 11 is delayed, the window then
		// starts at 10 and covers 9.
		{2, 1, "1:2-3:FOUND 1:4-4:MISSING_LOST 1:5-8:FOUND 1:9-9:MISSING_UPLOADING 1:10-10:FOUND 1:11-11:MISSING_DELAYED", Failure},
		// A window wide enough for everything: warnings only.
		{16, 0, "1:2-3:FOUND 1:4-4:MISSING_UPLOADING 1:5-8:FOUND 1:9-9:MISSING_UPLOADING 1:10-10:FOUND 1:11-11:MISSING_UPLOADING", Warning},
		// Delayed up to the first archived segment only.
		{0, 5, "1:2-3:FOUND 1:4-4:MISSING_LOST 1:5-8:FOUND 1:9-9:MISSING_LOST 1:10-10:FOUND 1:11-11:MISSING_DELAYED", Failure},
	} {
		rep, err := r.verify(seg(1, 12), VerifyOptions{UploadingRange: c.uploading, DelayedRange: c.delayed})
		if err != nil {
			t.Fatal(err)
		}
		if got := rows(rep.Integrity); got != c.want || rep.Integrity.Status != c.status {
			t.Errorf("uploading %d delayed %d:\n got %s %v\nwant %s %v", c.uploading, c.delayed, got, rep.Integrity.Status, c.want, c.status)
		}
		if rep.Timeline.Status != OK {
			t.Errorf("timeline check %v", rep.Timeline.Status)
		}
	}
	// No gap in the range: OK.
	rep, err := r.verify(seg(1, 4), VerifyOptions{UploadingRange: 16})
	if err != nil || rows(rep.Integrity) != "1:2-3:FOUND" || rep.Integrity.Status != OK {
		t.Errorf("range below the gaps: %s %v %v", rows(rep.Integrity), rep.Integrity.Status, err)
	}
	// Current segment at the backup's: nothing to scan, details null.
	rep, err = r.verify(seg(1, 2), VerifyOptions{Checks: []Check{CheckIntegrity}, UploadingRange: 16})
	if err != nil || rep.Integrity.Details != nil || rep.Integrity.Status != OK || rep.Timeline != nil {
		t.Fatalf("empty scan: %+v %v", rep, err)
	}
	var b bytes.Buffer
	WriteVerifyJSON(&b, rep)
	if b.String() != `{"integrity":{"status":"OK","details":null}}` {
		t.Errorf("empty scan JSON %s", b.String())
	}
}

// A long range without gaps costs runs, not segments.
func TestIntegrityLongRange(t *testing.T) {
	r := newRepo(t)
	r.segs(1, 1, 3)
	rep, err := r.verify(seg(1, 1<<40), VerifyOptions{UploadingRange: 16})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("1:1-3:FOUND 1:4-%d:MISSING_LOST 1:%d-%d:MISSING_UPLOADING", 1<<40-17, 1<<40-16, 1<<40-1)
	if got := rows(rep.Integrity); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	// No backup at all: the scan goes down to segment 1, and segments
	// found there end the leading lost run's excuse.
	if rep.Integrity.Status != Failure {
		t.Errorf("status %v", rep.Integrity.Status)
	}
}

func TestIntegrityTimelineSwitch(t *testing.T) {
	r := newRepo(t)
	r.segs(1, 1, 5) // 5 on timeline 1 holds the switch point
	r.segs(2, 5, 8)
	r.history(2, "1\t0/5000060\tno recovery target specified\n")
	r.backup(1, 2, false)
	rep, err := r.verify(seg(2, 9), VerifyOptions{UploadingRange: 16})
	if err != nil {
		t.Fatal(err)
	}
	if got := rows(rep.Integrity); got != "1:2-4:FOUND 2:5-8:FOUND" || rep.Integrity.Status != OK {
		t.Errorf("across the switch: %s %v", got, rep.Integrity.Status)
	}
	if rep.Timeline.Status != OK || rep.Timeline.Details.HighestStorageTimelineID != 2 {
		t.Errorf("timeline %+v", rep.Timeline)
	}
	// The old primary, still on timeline 1, is behind.
	rep, err = r.verify(seg(1, 6), VerifyOptions{UploadingRange: 16})
	if err != nil || rep.Timeline.Status != Failure || rows(rep.Integrity) != "1:2-5:FOUND" {
		t.Errorf("old timeline: %+v %s %v", rep.Timeline, rows(rep.Integrity), err)
	}
	// A parent segment missing below the switch is lost on timeline 1.
	r2 := newRepo(t)
	r2.segs(1, 1, 5, 3)
	r2.segs(2, 5, 30)
	r2.history(2, "1\t0/5000060\tr\n")
	r2.backup(1, 2, false)
	rep, err = r2.verify(seg(2, 31), VerifyOptions{UploadingRange: 4})
	if err != nil || rows(rep.Integrity) != "1:2-2:FOUND 1:3-3:MISSING_LOST 1:4-4:FOUND 2:5-30:FOUND" {
		t.Errorf("gap on the parent: %s %v", rows(rep.Integrity), err)
	}

	// wal-show: timeline 2's parent and switch point from its history.
	var tbl bytes.Buffer
	ix, _ := walindex.Build(context.Background(), r.st, seg16)
	tls, err := Show(context.Background(), ix, &wal.Restorer{Store: r.st, SegmentSize: seg16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	WriteShowTable(&tbl, tls, seg16, false)
	want := `+-----+------------+-----------------+--------------------------+--------------------------+---------------+----------------+--------+
| TLI | PARENT TLI | SWITCHPOINT LSN | START SEGMENT            | END SEGMENT              | SEGMENT RANGE | SEGMENTS COUNT | STATUS |
+-----+------------+-----------------+--------------------------+--------------------------+---------------+----------------+--------+
|   1 |          0 |             0/0 | 000000010000000000000001 | 000000010000000000000005 |             5 |              5 | OK     |
|   2 |          1 |       0/5000060 | 000000020000000000000005 | 000000020000000000000008 |             4 |              4 | OK     |
+-----+------------+-----------------+--------------------------+--------------------------+---------------+----------------+--------+
`
	if tbl.String() != want {
		t.Errorf("wal-show:\n%s\nwant:\n%s", tbl.String(), want)
	}
}

// Without timeline 2's history file the walk cannot leave timeline 2, so
// the parent's segments look lost; wal-show shows no parent.
func TestIntegrityLostHistoryFile(t *testing.T) {
	r := newRepo(t)
	r.segs(1, 1, 5)
	r.segs(2, 5, 30)
	r.backup(1, 2, false)
	rep, err := r.verify(seg(2, 31), VerifyOptions{UploadingRange: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := rows(rep.Integrity); got != "2:2-4:MISSING_LOST 2:5-30:FOUND" || rep.Integrity.Status != Failure {
		t.Errorf("got %s %v", got, rep.Integrity.Status)
	}
	// A history file that is there but damaged stops the check.
	r.history(2, "1\tnot-an-lsn\tr\n")
	if _, err := r.verify(seg(2, 31), VerifyOptions{UploadingRange: 4}); err == nil || !strings.Contains(err.Error(), "00000002.history") {
		t.Errorf("damaged history: %v", err)
	}
	ix, _ := walindex.Build(context.Background(), r.st, seg16)
	if _, err := Show(context.Background(), ix, &wal.Restorer{Store: r.st, SegmentSize: seg16}, nil); err == nil {
		t.Error("wal-show read a damaged history file")
	}
}

func TestIntegrityBackupChoice(t *testing.T) {
	r := newRepo(t)
	r.segs(1, 3, 6)
	perm := r.backup(1, 3, true)
	// The only backup is permanent: not eligible, so the scan runs down to
	// segment 1, and what is missing below the first archived segment is
	// only a warning.
	rep, err := r.verify(seg(1, 7), VerifyOptions{UploadingRange: 0})
	if err != nil {
		t.Fatal(err)
	}
	if got := rows(rep.Integrity); got != "1:1-2:MISSING_LOST 1:3-6:FOUND" || rep.Integrity.Status != Warning {
		t.Errorf("permanent only: %s %v", got, rep.Integrity.Status)
	}
	// Named, a permanent backup may start the range.
	rep, err = r.verify(seg(1, 7), VerifyOptions{BackupName: perm})
	if err != nil || rows(rep.Integrity) != "1:3-6:FOUND" || rep.Integrity.Status != OK {
		t.Errorf("named permanent: %s %v", rows(rep.Integrity), err)
	}
	if _, err := r.verify(seg(1, 7), VerifyOptions{BackupName: "base_000000010000000000000009"}); !errors.Is(err, backup.ErrBackupNotFound) {
		t.Errorf("unknown --backup-name: %v", err)
	}
	// The earliest non-permanent backup wins.
	r.backup(1, 5, false)
	r.backup(1, 4, false)
	rep, err = r.verify(seg(1, 7), VerifyOptions{})
	if err != nil || rows(rep.Integrity) != "1:4-6:FOUND" {
		t.Errorf("earliest: %s %v", rows(rep.Integrity), err)
	}

	// With a history: a backup on a timeline outside it, or on an
	// ancestor after that ancestor ended, is not eligible.
	h := newRepo(t)
	h.segs(1, 1, 4)
	h.segs(3, 4, 8)
	h.history(3, "1\t0/4000000\tr\n")
	h.backup(2, 2, false) // timeline 2 is not in timeline 3's past
	h.backup(1, 5, false) // after timeline 1 ended (segment 4)
	rep, err = h.verify(seg(3, 9), VerifyOptions{UploadingRange: 16})
	if err != nil || rows(rep.Integrity) != "1:1-3:FOUND 3:4-8:FOUND" || rep.Integrity.Status != OK {
		t.Errorf("ineligible backups: %s %v %v", rows(rep.Integrity), rep.Integrity.Status, err)
	}
	if _, err := h.verify(seg(3, 9), VerifyOptions{BackupName: "base_000000020000000000000002"}); err == nil {
		t.Error("named backup off the timeline history accepted")
	}
	h.backup(1, 2, false)
	rep, err = h.verify(seg(3, 9), VerifyOptions{UploadingRange: 16})
	if err != nil || rows(rep.Integrity) != "1:2-3:FOUND 3:4-8:FOUND" {
		t.Errorf("eligible ancestor backup: %s %v", rows(rep.Integrity), err)
	}
}

func TestTimelineCheckEmptyStorage(t *testing.T) {
	r := newRepo(t)
	rep, err := r.verify(seg(1, 7), VerifyOptions{Checks: []Check{CheckTimeline}})
	if err != nil || rep.Timeline.Status != Warning || rep.Integrity != nil {
		t.Fatalf("%+v %v", rep, err)
	}
	var b bytes.Buffer
	WriteVerify(&b, rep)
	want := "[wal-verify] timeline check status: WARNING\n[wal-verify] timeline check details:\n" +
		"Highest timeline found in storage: 0\nCurrent cluster timeline: 1\n"
	if b.String() != want {
		t.Errorf("got %q", b.String())
	}
	// A history file alone counts: the promotion happened.
	r.history(2, "1\t0/10\tr\n")
	rep, _ = r.verify(seg(1, 7), VerifyOptions{Checks: []Check{CheckTimeline}})
	if rep.Timeline.Status != Failure || rep.Timeline.Details.HighestStorageTimelineID != 2 {
		t.Errorf("%+v", rep.Timeline)
	}
}

func TestShowGapsJSON(t *testing.T) {
	r := newRepo(t)
	r.segs(1, 1, 9, 3, 4, 7)
	r.backup(1, 2, false)
	r.backup(1, 8, false)
	st := r.st
	_, js := showOutputs(t, st, false)
	want := `[{"id":1,"parent_id":0,"switch_point_lsn":0,"start_segment":"000000010000000000000001","end_segment":"000000010000000000000009",` +
		`"segments_count":6,"missing_segments":["000000010000000000000007","000000010000000000000004","000000010000000000000003"],` +
		`"segment_range_size":9,"status":"LOST_SEGMENTS"}]`
	if js != want {
		t.Errorf("got  %s\nwant %s", js, want)
	}
	tbl, js := showOutputs(t, st, true)
	if !strings.Contains(tbl, "| LOST_SEGMENTS |             2 |") || !strings.Contains(js, `"backups":[{"backup_name":"base_000000010000000000000008"`) {
		t.Errorf("with backups:\n%s\n%s", tbl, js)
	}
	empty := newRepo(t)
	tbl, js = showOutputs(t, empty.st, true)
	if js != "[]" || strings.Count(tbl, "\n") != 4 {
		t.Errorf("empty storage: %q %q", tbl, js)
	}
}

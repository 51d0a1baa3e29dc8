package walrecord

import (
	"encoding/binary"
	"errors"
	"io"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
)

const (
	testSeg   = 8192
	testBlock = 1024
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// layoutWAL writes records in every position the reader must handle and
// returns the builder, the names of its restore points and its commit
// times.
func layoutWAL() (*walBuilder, map[uint64]string, map[uint64]time.Time) {
	b := newWALBuilder(3, testSeg, testBlock)
	rps := map[uint64]string{}
	commits := map[uint64]time.Time{}
	rps[b.restorePoint("first", t0)] = "first"
	b.filler(100)
	commits[b.commit(t0.Add(time.Second))] = t0.Add(time.Second)
	// A record header split across two pages (8 bytes here, 16 there).
	b.moveTo(testBlock - 8)
	commits[b.commit(t0.Add(2*time.Second))] = t0.Add(2 * time.Second)
	// A record over several pages.
	b.filler(3000)
	// A record header split across two segments.
	b.toLastPage()
	b.moveTo(testBlock - 16)
	rps[b.restorePoint("across_segments", t0.Add(3*time.Second))] = "across_segments"
	// A record larger than two segments.
	b.filler(20000)
	rps[b.restorePoint("after_big", t0.Add(4*time.Second))] = "after_big"
	b.switchSegment()
	rps[b.restorePoint("after_switch", t0.Add(5*time.Second))] = "after_switch"
	commits[b.commit(t0.Add(6*time.Second))] = t0.Add(6 * time.Second)
	return b, rps, commits
}

func TestDecodeLayouts(t *testing.T) {
	b, rps, commits := layoutWAL()
	segs := b.finish()
	got := decodeSegments(t, testSeg, 0, b.firstSeg(), segs, nil)
	var lsns []uint64
	for _, r := range got.recs {
		lsns = append(lsns, uint64(r.LSN))
	}
	if !slices.Equal(lsns, b.lsns) {
		t.Fatalf("records at %v, written at %v", lsns, b.lsns)
	}
	// The only break is the end of written WAL, after the last record.
	last := got.recs[len(got.recs)-1]
	if len(got.breaks) != 1 || got.breaks[0] < last.End || !strings.Contains(got.why[0].Error(), "end of WAL") {
		t.Fatalf("breaks %v %v, want one end of WAL after %s", got.breaks, got.why, last.End)
	}
	seenRP, seenCommit := 0, 0
	for i, r := range got.recs {
		if i > 0 && r.Prev != got.recs[i-1].LSN {
			t.Errorf("record %s: prev %s, want %s", r.LSN, r.Prev, got.recs[i-1].LSN)
		}
		if want := min(int(r.TotLen), DefaultKeep); len(r.Data) != want {
			t.Errorf("record %s: %d bytes kept, want %d", r.LSN, len(r.Data), want)
		}
		if r.End <= r.LSN || r.End < r.LSN+pg.LSN(r.TotLen) {
			t.Errorf("record %s: end %s before its %d bytes", r.LSN, r.End, r.TotLen)
		}
		name, at, ok, err := r.RestorePoint()
		if err != nil {
			t.Errorf("record %s: %v", r.LSN, err)
		}
		if ok {
			seenRP++
			if name != rps[uint64(r.LSN)] || at.IsZero() {
				t.Errorf("restore point at %s: %q %v, want %q", r.LSN, name, at, rps[uint64(r.LSN)])
			}
		}
		kind, at, ok, err := r.XactTime()
		if err != nil {
			t.Errorf("record %s: %v", r.LSN, err)
		}
		if ok {
			seenCommit++
			if kind != Commit || !at.Equal(commits[uint64(r.LSN)]) {
				t.Errorf("commit at %s: %v %v, want %v", r.LSN, kind, at, commits[uint64(r.LSN)])
			}
		}
	}
	if seenRP != len(rps) || seenCommit != len(commits) {
		t.Errorf("%d restore points and %d commits decoded, want %d and %d", seenRP, seenCommit, len(rps), len(commits))
	}
	// The big record spans three segments and kept only its first bytes.
	for _, r := range got.recs {
		if r.TotLen > 20000 && r.End-r.LSN < 2*testSeg {
			t.Errorf("big record %s..%s does not span the segments", r.LSN, r.End)
		}
	}
}

func TestKeepBytesTruncates(t *testing.T) {
	b, _, _ := layoutWAL()
	got := decodeSegments(t, testSeg, 64, b.firstSeg(), b.finish(), nil)
	if len(got.recs) != len(b.lsns) {
		t.Fatalf("%d records, want %d", len(got.recs), len(b.lsns))
	}
	r := got.recs[0]
	if len(r.Data) != 64 {
		t.Fatalf("kept %d bytes, want 64", len(r.Data))
	}
	if _, _, ok, err := r.RestorePoint(); !ok || !errors.Is(err, ErrTruncated) {
		t.Fatalf("restore point with 64 bytes kept: ok %v err %v, want ErrTruncated", ok, err)
	}
}

// TestCRCMismatch damages one byte of a record's data: the record is
// reported at its LSN and dropped, and decoding resumes on the next page.
func TestCRCMismatch(t *testing.T) {
	b := newWALBuilder(1, testSeg, testBlock)
	b.filler(10)
	bad := b.commit(t0)
	b.filler(10)
	b.moveTo(200) // on the next page
	after := b.restorePoint("after", t0)
	b.buf[bad-b.start+HeaderSize+10] ^= 0x01
	got := decodeSegments(t, testSeg, 0, b.firstSeg(), b.finish(), nil)
	if len(got.breaks) == 0 || uint64(got.breaks[0]) != bad || !strings.Contains(got.why[0].Error(), "CRC") {
		t.Fatalf("breaks %v %v, want a CRC failure at %s", got.breaks, got.why, pg.LSN(bad))
	}
	var lsns []uint64
	for _, r := range got.recs {
		lsns = append(lsns, uint64(r.LSN))
	}
	if slices.Contains(lsns, bad) || !slices.Contains(lsns, after) {
		t.Fatalf("records %v: want %s dropped and %s found", lsns, pg.LSN(bad), pg.LSN(after))
	}
}

// TestCRCCoversHeader damages a header byte (xl_info) that no other check
// reads.
func TestCRCCoversHeader(t *testing.T) {
	b := newWALBuilder(1, testSeg, testBlock)
	bad := b.commit(t0)
	b.buf[bad-b.start+16] ^= 0x80
	got := decodeSegments(t, testSeg, 0, b.firstSeg(), b.finish(), nil)
	if len(got.recs) != 0 || len(got.breaks) == 0 || !strings.Contains(got.why[0].Error(), "CRC") {
		t.Fatalf("records %d, breaks %v: want the damaged header caught by the CRC", len(got.recs), got.why)
	}
}

func TestPrevMismatch(t *testing.T) {
	b := newWALBuilder(1, testSeg, testBlock)
	b.filler(10)
	b.prev = 0x123
	bad := b.commit(t0)
	got := decodeSegments(t, testSeg, 0, b.firstSeg(), b.finish(), nil)
	if len(got.breaks) == 0 || uint64(got.breaks[0]) != bad || !strings.Contains(got.why[0].Error(), "previous record") {
		t.Fatalf("breaks %v %v, want a broken chain at %s", got.breaks, got.why, pg.LSN(bad))
	}
}

// TestGapResync skips a segment: the record continued from it is dropped
// without a break, and the records after it are read.
func TestGapResync(t *testing.T) {
	b := newWALBuilder(0, testSeg, testBlock)
	b.restorePoint("seg0", t0)
	b.toLastPage()
	for b.pos()/testSeg < 2 {
		b.filler(100)
	}
	b.toLastPage()
	b.moveTo(testBlock - 48)
	spanning := b.filler(3000) // from segment 2 into 3
	next := b.restorePoint("seg3", t0)
	segs := b.finish()
	got := decodeSegments(t, testSeg, 0, 0, segs, map[int]bool{2: true})
	var lsns []uint64
	for _, r := range got.recs {
		lsns = append(lsns, uint64(r.LSN))
	}
	if slices.Contains(lsns, spanning) || !slices.Contains(lsns, next) {
		t.Fatalf("records %v: want %s (continued from the skipped segment) dropped and %s read", lsns, pg.LSN(spanning), pg.LSN(next))
	}
	if len(got.breaks) != 1 {
		t.Fatalf("breaks %v, want only the end of WAL", got.why)
	}
	// Fed the skipped segment, the same stream reads everything.
	all := decodeSegments(t, testSeg, 0, 0, segs, nil)
	if len(all.recs) != len(b.lsns) {
		t.Fatalf("%d records without the gap, want %d", len(all.recs), len(b.lsns))
	}
}

// TestOverwrittenContrecord: a server that crashed in the middle of a
// record writes the next page without the continuation, flagged
// XLP_FIRST_IS_OVERWRITE_CONTRECORD; the partial record is dropped
// without a break.
func TestOverwrittenContrecord(t *testing.T) {
	b := newWALBuilder(1, testSeg, testBlock)
	b.restorePoint("before", t0)
	b.moveTo(testBlock - 64)
	// The start of a record that never finished.
	partial := b.pos()
	hdr := make([]byte, 64)
	binary.LittleEndian.PutUint32(hdr[0:], 4096) // xl_tot_len
	binary.LittleEndian.PutUint64(hdr[8:], b.prev)
	b.buf = append(b.buf, hdr...)
	// The page after it, flagged as overwriting.
	b.pageHeader(0)
	page := b.buf[len(b.buf)-shortPageHeader:]
	page[2] |= xlpFirstIsOverwriteContrecord
	// The next record's xl_prev is the last complete record, as
	// PostgreSQL writes it.
	after := b.restorePoint("after", t0)
	got := decodeSegments(t, testSeg, 0, b.firstSeg(), b.finish(), nil)
	var lsns []uint64
	for _, r := range got.recs {
		lsns = append(lsns, uint64(r.LSN))
	}
	if slices.Contains(lsns, partial) || !slices.Contains(lsns, after) || len(got.breaks) != 1 {
		t.Fatalf("records %v breaks %v: want %s dropped silently and %s read", lsns, got.why, pg.LSN(partial), pg.LSN(after))
	}
}

func TestBadSegmentHeader(t *testing.T) {
	b := newWALBuilder(4, testSeg, testBlock)
	b.restorePoint("x", t0)
	for b.pos()/testSeg < 5 {
		b.filler(500)
	}
	segs := b.finish()
	for _, tc := range []struct {
		name string
		seg  uint64
		size int64
		want string
	}{
		{"wrong address", 6, testSeg, "address"},
		{"wrong segment size", 2, 2 * testSeg, "segment size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeSegments(t, tc.size, 0, tc.seg, segs[:1], nil)
			if len(got.recs) != 0 || len(got.why) != 1 || !strings.Contains(got.why[0].Error(), tc.want) {
				t.Fatalf("records %d breaks %v, want one naming %q", len(got.recs), got.why, tc.want)
			}
		})
	}
	d, _ := NewDecoder(Options{SegmentSize: testSeg})
	if err := d.Segment(4, strings.NewReader(string(segs[0][:testSeg-100]))); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("short segment: %v, want a truncation error", err)
	}
}

// TestMemoryBound decodes a record of 20 times the segment size: the
// decoder allocates one page and its kept bytes, not the record.
func TestMemoryBound(t *testing.T) {
	b := newWALBuilder(1, testSeg, testBlock)
	b.filler(20 * testSeg)
	b.restorePoint("after", t0)
	segs := b.finish()
	// The allocation counter is process-wide (the race detector and the
	// runtime allocate too), so only a decoder over the limit on every
	// try fails.
	// Slack for the decoder itself and the readers.
	limit := uint64(testBlock + DefaultKeep + 8192)
	var allocated uint64
	for range 3 {
		if allocated = decodeAllocs(t, b.firstSeg(), segs); allocated <= limit {
			return
		}
	}
	t.Fatalf("allocated %d bytes decoding a %d-byte record, limit %d", allocated, 20*testSeg, limit)
}

func decodeAllocs(t *testing.T, first uint64, segs [][]byte) uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	n := 0
	d, err := NewDecoder(Options{SegmentSize: testSeg, OnRecord: func(*Record) error { n++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		if err := d.Segment(first+uint64(i), &onlyReader{s}); err != nil {
			t.Fatal(err)
		}
	}
	metrics.Read(sample)
	if n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	return sample[0].Value.Uint64() - before
}

// onlyReader hides bytes.Reader's WriteTo and friends.
type onlyReader struct{ b []byte }

func (r *onlyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

package restorewindow

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

const (
	seg16   = 16 << 20
	base    = "base_000000010000000000000002"
	delta   = "base_000000010000000000000004_D_000000010000000000000002"
	baseEnd = pg.LSN(0x2000100) // the backups' finish LSNs, from their sentinels
)

// lz4Delta copies the lz4-delta fixture (WAL-G's: segments 1-5 of
// timeline 1, a full backup at 2, a delta at 4, restore point fx_rp in
// 5) and returns the copy's WAL folder and a function computing its
// report.
func lz4Delta(t *testing.T) (string, func() *Report) {
	t.Helper()
	src := filepath.Join(testenv.Fixtures(t), "lz4-delta", "storage")
	dir := filepath.Join(t.TempDir(), "storage")
	if out, err := exec.Command("cp", "-a", src, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return filepath.Join(dir, "wal_005"), func() *Report {
		t.Helper()
		ctx := context.Background()
		st, err := file.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := walindex.Build(ctx, st, seg16)
		if err != nil {
			t.Fatal(err)
		}
		r := &wal.Restorer{Store: st, SegmentSize: seg16}
		rep, err := Compute(ctx, st, ix, r, Options{SegmentSize: seg16})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
}

func rangeSummary(rs []Range) [][]string {
	var out [][]string
	for _, r := range rs {
		out = append(out, append([]string{r.StartSegment, r.EndSegment}, r.Backups...))
	}
	return out
}

func pointNames(tl Timeline) []string {
	var out []string
	for _, p := range tl.RestorePoints {
		n := p.Name
		if !p.Reachable {
			n += "(unreachable)"
		}
		out = append(out, n)
	}
	return out
}

func TestFixtureWindow(t *testing.T) {
	_, compute := lz4Delta(t)
	rep := compute()
	if len(rep.Timelines) != 1 {
		t.Fatalf("%d timelines", len(rep.Timelines))
	}
	tl := rep.Timelines[0]
	want := [][]string{{"000000010000000000000002", "000000010000000000000005", base, delta}}
	if got := rangeSummary(tl.Ranges); !slices.EqualFunc(got, want, slices.Equal) || len(tl.Gaps) != 0 {
		t.Fatalf("ranges %v gaps %v, want %v and none", got, tl.Gaps, want)
	}
	r := tl.Ranges[0]
	if r.Start.LSN != baseEnd || r.End.LSN.Segment(seg16) != 5 || r.Start.Time.IsZero() || !r.End.Time.After(r.Start.Time) {
		t.Errorf("range %+v", r)
	}
	if got := pointNames(tl); !slices.Equal(got, []string{"fx_rp"}) {
		t.Errorf("restore points %v", got)
	}
	if p := tl.RestorePoints[0]; p.Time.Before(r.Start.Time) || p.Time.After(r.End.Time) || p.LSN.Segment(seg16) != 5 {
		t.Errorf("fx_rp %+v outside %+v", p, r)
	}
}

// TestMissingSegment: without segment 3 the full backup's range ends with
// segment 2, and the delta starts a range of its own.
func TestMissingSegment(t *testing.T) {
	walDir, compute := lz4Delta(t)
	if err := os.Remove(filepath.Join(walDir, "000000010000000000000003.lz4")); err != nil {
		t.Fatal(err)
	}
	tl := compute().Timelines[0]
	want := [][]string{
		{"000000010000000000000002", "000000010000000000000002", base},
		{"000000010000000000000004", "000000010000000000000005", delta},
	}
	if got := rangeSummary(tl.Ranges); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("ranges %v, want %v", got, want)
	}
	if len(tl.Gaps) != 1 || tl.Gaps[0].StartSegment != "000000010000000000000003" || tl.Gaps[0].Reason != "missing" {
		t.Fatalf("gaps %v", tl.Gaps)
	}
	if tl.Ranges[0].End.LSN > 0x3000000 || tl.Ranges[1].Start.LSN <= 0x4000000 {
		t.Errorf("ranges %+v", tl.Ranges)
	}
}

// TestDamagedSegment: an object that does not decompress breaks the WAL
// like a missing one, and the gap names the object.
func TestDamagedSegment(t *testing.T) {
	walDir, compute := lz4Delta(t)
	p := filepath.Join(walDir, "000000010000000000000003.lz4")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	tl := compute().Timelines[0]
	if len(tl.Gaps) != 1 || !strings.Contains(tl.Gaps[0].Reason, "wal_005/000000010000000000000003.lz4") {
		t.Fatalf("gaps %v, want the damaged object named", tl.Gaps)
	}
	if len(tl.Ranges) != 2 || !slices.Equal(tl.Ranges[0].Backups, []string{base}) || tl.Ranges[0].End.LSN > 0x3000000 {
		t.Fatalf("ranges %+v", tl.Ranges)
	}
}

// TestBranchedTimeline makes timeline 2 branch from timeline 1 at the
// start of segment 4 (a history file, and timeline 1's segments 4 and 5
// as timeline 2's, which the reader takes as they are), then drops
// timeline 1's segment 5. Timeline 1 ends with segment 4 and loses fx_rp;
// timeline 2 reaches it, from the full backup only (the delta was taken
// on timeline 1 after the branch).
func TestBranchedTimeline(t *testing.T) {
	walDir, compute := lz4Delta(t)
	if err := os.WriteFile(filepath.Join(walDir, "00000002.history"), []byte("1\t0/4000000\tbranch\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"4", "5"} {
		b, err := os.ReadFile(filepath.Join(walDir, "00000001000000000000000"+n+".lz4"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(walDir, "00000002000000000000000"+n+".lz4"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(walDir, "000000010000000000000005.lz4")); err != nil {
		t.Fatal(err)
	}
	rep := compute()
	if len(rep.Timelines) != 2 {
		t.Fatalf("%d timelines", len(rep.Timelines))
	}
	tl1, tl2 := rep.Timelines[0], rep.Timelines[1]
	if got, want := rangeSummary(tl1.Ranges), [][]string{{"000000010000000000000002", "000000010000000000000004", base, delta}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("timeline 1 ranges %v, want %v", got, want)
	}
	if len(pointNames(tl1)) != 0 || len(tl1.Gaps) != 0 {
		t.Errorf("timeline 1: restore points %v gaps %v, want none", pointNames(tl1), tl1.Gaps)
	}
	if tl2.Parent != 1 || tl2.Begins != 0x4000000 {
		t.Errorf("timeline 2: parent %d begins %s", tl2.Parent, tl2.Begins)
	}
	if got, want := rangeSummary(tl2.Ranges), [][]string{{"000000010000000000000002", "000000020000000000000005", base}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("timeline 2 ranges %v, want %v", got, want)
	}
	if got := pointNames(tl2); !slices.Equal(got, []string{"fx_rp"}) || len(tl2.Gaps) != 0 {
		t.Errorf("timeline 2: restore points %v gaps %v", got, tl2.Gaps)
	}
	// The same WAL read along either path ends at the same record.
	full := lz4DeltaEnd(t)
	if tl2.Ranges[0].End != full {
		t.Errorf("timeline 2 ends at %+v, the unbranched archive at %+v", tl2.Ranges[0].End, full)
	}
	var txt, js bytes.Buffer
	if err := WriteText(&txt, rep); err != nil || !strings.Contains(txt.String(), "timeline 2 (from timeline 1 at 0/4000000)") {
		t.Errorf("text: %v\n%s", err, txt.String())
	}
	if err := WriteJSON(&js, rep); err != nil || !strings.Contains(js.String(), `"begins_at": "0/4000000"`) {
		t.Errorf("json: %v\n%s", err, js.String())
	}
}

func lz4DeltaEnd(t *testing.T) Point {
	_, compute := lz4Delta(t)
	return compute().Timelines[0].Ranges[0].End
}

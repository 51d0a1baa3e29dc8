package walrestore

import (
	"slices"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

const seg16 = 16 << 20

func rec(tli uint32, lsn string) walindex.HistoryRecord {
	l, err := pg.ParseLSN(lsn)
	if err != nil {
		panic(err)
	}
	return walindex.HistoryRecord{Timeline: tli, SwitchPoint: l}
}

func TestLastCommon(t *testing.T) {
	for _, c := range []struct {
		name           string
		target, source []walindex.HistoryRecord
		want           Point
		err            bool
	}{
		{name: "same timeline", err: true},
		{name: "target on 1", source: []walindex.HistoryRecord{rec(1, "0/3000100")}, want: Point{1, 0x3000100}},
		{name: "source on 1", target: []walindex.HistoryRecord{rec(1, "0/5000000")}, want: Point{1, 0x5000000}},
		{name: "shared then apart",
			target: []walindex.HistoryRecord{rec(1, "0/3000000"), rec(2, "0/9000000")},
			source: []walindex.HistoryRecord{rec(1, "0/3000000"), rec(2, "0/7000000"), rec(3, "0/8000000")},
			want:   Point{2, 0x7000000}},
		{name: "source one step ahead",
			target: []walindex.HistoryRecord{rec(1, "0/3000000")},
			source: []walindex.HistoryRecord{rec(1, "0/3000000"), rec(2, "0/7000000")},
			want:   Point{1, 0x3000000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := LastCommon(c.target, c.source)
			if (err != nil) != c.err || (!c.err && got != c.want) {
				t.Errorf("LastCommon = %+v, %v; want %+v (error %v)", got, err, c.want, c.err)
			}
		})
	}
}

func cluster(sysID uint64, tli uint32, checkpoint pg.LSN, hist []walindex.HistoryRecord, files ...string) *Cluster {
	c := &Cluster{Dir: "d", Control: pgdata.Control{SystemIdentifier: sysID, Timeline: tli, CheckPoint: uint64(checkpoint)},
		History: hist, Segments: map[wal.Segment]bool{}}
	for _, f := range files {
		s, err := wal.ParseSegment(f, seg16)
		if err != nil {
			panic(err)
		}
		c.Segments[s] = true
	}
	return c
}

// A former primary on timeline 1 and its promoted standby on 2, which
// switched at 0/3000100 (segment 3) and kept only segments 7 and 8 of
// timeline 2: the missing ones are 6 back to 3 on timeline 2, the
// segment of the switch point included, newest first.
func TestMissing(t *testing.T) {
	target := cluster(42, 1, 0x9000028, nil, "000000010000000000000009")
	source := cluster(42, 2, 0x8000028, []walindex.HistoryRecord{rec(1, "0/3000100")},
		"000000020000000000000007", "000000020000000000000008", "000000010000000000000002")
	got, err := Missing(target, source, seg16)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"000000020000000000000006", "000000020000000000000005", "000000020000000000000004", "000000020000000000000003"}
	if !slices.Equal(got, want) {
		t.Errorf("Missing = %v, want %v", got, want)
	}

	// Two switches on the source: timeline 3 began in segment 5; timeline
	// 2 owns segments 3 and 4 below it.
	source = cluster(42, 3, 0x6000028, []walindex.HistoryRecord{rec(1, "0/3000100"), rec(2, "0/5000200")},
		"000000030000000000000006")
	got, err = Missing(target, source, seg16)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"000000030000000000000005", "000000020000000000000004", "000000020000000000000003"}
	if !slices.Equal(got, want) {
		t.Errorf("Missing over two switches = %v, want %v", got, want)
	}

	if _, err := Missing(cluster(1, 1, 0, nil), source, seg16); err == nil || !strings.Contains(err.Error(), "different clusters") {
		t.Errorf("different system identifiers: %v", err)
	}
	if _, err := Missing(cluster(42, 3, 0, nil), source, seg16); err == nil || !strings.Contains(err.Error(), "same timeline") {
		t.Errorf("same timelines: %v", err)
	}
}

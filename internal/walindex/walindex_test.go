package walindex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

const seg16 = 16 << 20

// TestRangeSetMatchesModel adds random numbers in random order and compares
// every query with a plain map.
func TestRangeSetMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var s RangeSet
		model := map[uint64]bool{}
		span := uint64(5 + round)
		for range rng.IntN(60) {
			n := 1000 + rng.Uint64N(span)
			s.Add(n)
			model[n] = true
		}
		// Ranges sorted, disjoint and non-adjacent.
		rs := s.Ranges()
		for i, r := range rs {
			if r.Lo > r.Hi || (i > 0 && rs[i-1].Hi+1 >= r.Lo) {
				t.Fatalf("round %d: bad ranges %v", round, rs)
			}
		}
		if s.Count() != uint64(len(model)) {
			t.Fatalf("round %d: Count %d, model %d", round, s.Count(), len(model))
		}
		for n := uint64(995); n < 1000+span+5; n++ {
			if s.Contains(n) != model[n] {
				t.Fatalf("round %d: Contains(%d) = %v", round, n, s.Contains(n))
			}
		}
		// Runs over any window cover it exactly, from the top down,
		// alternating present and missing.
		lo, hi := 998+rng.Uint64N(span), 1000+rng.Uint64N(span)
		next := hi
		var prev *bool
		s.Runs(lo, hi, func(r Range, present bool) bool {
			if r.Hi != next || r.Lo > r.Hi || r.Lo < lo {
				t.Fatalf("round %d: run %v after %d in [%d,%d]", round, r, next, lo, hi)
			}
			if prev != nil && *prev == present {
				t.Fatalf("round %d: two %v runs in a row", round, present)
			}
			for n := r.Lo; n <= r.Hi; n++ {
				if model[n] != present {
					t.Fatalf("round %d: %d reported present=%v", round, n, present)
				}
			}
			p := present
			prev = &p
			next = r.Lo - 1
			return true
		})
		if lo <= hi && next != lo-1 {
			t.Fatalf("round %d: runs stopped at %d, want down to %d", round, next+1, lo)
		}
		// Gaps are exactly the missing numbers between min and max.
		var missing []uint64
		for _, g := range s.Gaps() {
			for n := g.Lo; n <= g.Hi; n++ {
				missing = append(missing, n)
			}
		}
		var want []uint64
		for n := s.Min(); len(model) > 0 && n <= s.Max(); n++ {
			if !model[n] {
				want = append(want, n)
			}
		}
		if !slices.Equal(missing, want) {
			t.Fatalf("round %d: gaps %v, want %v", round, missing, want)
		}
	}
}

func TestRangeSetAscendingStaysOneRange(t *testing.T) {
	var s RangeSet
	for n := uint64(1); n <= 100000; n++ {
		s.Add(n)
	}
	if len(s.Ranges()) != 1 || s.Count() != 100000 || s.Min() != 1 || s.Max() != 100000 {
		t.Fatalf("ranges %v count %d", s.Ranges(), s.Count())
	}
}

func TestParseName(t *testing.T) {
	for _, c := range []struct {
		name string
		kind Kind
		file string
		tli  uint32
		seg  uint64
	}{
		{"000000010000000000000002.lz4", Segment, "000000010000000000000002", 1, 2},
		{"000000010000000000000002", Segment, "000000010000000000000002", 1, 2},
		{"0000000300000001000000FF.zst", Segment, "0000000300000001000000FF", 3, 0x1FF},
		{"000000010000000000000002.00000028.backup.lz4", BackupHistory, "000000010000000000000002.00000028.backup", 1, 2},
		{"000000010000000000000002.00000028.backup", BackupHistory, "000000010000000000000002.00000028.backup", 1, 2},
		{"000000020000000000000005.partial.br", Partial, "000000020000000000000005.partial", 2, 5},
		{"000000020000000000000005.partial", Partial, "000000020000000000000005.partial", 2, 5},
		{"00000002.history.lzma", History, "00000002.history", 2, 0},
		{"00000002.history", History, "00000002.history", 2, 0},
		{"0000000A.history.zst", History, "0000000A.history", 10, 0},
		{"000000010000000000000002.lz4.tmp", Other, "", 0, 0},
		{"00000001000000000000000g.lz4", Other, "", 0, 0},
		{"000000010000000000000100.lz4", Other, "", 0, 0}, // segment part ≥ 256 for 16 MiB
		{"000000010000000000000002_D_000000010000000000000001", Other, "", 0, 0},
		{"walg_data.json", Other, "", 0, 0},
		{"", Other, "", 0, 0},
	} {
		n := ParseName(c.name, seg16)
		if n.Kind != c.kind || n.File != c.file || n.Timeline != c.tli || n.Segment != c.seg {
			t.Errorf("ParseName(%q) = %+v, want kind %d file %q tli %d seg %d", c.name, n, c.kind, c.file, c.tli, c.seg)
		}
	}
	// 1 MiB segments: 4096 per xlogid.
	if n := ParseName("000000010000000100000100.lz4", 1<<20); n.Kind != Segment || n.Segment != 4096+256 {
		t.Errorf("1 MiB segment: %+v", n)
	}
}

func put(t *testing.T, st storage.Storage, key string) {
	t.Helper()
	if err := st.Put(context.Background(), key, strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
}

func TestBuildIndex(t *testing.T) {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"wal_005/000000010000000000000001.lz4",
		"wal_005/000000010000000000000002.lz4",
		"wal_005/000000010000000000000002.br", // same segment, second codec
		"wal_005/000000010000000000000002.00000028.backup.lz4",
		"wal_005/000000010000000000000005.lz4",
		"wal_005/000000010000000000000006.partial.lz4",
		"wal_005/000000020000000000000006.lz4",
		"wal_005/00000002.history.lz4",
		"wal_005/00000004.history",
		"wal_005/sub/000000030000000000000009.lz4", // not in the folder itself
		"basebackups_005/base_000000010000000000000002_backup_stop_sentinel.json",
	} {
		put(t, st, k)
	}
	ix, err := Build(context.Background(), st, seg16)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Timelines(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("timelines %v", got)
	}
	if got := ix.Segments(1).Ranges(); !slices.Equal(got, []Range{{1, 2}, {5, 5}}) {
		t.Errorf("timeline 1 ranges %v", got)
	}
	if ix.Segments(1).Count() != 3 || ix.Segments(3).Count() != 0 {
		t.Errorf("counts %d %d", ix.Segments(1).Count(), ix.Segments(3).Count())
	}
	if !ix.HasHistory(2) || ix.HasHistory(1) || !ix.HasHistory(4) {
		t.Error("history files not indexed")
	}
	if ix.HighestTimeline() != 4 {
		t.Errorf("highest timeline %d", ix.HighestTimeline())
	}
	empty, err := Build(context.Background(), st, seg16)
	if err != nil || empty.HighestTimeline() != 4 {
		t.Fatal(err)
	}
	st2, _ := file.New(t.TempDir())
	ix2, err := Build(context.Background(), st2, seg16)
	if err != nil || len(ix2.Timelines()) != 0 || ix2.HighestTimeline() != 0 {
		t.Errorf("empty storage: %v %v", ix2.Timelines(), err)
	}
}

func TestParseHistory(t *testing.T) {
	// As PostgreSQL 15 writes it after two promotions.
	good := "1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tat restore point \"fx rp\"\n"
	recs, err := ParseHistory(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []HistoryRecord{
		{1, 0x3000060, "no recovery target specified"},
		{2, 0x5000000, `at restore point "fx rp"`},
	}
	if !slices.Equal(recs, want) {
		t.Fatalf("got %+v", recs)
	}
	for _, c := range []struct {
		in   string
		want []HistoryRecord
	}{
		{"", nil},
		{"# comment\n   \n  # indented comment\n", nil},
		{"1 0/10 \r\n", []HistoryRecord{{1, 0x10, ""}}},
		{"  3\t\t1/FF\treason\twith\ttabs\n", []HistoryRecord{{3, 0x1000000FF, "reason\twith\ttabs"}}},
		{"1\t0/10\tno newline at end", []HistoryRecord{{1, 0x10, "no newline at end"}}},
	} {
		got, err := ParseHistory(strings.NewReader(c.in))
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseHistory(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{
		"x\t0/10\tr\n",
		"0\t0/10\tr\n",
		"4294967296\t0/10\tr\n",
		"1\n",
		"1\t0-10\tr\n",
		"1\t0/123456789\tr\n",
		"2\t0/10\tr\n1\t0/20\tr\n",
		"2\t0/10\tr\n2\t0/20\tr\n",
		"-1\t0/10\tr\n",
		strings.Repeat("#", maxHistorySize+1),
	} {
		if got, err := ParseHistory(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseHistory(%.40q) accepted: %+v", bad, got)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
}

// opener serves history files from a map, as wal.Restorer would after
// decoding.
type opener map[string]string

func (o opener) Open(_ context.Context, name string) (io.ReadCloser, string, error) {
	body, ok := o[name]
	if !ok {
		return nil, "", fmt.Errorf("%s: %w", name, storage.ErrNotFound)
	}
	return io.NopCloser(strings.NewReader(body)), "wal_005/" + name + ".lz4", nil
}

func TestLoadHistory(t *testing.T) {
	ctx := context.Background()
	o := opener{
		"00000003.history": "1\t0/3000060\tr\n2\t0/5000000\tr\n",
		"00000002.history": "1\t0/3000060\tr\n2\t0/5000000\tr\n", // names itself
		"00000004.history": "1\tgarbage\n",
	}
	recs, err := LoadHistory(ctx, o, 3)
	if err != nil || len(recs) != 2 || recs[1].SwitchPoint != pg.LSN(0x5000000) {
		t.Fatalf("timeline 3: %+v %v", recs, err)
	}
	if _, err := LoadHistory(ctx, o, 5); !errors.Is(err, ErrNoHistory) || !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing history: %v", err)
	}
	for _, tli := range []uint32{2, 4} {
		_, err := LoadHistory(ctx, o, tli)
		if err == nil || errors.Is(err, ErrNoHistory) || !strings.Contains(err.Error(), HistoryFile(tli)) {
			t.Errorf("timeline %d: %v (want an error naming the object)", tli, err)
		}
	}
}

// FuzzParseHistory feeds arbitrary bytes to the history parser: it must
// not panic, and what it accepts must be well-formed and survive a round
// trip through PostgreSQL's line format.
func FuzzParseHistory(f *testing.F) {
	f.Add([]byte("1\t0/3000060\tno recovery target specified\n"))
	f.Add([]byte("1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tat restore point \"x\"\n"))
	f.Add([]byte("# c\n  3 1/FF\n"))
	f.Add([]byte("1\t0/10\tr\r\n2\tFFFFFFFF/FFFFFFFF\t\n"))
	f.Add([]byte("2\t0/10\n1\t0/10\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ParseHistory(bytes.NewReader(data))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		var b strings.Builder
		for i, r := range recs {
			if r.Timeline == 0 || (i > 0 && r.Timeline <= recs[i-1].Timeline) {
				t.Fatalf("accepted bad timelines %+v", recs)
			}
			if strings.ContainsAny(r.Reason, "\n") {
				t.Fatalf("reason spans lines: %q", r.Reason)
			}
			fmt.Fprintf(&b, "%d\t%s\t%s\n", r.Timeline, r.SwitchPoint, r.Reason)
		}
		again, err := ParseHistory(strings.NewReader(b.String()))
		if err != nil || !slices.Equal(again, recs) {
			t.Fatalf("round trip: %+v, %v; was %+v", again, err, recs)
		}
	})
}

// listing is a storage whose wal_005/ holds n segments of timeline 1 in
// ascending order, every 1000th missing, generated as they are listed.
type listing struct {
	storage.Storage
	n uint64
}

func (l listing) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	for no := uint64(1); no <= l.n; no++ {
		if no%1000 == 0 {
			continue
		}
		key := "wal_005/" + fmt.Sprintf("%08X%08X%08X", 1, no/256, no%256) + ".lz4"
		if err := fn(storage.ObjectInfo{Key: key, Size: 1}); err != nil {
			return err
		}
	}
	return nil
}

// TestIndexMemoryFollowsGaps builds an index of a million segments: what
// it keeps is one range per gap, not one entry per segment.
func TestIndexMemoryFollowsGaps(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix, err := Build(context.Background(), listing{n: 1_000_000}, seg16)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	rs := ix.Segments(1)
	if rs.Count() != 999_000 || len(rs.Ranges()) != 1000 {
		t.Fatalf("count %d ranges %d", rs.Count(), len(rs.Ranges()))
	}
	retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("index of 999000 segments in 1000 ranges retains %d bytes", retained)
	if retained > 256<<10 {
		t.Errorf("index retains %d bytes for 1000 ranges", retained)
	}
	runtime.KeepAlive(ix)
}

// FuzzParseName: whatever an object is called, a name taken for a WAL file
// must be one PostgreSQL would write, and a segment's name must round-trip.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"000000010000000000000002.lz4", "00000002.history.br", "000000010000000000000002.00000028.backup",
		"000000020000000000000005.partial", "x.lz4", "0000000100000000000000FF"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n := ParseName(name, seg16)
		if n.Kind == Other {
			return
		}
		if !strings.HasPrefix(name, n.File) {
			t.Fatalf("%q: file %q is not its prefix", name, n.File)
		}
		if n.Kind == Segment && n.Seg().Name(seg16) != n.File {
			t.Fatalf("%q: segment %+v formats as %q", name, n, n.Seg().Name(seg16))
		}
		if n.Kind == History && HistoryFile(n.Timeline) != n.File {
			t.Fatalf("%q: history of %d is %q", name, n.Timeline, HistoryFile(n.Timeline))
		}
	})
}

func TestHistoryTimelines(t *testing.T) {
	ix := &Index{segSize: 16 << 20, segments: map[uint32]*RangeSet{}, histories: map[uint32]string{}}
	for _, n := range []string{"FFFFFFFF.history", "00000003.history.lz4", "00000002.history", "000000040000000000000001.lz4"} {
		ix.add("wal_005/"+n, ParseName(n, 16<<20))
	}
	if got := ix.HistoryTimelines(); !slices.Equal(got, []uint32{2, 3, 0xFFFFFFFF}) {
		t.Fatalf("HistoryTimelines() = %v", got)
	}
}

package push

import (
	"slices"
	"testing"

	"github.com/tusk-pg/tusk/internal/pg"
)

func TestRelationOf(t *testing.T) {
	for name, want := range map[string]struct {
		k   relKey
		seg uint32
		ok  bool
	}{
		"/base/5/16384":   {relKey{1663, 5, 16384}, 0, true},
		"/base/5/16384.2": {relKey{1663, 5, 16384}, 2, true},
		"/pg_tblspc/16385/PG_17_202406281/5/1639": {relKey{16385, 5, 1639}, 0, true},
		"/global/1262":            {ok: false},
		"/base/5/16384_vm":        {ok: false},
		"/pg_tblspc/16385/5/1639": {ok: false},
	} {
		k, seg, ok := relationOf(name)
		if ok != want.ok || ok && (k != want.k || seg != want.seg) {
			t.Errorf("relationOf(%q) = %v %d %v", name, k, seg, ok)
		}
	}
}

func TestCoveringSummaries(t *testing.T) {
	all := []pg.WalSummary{
		{TLI: 1, Start: 300, End: 500}, {TLI: 1, Start: 100, End: 300}, {TLI: 1, Start: 500, End: 800},
		{TLI: 2, Start: 800, End: 900}, {TLI: 1, Start: 10, End: 100},
	}
	use, err := coveringSummaries(all, 1, 150, 600)
	if err != nil {
		t.Fatal(err)
	}
	if len(use) != 3 || use[0].Start != 100 || use[2].End != 800 {
		t.Errorf("covering [150, 600): %v", use)
	}
	if _, err := coveringSummaries(all, 1, 150, 850); err == nil {
		t.Error("a range past the last summary is covered")
	}
	gap := []pg.WalSummary{{TLI: 1, Start: 100, End: 300}, {TLI: 1, Start: 310, End: 800}}
	if _, err := coveringSummaries(gap, 1, 150, 600); err == nil {
		t.Error("a gap between summaries is covered")
	}
	if _, err := coveringSummaries(all, 2, 150, 600); err == nil {
		t.Error("another timeline's summaries cover the range")
	}
}

func TestChangedFileBlocks(t *testing.T) {
	k := relKey{1663, 5, 16384}
	cb := &changedBlocks{
		blocks: map[relKey][]uint32{k: {1, 5, 130, 131, 260}},
		limits: map[relKey]uint32{},
	}
	// Segments of 128 blocks.
	if got := cb.fileBlocks(nil, k, 0, 128, 128); !slices.Equal(got, []uint32{1, 5}) {
		t.Errorf("segment 0: %v", got)
	}
	if got := cb.fileBlocks(nil, k, 1, 128, 128); !slices.Equal(got, []uint32{2, 3}) {
		t.Errorf("segment 1: %v", got)
	}
	// Blocks past the file's current end are left out.
	if got := cb.fileBlocks(nil, k, 2, 128, 3); len(got) != 0 {
		t.Errorf("segment 2 of 3 blocks: %v", got)
	}
	// Truncated to 4 blocks, then grown again: everything from 4 on.
	cb.limits[k] = 4
	if got := cb.fileBlocks(nil, k, 0, 128, 7); !slices.Equal(got, []uint32{1, 4, 5, 6}) {
		t.Errorf("after a truncation: %v", got)
	}
	if got := cb.fileBlocks(nil, relKey{1663, 5, 1}, 0, 128, 10); len(got) != 0 {
		t.Errorf("unchanged relation: %v", got)
	}
}

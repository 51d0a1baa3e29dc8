package push

import "testing"

// TestCorruptBlocks: findings are recorded as WAL-G records them, sorted
// and cut at ten unless every block is stored. The page checks themselves
// are internal/pgdata's.
func TestCorruptBlocks(t *testing.T) {
	cb := corruptBlocks([]uint32{30, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, false)
	if cb.CorruptBlocksCount != 12 || len(cb.SomeCorruptBlocks) != 10 || cb.SomeCorruptBlocks[0] != 1 {
		t.Errorf("%+v", cb)
	}
	if cb := corruptBlocks([]uint32{3, 1}, true); len(cb.SomeCorruptBlocks) != 2 || corruptBlocks(nil, true) != nil {
		t.Errorf("%+v", cb)
	}
}

package push

import (
	"io"
	"slices"

	"github.com/tusk-pg/tusk/internal/backup"
)

// corruptBlocks renders the findings as WAL-G records them: block numbers
// relative to the file, sorted, at most maxCorruptBlocks unless storeAll.
func corruptBlocks(blocks []uint32, storeAll bool) *backup.CorruptBlocks {
	if len(blocks) == 0 {
		return nil
	}
	slices.Sort(blocks)
	some := blocks
	if !storeAll && len(some) > maxCorruptBlocks {
		some = some[:maxCorruptBlocks]
	}
	return &backup.CorruptBlocks{CorruptBlocksCount: len(blocks), SomeCorruptBlocks: slices.Clone(some)}
}

// maxCorruptBlocks is WAL-G's MaxCorruptBlocksInFileDesc.
const maxCorruptBlocks = 10

// readAtFunc adapts an io.ReaderAt for pgdata.PageVerifier.Reread.
func readAtFunc(r io.ReaderAt) func(p []byte, off int64) error {
	return func(p []byte, off int64) error {
		_, err := r.ReadAt(p, off)
		return err
	}
}

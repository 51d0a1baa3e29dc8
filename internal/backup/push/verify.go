package push

import (
	"encoding/binary"
	"io"
	"slices"

	"github.com/tusk-pg/tusk/internal/backup"
)

// Page layout facts (PostgreSQL's bufpage.h): pd_lsn is two native-endian
// uint32 (high, low) at offset 0, pd_checksum a uint16 at offset 8, pd_upper
// a uint16 at offset 14. tusk supports little-endian hosts only, like every
// platform it is built for.
const (
	pageLSNOffset      = 0
	pageChecksumOffset = 8
	pageUpperOffset    = 14
	pageHeaderSize     = 24
	checksumSums       = 32
	fnvPrime           = 16777619
)

// checksumBaseOffsets seed the 32 parallel FNV-1a-like sums
// (checksum_impl.h).
var checksumBaseOffsets = [checksumSums]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// pageChecksum computes PostgreSQL's data page checksum of page (whose
// length is the block size, a multiple of 128) for absolute block number
// blkno, as if pd_checksum were zero.
func pageChecksum(page []byte, blkno uint32) uint16 {
	sums := checksumBaseOffsets
	comp := func(s, v uint32) uint32 {
		t := s ^ v
		return t*fnvPrime ^ t>>17
	}
	for i := 0; i+4*checksumSums <= len(page); i += 4 * checksumSums {
		for j := range checksumSums {
			off := i + 4*j
			v := binary.LittleEndian.Uint32(page[off:])
			if off == pageChecksumOffset {
				v &^= 0xFFFF // pd_checksum (the low half of this word) counts as zero
			}
			sums[j] = comp(sums[j], v)
		}
	}
	for range 2 {
		for j := range checksumSums {
			sums[j] = comp(sums[j], 0)
		}
	}
	var r uint32
	for _, s := range sums {
		r ^= s
	}
	r ^= blkno
	return uint16(r%65535 + 1)
}

// pageState is the verdict on one page.
type pageState int

const (
	pageOK pageState = iota
	pageSkipped
	pageBad
)

// checkPage verifies one page the way PostgreSQL's base backup does: new
// pages (pd_upper 0) have no checksum yet, and pages changed since the
// backup started (LSN at or past startLSN) may be torn by a concurrent
// write but are restored from full-page images in the WAL, so only older
// pages are judged.
func checkPage(page []byte, blkno uint32, startLSN uint64) pageState {
	if len(page) < pageHeaderSize {
		return pageSkipped
	}
	if binary.LittleEndian.Uint16(page[pageUpperOffset:]) == 0 {
		return pageSkipped
	}
	lsn := uint64(binary.LittleEndian.Uint32(page[pageLSNOffset:]))<<32 | uint64(binary.LittleEndian.Uint32(page[pageLSNOffset+4:]))
	if lsn >= startLSN {
		return pageSkipped
	}
	if binary.LittleEndian.Uint16(page[pageChecksumOffset:]) != pageChecksum(page, blkno) {
		return pageBad
	}
	return pageOK
}

// pageVerifier checks the pages of one relation file as they stream by.
type pageVerifier struct {
	blockSize  int
	firstBlock uint32 // absolute number of the file's first block
	startLSN   uint64
	// reread reads the page at off again (the first read may have caught a
	// write in progress); nil disables the retry.
	reread  func(p []byte, off int64) error
	scratch []byte // one page, for rereads
	corrupt []uint32
}

// inspect is a copyMember callback: p starts at file offset off, a multiple
// of the block size.
func (v *pageVerifier) inspect(off int64, p []byte) {
	bs := v.blockSize
	for i := 0; i+bs <= len(p); i += bs {
		blk := uint32((off + int64(i)) / int64(bs))
		abs := v.firstBlock + blk
		if checkPage(p[i:i+bs], abs, v.startLSN) != pageBad {
			continue
		}
		if v.reread != nil {
			if v.scratch == nil {
				v.scratch = make([]byte, bs)
			}
			if err := v.reread(v.scratch, off+int64(i)); err == nil && checkPage(v.scratch, abs, v.startLSN) != pageBad {
				continue
			}
		}
		v.corrupt = append(v.corrupt, blk)
	}
}

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

// readAtFunc adapts an io.ReaderAt for pageVerifier.reread.
func readAtFunc(r io.ReaderAt) func(p []byte, off int64) error {
	return func(p []byte, off int64) error {
		_, err := r.ReadAt(p, off)
		return err
	}
}

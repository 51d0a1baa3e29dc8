package pgdata

import "encoding/binary"

// Page layout facts (PostgreSQL's bufpage.h): pd_lsn is two native-endian
// uint32 (high, low) at offset 0, pd_checksum a uint16 at offset 8, then
// pd_flags, pd_lower, pd_upper, pd_special and pd_pagesize_version. tusk
// supports little-endian hosts only, like every platform it is built for.
const (
	PageLSNOffset         = 0
	PageChecksumOffset    = 8
	PageFlagsOffset       = 10
	PageLowerOffset       = 12
	PageUpperOffset       = 14
	PageSpecialOffset     = 16
	PageSizeVersionOffset = 18
	PageHeaderSize        = 24

	pageValidFlags = 0x7
	// pageMaxLayoutVersion is the newest page layout WAL-G accepts (4 is
	// PostgreSQL's since 8.3; 5 is a 64-bit-xid fork's, which keeps pd_lsn).
	pageMaxLayoutVersion = 5

	checksumSums = 32
	fnvPrime     = 16777619
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

// PageChecksum computes PostgreSQL's data page checksum (pg_checksum_page)
// of page, whose length is the block size (a multiple of 128), for the
// absolute block number blkno, as if pd_checksum were zero.
func PageChecksum(page []byte, blkno uint32) uint16 {
	sums := checksumBaseOffsets
	comp := func(s, v uint32) uint32 {
		t := s ^ v
		return t*fnvPrime ^ t>>17
	}
	for i := 0; i+4*checksumSums <= len(page); i += 4 * checksumSums {
		for j := range checksumSums {
			off := i + 4*j
			v := binary.LittleEndian.Uint32(page[off:])
			if off == PageChecksumOffset {
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

// PageLSN is the page's pd_lsn.
func PageLSN(p []byte) uint64 {
	return uint64(binary.LittleEndian.Uint32(p[PageLSNOffset:]))<<32 | uint64(binary.LittleEndian.Uint32(p[PageLSNOffset+4:]))
}

// PageIsNew reports a page never initialised (pd_upper 0): it has no
// checksum and no LSN yet.
func PageIsNew(p []byte) bool { return binary.LittleEndian.Uint16(p[PageUpperOffset:]) == 0 }

// PageHeaderValid is WAL-G's plausibility check of an initialised page's
// header before its LSN is trusted: known flags, pd_lower ≤ pd_upper ≤
// pd_special ≤ blockSize, a non-zero LSN, and the page size and a known
// layout version in pd_pagesize_version.
func PageHeaderValid(p []byte, blockSize int) bool {
	le := binary.LittleEndian
	flags := le.Uint16(p[PageFlagsOffset:])
	lower := le.Uint16(p[PageLowerOffset:])
	upper := le.Uint16(p[PageUpperOffset:])
	special := le.Uint16(p[PageSpecialOffset:])
	sizeVersion := le.Uint16(p[PageSizeVersionOffset:])
	return flags&pageValidFlags == flags && lower >= PageHeaderSize && lower <= upper && upper <= special &&
		int(special) <= blockSize && PageLSN(p) != 0 &&
		int(sizeVersion&0xFF00) == blockSize && sizeVersion&0xFF <= pageMaxLayoutVersion
}

// PageState is the verdict on one page's checksum.
type PageState int

const (
	PageOK PageState = iota
	// PageSkipped: not judged (new, too short, or changed since startLSN).
	PageSkipped
	PageBad
)

// CheckPage verifies one page the way PostgreSQL's base backup does: new
// pages have no checksum yet, and pages changed since the backup started
// (LSN at or past startLSN) may be torn by a concurrent write but are
// restored from full-page images in the WAL, so only older pages are
// judged.
func CheckPage(page []byte, blkno uint32, startLSN uint64) PageState {
	if len(page) < PageHeaderSize || PageIsNew(page) || PageLSN(page) >= startLSN {
		return PageSkipped
	}
	if binary.LittleEndian.Uint16(page[PageChecksumOffset:]) != PageChecksum(page, blkno) {
		return PageBad
	}
	return PageOK
}

// PageVerifier checks the pages of one relation file segment as they
// stream by.
type PageVerifier struct {
	BlockSize  int
	FirstBlock uint32 // absolute number of the segment's first block
	StartLSN   uint64
	// Reread reads the page at off again (the first read may have caught
	// a write in progress); nil disables the retry.
	Reread func(p []byte, off int64) error
	// Corrupt collects the block numbers, relative to the file, of pages
	// that failed (and failed again when reread).
	Corrupt []uint32
	scratch []byte // one page, for rereads
}

// Inspect checks the whole pages of p, which starts at file offset off (a
// multiple of the block size).
func (v *PageVerifier) Inspect(off int64, p []byte) {
	bs := v.BlockSize
	for i := 0; i+bs <= len(p); i += bs {
		blk := uint32((off + int64(i)) / int64(bs))
		abs := v.FirstBlock + blk
		if CheckPage(p[i:i+bs], abs, v.StartLSN) != PageBad {
			continue
		}
		if v.Reread != nil {
			if v.scratch == nil {
				v.scratch = make([]byte, bs)
			}
			if err := v.Reread(v.scratch, off+int64(i)); err == nil && CheckPage(v.scratch, abs, v.StartLSN) != PageBad {
				continue
			}
		}
		v.Corrupt = append(v.Corrupt, blk)
	}
}

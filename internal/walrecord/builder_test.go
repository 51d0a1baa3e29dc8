package walrecord

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
)

// walBuilder writes WAL the way PostgreSQL lays it out (page headers,
// continuation records, MAXALIGN, XLOG_SWITCH padding), so tests can put
// records exactly where they need them: across pages, across segments,
// larger than a segment.
type walBuilder struct {
	segSize, blcksz int
	magic           uint16
	start           uint64 // LSN of buf[0], a segment start
	buf             []byte
	prev            uint64
	lsns            []uint64 // every record written, in order
}

func newWALBuilder(startSeg uint64, segSize, blcksz int) *walBuilder {
	return &walBuilder{segSize: segSize, blcksz: blcksz, magic: 0xD110, start: startSeg * uint64(segSize)}
}

func (b *walBuilder) pos() uint64 { return b.start + uint64(len(b.buf)) }

// pageHeader writes the header of the page starting at pos, continuing a
// record with rem bytes left (0: none).
func (b *walBuilder) pageHeader(rem uint32) {
	p := b.pos()
	info := uint16(0)
	if rem > 0 {
		info |= xlpFirstIsContrecord
	}
	long := p%uint64(b.segSize) == 0
	if long {
		info |= xlpLongHeader
	}
	h := make([]byte, shortPageHeader)
	binary.LittleEndian.PutUint16(h[0:], b.magic)
	binary.LittleEndian.PutUint16(h[2:], info)
	binary.LittleEndian.PutUint32(h[4:], 1)
	binary.LittleEndian.PutUint64(h[8:], p)
	binary.LittleEndian.PutUint32(h[16:], rem)
	if long {
		h = append(h[:20], make([]byte, longPageHeader-20)...)
		binary.LittleEndian.PutUint64(h[20:], 7300000000000000001)
		binary.LittleEndian.PutUint32(h[32:], uint32(b.segSize))
		binary.LittleEndian.PutUint32(h[36:], uint32(b.blcksz))
	}
	b.buf = append(b.buf, h...)
}

// write appends the bytes of one record, adding page headers.
func (b *walBuilder) write(rec []byte) {
	for len(rec) > 0 {
		if b.pos()%uint64(b.blcksz) == 0 {
			b.pageHeader(uint32(len(rec)))
		}
		room := b.blcksz - int(b.pos()%uint64(b.blcksz))
		n := min(room, len(rec))
		b.buf = append(b.buf, rec[:n]...)
		rec = rec[n:]
	}
}

// align pads to MAXALIGN and opens a page when at a page boundary.
func (b *walBuilder) align() {
	for b.pos()%8 != 0 {
		b.buf = append(b.buf, 0)
	}
	if b.pos()%uint64(b.blcksz) == 0 {
		b.pageHeader(0)
	}
}

// record appends a record whose body (block headers, data) is body and
// returns its LSN.
func (b *walBuilder) record(rmid, info uint8, body []byte) uint64 {
	b.align()
	lsn := b.pos()
	rec := make([]byte, HeaderSize+len(body))
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(rec)))
	binary.LittleEndian.PutUint32(rec[4:], 742)
	binary.LittleEndian.PutUint64(rec[8:], b.prev)
	rec[16], rec[17] = info, rmid
	copy(rec[HeaderSize:], body)
	crc := crc32.Update(0, castagnoli, rec[HeaderSize:])
	crc = crc32.Update(crc, castagnoli, rec[:crcOffset])
	binary.LittleEndian.PutUint32(rec[crcOffset:], crc)
	b.write(rec)
	b.prev = lsn
	b.lsns = append(b.lsns, lsn)
	return lsn
}

// mainData is a body holding only main data.
func mainData(d []byte) []byte {
	if len(d) < 256 {
		return append([]byte{blockIDDataShort, byte(len(d))}, d...)
	}
	h := []byte{blockIDDataLong, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(h[1:], uint32(len(d)))
	return append(h, d...)
}

func pgMicros(t time.Time) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(t.Sub(pgEpoch)/time.Microsecond))
	return b[:]
}

func (b *walBuilder) restorePoint(name string, at time.Time) uint64 {
	d := make([]byte, 8+restorePointNameLen)
	copy(d, pgMicros(at))
	copy(d[8:], name)
	return b.record(RMXLog, xlogRestorePoint, mainData(d))
}

// commit writes a commit record with a block reference before the main
// data, as a record with a full-page image would have, so MainData must
// walk the block headers.
func (b *walBuilder) commit(at time.Time) uint64 {
	d := append(pgMicros(at), 0, 0, 0, 0) // xact_time, xinfo
	body := []byte{blockIDOrigin, 1, 0, blockIDTopXID, 9, 9, 0, 0}
	return b.record(RMXact, xactCommit, append(body, mainData(d)...))
}

// filler writes a record of n body bytes from a resource manager
// restore-window ignores (heap), with a block reference carrying them.
func (b *walBuilder) filler(n int) uint64 {
	if n > 0xFFFF {
		return b.record(10, 0x00, mainData(bytes.Repeat([]byte{0xCD}, n)))
	}
	body := []byte{0, 0x20, 0, 0} // block 0, BKPBLOCK_HAS_DATA, data_length
	binary.LittleEndian.PutUint16(body[2:], uint16(n))
	body = append(body, make([]byte, 16)...) // RelFileLocator, BlockNumber
	return b.record(10, 0x00, append(body, bytes.Repeat([]byte{0xAB}, n)...))
}

// moveTo writes fillers until the next record would start at offset
// pageOff of a page.
func (b *walBuilder) moveTo(pageOff int) {
	for {
		b.align()
		cur := int(b.pos() % uint64(b.blcksz))
		if dist := pageOff - cur; dist >= 48 {
			b.filler(dist - 44)
			return
		}
		if left := b.blcksz - cur; left >= 48 {
			b.filler(left - 44)
		} else {
			b.filler(0)
		}
	}
}

// toLastPage writes fillers until the position is on a segment's last
// page.
func (b *walBuilder) toLastPage() {
	for b.pos()%uint64(b.segSize) < uint64(b.segSize-b.blcksz) {
		b.filler(100)
	}
}

// switchSegment writes an XLOG_SWITCH record and pads to the segment end
// with pages that hold no records.
func (b *walBuilder) switchSegment() uint64 {
	lsn := b.record(RMXLog, xlogSwitch, nil)
	for b.pos()%uint64(b.segSize) != 0 {
		if b.pos()%uint64(b.blcksz) == 0 {
			b.pageHeader(0)
			continue
		}
		b.buf = append(b.buf, 0)
	}
	return lsn
}

// finish pads the last segment with zeroes (unwritten WAL) and returns
// the segments.
func (b *walBuilder) finish() [][]byte {
	for len(b.buf)%b.segSize != 0 {
		b.buf = append(b.buf, 0)
	}
	var segs [][]byte
	for off := 0; off < len(b.buf); off += b.segSize {
		segs = append(segs, b.buf[off:off+b.segSize])
	}
	return segs
}

func (b *walBuilder) firstSeg() uint64 { return b.start / uint64(b.segSize) }

// decoded is what a test decoder saw.
type decoded struct {
	recs   []Record // Data copied
	breaks []pg.LSN
	why    []error
}

func decodeSegments(t testing.TB, segSize int64, keep int, firstSeg uint64, segs [][]byte, skip map[int]bool) *decoded {
	t.Helper()
	out := &decoded{}
	d, err := NewDecoder(Options{
		SegmentSize: segSize,
		KeepBytes:   keep,
		OnRecord: func(r *Record) error {
			c := *r
			c.Data = bytes.Clone(r.Data)
			out.recs = append(out.recs, c)
			return nil
		},
		OnBreak: func(at pg.LSN, why error) {
			out.breaks = append(out.breaks, at)
			out.why = append(out.why, why)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		if skip[i] {
			d.Gap()
			continue
		}
		if err := d.Segment(firstSeg+uint64(i), bytes.NewReader(s)); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
	return out
}

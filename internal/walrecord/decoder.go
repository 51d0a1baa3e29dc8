// Package walrecord reads PostgreSQL WAL records from archived segments as
// a stream: page headers (short and long), records that span pages and
// segments (XLP_FIRST_IS_CONTRECORD continuations), segment switches,
// overwritten continuation records (PostgreSQL 15 and later), and the
// record header CRC-32C. It knows the page and record layout of
// PostgreSQL 13 to 18, which did not change between them; the few
// version-dependent bits (block image flags) are chosen by the page magic.
//
// tusk reads WAL records for restore-window, which needs the restore
// points and the commit/abort times; no Go library decodes WAL records, so
// the format is implemented here from PostgreSQL's xlogreader.c and
// xlogrecord.h.
//
// Memory: a Decoder holds one WAL page (XLOG_BLCKSZ, at most 64 KiB; 8 KiB
// in a default build) and the first KeepBytes bytes of the record being
// assembled (DefaultKeep, 8 KiB, unless set). A record larger than that —
// up to PostgreSQL's 1 GiB limit, spanning many pages and segments — is
// streamed: its bytes go through the CRC and are dropped, and the caller
// sees its header and first KeepBytes bytes. So memory does not depend on
// record, segment or archive size.
package walrecord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/tusk-pg/tusk/internal/pg"
)

// Page header layout (xlog_internal.h).
const (
	shortPageHeader = 24 // MAXALIGN(sizeof(XLogPageHeaderData))
	longPageHeader  = 40 // MAXALIGN(sizeof(XLogLongPageHeaderData))

	xlpFirstIsContrecord          = 0x0001
	xlpLongHeader                 = 0x0002
	xlpBkpRemovable               = 0x0004
	xlpFirstIsOverwriteContrecord = 0x0008
	xlpAllFlags                   = 0x000F

	// pageMagicMin is PostgreSQL 9.6's page magic; every server this
	// reader knows writes a higher one.
	pageMagicMin = 0xD093

	minBlockSize = 1 << 10
	maxBlockSize = 1 << 16
)

// Record header layout (xlogrecord.h).
const (
	// HeaderSize is SizeOfXLogRecord: xl_tot_len, xl_xid, xl_prev,
	// xl_info, xl_rmid, 2 padding bytes, xl_crc.
	HeaderSize = 24
	crcOffset  = 20
	// MaxRecordSize bounds xl_tot_len: PostgreSQL refuses to write a
	// record over XLogRecordMaxSize (1020 MiB); anything above 1 GiB is
	// damage.
	MaxRecordSize = 1 << 30
)

// DefaultKeep is how many bytes of each record a Decoder keeps when
// Options.KeepBytes is 0: enough for every record restore-window reads
// (a restore point's 72 bytes, a commit's first 12 after its block
// headers).
const DefaultKeep = 8 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one decoded WAL record. Data aliases the decoder's buffer and
// is valid only during the OnRecord call.
type Record struct {
	// LSN is where the record starts; End is where the next one would
	// start, just after its last byte rounded up to 8 (PostgreSQL's
	// EndRecPtr, the LSN XLogInsert and pg_create_restore_point return).
	LSN, End pg.LSN
	TotLen   uint32
	XID      uint32
	Prev     pg.LSN
	Info     uint8
	RMID     uint8
	// Magic is the page magic of the page the record starts on: it
	// identifies the server version that wrote it.
	Magic uint16
	// Data is the first min(TotLen, KeepBytes) bytes of the record,
	// its header included.
	Data []byte
}

// Options configure a Decoder.
type Options struct {
	// SegmentSize is the WAL segment size in bytes; every segment's long
	// page header must agree.
	SegmentSize int64
	// KeepBytes is how much of each record is kept for OnRecord; 0 means
	// DefaultKeep.
	KeepBytes int
	// OnRecord is called for each record whose CRC holds, in WAL order.
	// An error stops the decoding and is returned by Segment.
	OnRecord func(*Record) error
	// OnBreak is called when the WAL cannot be read on from a position
	// (a bad page header, a bad record header or CRC, the end of written
	// WAL): recovery would stop there. Decoding resumes at the first
	// record that starts on a later page. A nil OnBreak ignores breaks.
	OnBreak func(at pg.LSN, reason error)
}

// Decoder assembles records from consecutive segments. The zero value is
// not usable; see NewDecoder.
type Decoder struct {
	opts  Options
	page  []byte // one page, sized by the first segment's header
	keep  []byte // first KeepBytes of the record in progress
	magic uint16

	// nextSeg is the segment that continues the stream; haveSeg says
	// whether any segment was read since the last Gap.
	nextSeg uint64
	haveSeg bool

	// synced: the reader knows where the next record starts (otherwise
	// it waits for a page whose first record it can find).
	synced bool
	// prev is the LSN of the last record read in an unbroken chain, 0
	// when unknown (after a resync); it checks xl_prev.
	prev pg.LSN
	// skipSegment: the rest of the current segment holds no records
	// (after an XLOG_SWITCH record or the end of written WAL).
	skipSegment bool

	// The record in progress.
	inRecord bool
	rec      Record
	hdr      [HeaderSize]byte
	got      uint32 // bytes of the record read so far
	crc      uint32 // CRC of the bytes after the header
	hdrOK    bool   // the header was validated
}

// NewDecoder returns a decoder for opts.
func NewDecoder(opts Options) (*Decoder, error) {
	if opts.SegmentSize <= 0 || opts.SegmentSize&(opts.SegmentSize-1) != 0 {
		return nil, fmt.Errorf("WAL segment size %d is not a power of two", opts.SegmentSize)
	}
	if opts.KeepBytes <= 0 {
		opts.KeepBytes = DefaultKeep
	}
	if opts.KeepBytes < HeaderSize {
		opts.KeepBytes = HeaderSize
	}
	return &Decoder{opts: opts, keep: make([]byte, 0, opts.KeepBytes)}, nil
}

// Gap tells the decoder that the next segment does not follow the last
// one read: a record in progress is dropped and the reader resyncs.
func (d *Decoder) Gap() {
	d.haveSeg = false
	d.desync()
}

// Prev is the LSN of the last record read, 0 when none was read since the
// last break or gap.
func (d *Decoder) Prev() pg.LSN { return d.prev }

func (d *Decoder) desync() {
	d.synced = false
	d.inRecord = false
	d.prev = 0
}

func (d *Decoder) brk(at pg.LSN, format string, args ...any) {
	if d.opts.OnBreak != nil {
		d.opts.OnBreak(at, fmt.Errorf(format, args...))
	}
	d.desync()
}

// Segment reads WAL segment number segNo from r, which must hold the
// decoded segment. A segment that does not follow the previous one is
// read as after Gap. Damaged WAL is reported through OnBreak, not as an
// error; the error is r's (a short segment included) or OnRecord's.
// Segment may stop reading r before its end when the rest of the segment
// holds no records.
func (d *Decoder) Segment(segNo uint64, r io.Reader) error {
	if !d.haveSeg || segNo != d.nextSeg {
		d.desync()
	}
	d.haveSeg = true
	d.nextSeg = segNo + 1
	d.skipSegment = false
	segSize := uint64(d.opts.SegmentSize)
	segStart := segNo * segSize

	// The long header says the page size.
	var head [longPageHeader]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return fmt.Errorf("segment %X: %w", segNo, shortRead(err))
	}
	blcksz, err := d.checkLongHeader(head[:], segStart)
	if err != nil {
		d.brk(pg.LSN(segStart), "%w", err)
		d.haveSeg = false
		return nil
	}
	if cap(d.page) < int(blcksz) {
		d.page = make([]byte, blcksz)
	}
	page := d.page[:blcksz]
	copy(page, head[:])
	if _, err := io.ReadFull(r, page[longPageHeader:]); err != nil {
		return fmt.Errorf("segment %X: %w", segNo, shortRead(err))
	}
	for off := uint64(0); ; {
		if err := d.pageRecords(page, pg.LSN(segStart+off), off == 0); err != nil {
			return err
		}
		off += uint64(blcksz)
		if off >= segSize || d.skipSegment {
			return nil
		}
		if _, err := io.ReadFull(r, page); err != nil {
			return fmt.Errorf("segment %X at %s: %w", segNo, pg.LSN(segStart+off), shortRead(err))
		}
	}
}

func shortRead(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("truncated: shorter than a segment")
	}
	return err
}

// checkLongHeader validates a segment's first page header and returns the
// page size it declares.
func (d *Decoder) checkLongHeader(h []byte, segStart uint64) (uint32, error) {
	magic := binary.LittleEndian.Uint16(h[0:])
	info := binary.LittleEndian.Uint16(h[2:])
	addr := binary.LittleEndian.Uint64(h[8:])
	segSize := binary.LittleEndian.Uint32(h[32:])
	blcksz := binary.LittleEndian.Uint32(h[36:])
	switch {
	case magic < pageMagicMin:
		return 0, fmt.Errorf("segment's first page: magic %#04x is not a WAL page magic", magic)
	case info&xlpLongHeader == 0 || info&^xlpAllFlags != 0:
		return 0, fmt.Errorf("segment's first page: flags %#04x lack a long header", info)
	case addr != segStart:
		return 0, fmt.Errorf("segment's first page: address %s, want %s", pg.LSN(addr), pg.LSN(segStart))
	case int64(segSize) != d.opts.SegmentSize:
		return 0, fmt.Errorf("segment's first page: segment size %d, want %d (WALG_PG_WAL_SIZE)", segSize, d.opts.SegmentSize)
	case blcksz < minBlockSize || blcksz > maxBlockSize || blcksz&(blcksz-1) != 0 || int64(blcksz) > d.opts.SegmentSize:
		return 0, fmt.Errorf("segment's first page: page size %d is not a power of two from %d to %d", blcksz, minBlockSize, maxBlockSize)
	}
	d.magic = magic
	return blcksz, nil
}

// pageRecords reads the records on one page at pageLSN.
func (d *Decoder) pageRecords(page []byte, pageLSN pg.LSN, first bool) error {
	hdrSize := uint32(shortPageHeader)
	if first {
		hdrSize = longPageHeader
	}
	magic := binary.LittleEndian.Uint16(page[0:])
	info := binary.LittleEndian.Uint16(page[2:])
	addr := binary.LittleEndian.Uint64(page[8:])
	remLen := binary.LittleEndian.Uint32(page[16:])
	if !first {
		var bad string
		switch {
		case magic != d.magic:
			bad = fmt.Sprintf("magic %#04x, the segment's is %#04x", magic, d.magic)
		case info&^xlpAllFlags != 0 || info&xlpLongHeader != 0:
			bad = fmt.Sprintf("flags %#04x", info)
		case pg.LSN(addr) != pageLSN:
			bad = fmt.Sprintf("address %s", pg.LSN(addr))
		}
		if bad != "" {
			if d.synced {
				d.brk(pageLSN, "page header at %s: %s", pageLSN, bad)
			}
			return nil
		}
	}
	pageSize := uint32(len(page))
	off := hdrSize
	if d.inRecord {
		want := d.rec.TotLen - d.got
		switch {
		case info&xlpFirstIsContrecord != 0 && remLen == want:
			n := min(want, pageSize-off)
			if err := d.feed(page[off:off+n], pageLSN+pg.LSN(off)); err != nil {
				return err
			}
			off += n
			if !d.inRecord && d.synced {
				if err := d.finish(pageLSN + pg.LSN(maxAlign(off))); err != nil {
					return err
				}
			}
			if !d.synced || d.inRecord || d.skipSegment {
				return nil
			}
			off = maxAlign(off)
		case info&xlpFirstIsOverwriteContrecord != 0 && info&xlpFirstIsContrecord == 0:
			// The server crashed inside this record and wrote over its
			// rest (PostgreSQL 15+): the record never existed.
			d.inRecord = false
		default:
			d.brk(d.rec.LSN, "record at %s: continuation missing on page %s (flags %#04x, %d bytes remaining, want %d)",
				d.rec.LSN, pageLSN, info, remLen, want)
		}
	}
	if !d.synced {
		// Resync: skip the continuation of a record begun before.
		if info&xlpFirstIsContrecord != 0 {
			if uint64(remLen) >= uint64(pageSize-off) {
				return nil
			}
			off = maxAlign(off + remLen)
		}
		d.synced = true
		d.prev = 0
	}
	for off < pageSize {
		at := pageLSN + pg.LSN(off)
		totLen := binary.LittleEndian.Uint32(page[off:])
		if totLen == 0 {
			// Zeroes where a record would start: the end of written WAL.
			d.brk(at, "end of WAL at %s", at)
			d.skipSegment = true
			return nil
		}
		if totLen < HeaderSize || totLen > MaxRecordSize {
			d.brk(at, "record at %s: length %d out of range", at, totLen)
			return nil
		}
		d.inRecord = true
		d.hdrOK = false
		d.got = 0
		d.crc = 0
		d.keep = d.keep[:0]
		d.rec = Record{LSN: at, TotLen: totLen, Magic: magic}
		n := min(totLen, pageSize-off)
		if err := d.feed(page[off:off+n], at); err != nil {
			return err
		}
		off += n
		if !d.synced || d.inRecord {
			return nil // broken, or continued on the next page
		}
		if err := d.finish(pageLSN + pg.LSN(maxAlign(off))); err != nil {
			return err
		}
		if !d.synced || d.skipSegment {
			return nil
		}
		off = maxAlign(off)
	}
	return nil
}

// feed adds the record bytes b, which start at LSN at. It clears
// inRecord once the record is complete, and desyncs on a bad header.
func (d *Decoder) feed(b []byte, at pg.LSN) error {
	if d.got < HeaderSize {
		n := copy(d.hdr[d.got:], b)
		d.got += uint32(n)
		d.keepBytes(b[:n])
		b = b[n:]
		if d.got == HeaderSize && !d.checkHeader() {
			return nil
		}
	}
	if len(b) > 0 {
		d.crc = crc32.Update(d.crc, castagnoli, b)
		d.keepBytes(b)
		d.got += uint32(len(b))
	}
	if d.got == d.rec.TotLen {
		d.inRecord = false
	}
	return nil
}

func (d *Decoder) keepBytes(b []byte) {
	if room := cap(d.keep) - len(d.keep); room > 0 {
		d.keep = append(d.keep, b[:min(room, len(b))]...)
	}
}

// checkHeader validates the complete record header (ValidXLogRecordHeader).
func (d *Decoder) checkHeader() bool {
	h := d.hdr[:]
	d.rec.XID = binary.LittleEndian.Uint32(h[4:])
	d.rec.Prev = pg.LSN(binary.LittleEndian.Uint64(h[8:]))
	d.rec.Info = h[16]
	d.rec.RMID = h[17]
	if d.prev != 0 && d.rec.Prev != d.prev {
		d.brk(d.rec.LSN, "record at %s: previous record %s, want %s", d.rec.LSN, d.rec.Prev, d.prev)
		return false
	}
	if d.prev == 0 && d.rec.Prev >= d.rec.LSN {
		d.brk(d.rec.LSN, "record at %s: previous record %s is not before it", d.rec.LSN, d.rec.Prev)
		return false
	}
	d.hdrOK = true
	return true
}

// finish checks the CRC of the complete record ending at end and hands
// it over.
func (d *Decoder) finish(end pg.LSN) error {
	crc := crc32.Update(d.crc, castagnoli, d.hdr[:crcOffset])
	if want := binary.LittleEndian.Uint32(d.hdr[crcOffset:]); crc != want {
		d.brk(d.rec.LSN, "record at %s: CRC %08x, header says %08x", d.rec.LSN, crc, want)
		return nil
	}
	d.rec.End = end
	d.rec.Data = d.keep
	d.prev = d.rec.LSN
	if d.rec.RMID == RMXLog && d.rec.Info&^infoMask == xlogSwitch {
		// The rest of the segment is padding.
		d.skipSegment = true
	}
	if d.opts.OnRecord != nil {
		if err := d.opts.OnRecord(&d.rec); err != nil {
			return err
		}
	}
	return nil
}

func maxAlign(n uint32) uint32 { return (n + 7) &^ 7 }

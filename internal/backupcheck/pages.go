package backupcheck

import (
	"bytes"
	"errors"
	"io"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pgdata"
)

// maxPageFaults is how many bad pages of one file are reported one line
// each; the rest are counted on one more line, so a file that is garbage
// throughout does not print a line per page.
const maxPageFaults = 10

// pageCheck is what judging the pages of one backup's data files needs:
// the cluster's pg_control (nil: not known, nothing is judged), the
// backup's start LSN (pages at or past it may be torn and are rebuilt
// from WAL, as in backup-push --verify), its files_metadata (which says
// which members are page increments) and reusable buffers.
type pageCheck struct {
	ctl      *pgdata.Control
	startLSN uint64
	fm       *backup.FilesMetadata
	delta    bool
	buf      []byte
	blocks   []uint32
}

// readBufSize is the read size of a data file member: a multiple of every
// block size PostgreSQL allows.
const readBufSize = 64 << 10

// enabled reports whether the pages of member name are judged, and the
// file's segment number.
func (pc *pageCheck) enabled(name string) (uint32, bool) {
	if pc == nil || pc.ctl == nil || pc.ctl.DataChecksumVersion == 0 {
		return 0, false
	}
	return pgdata.PagedFile(memberName(name))
}

// incremented reports whether member name is stored as a page increment:
// files_metadata says so; without it, a delta's member that starts with
// the increment signature is one.
func (pc *pageCheck) incremented(name string, head []byte) bool {
	if pc.fm != nil && pc.fm.Files != nil {
		d, ok := pc.fm.Files[name]
		if !ok {
			d = pc.fm.Files["/"+memberName(name)]
		}
		return d.IsIncremented
	}
	return pc.delta && backup.IsIncrement(head)
}

// checkMember reads one data file member from body, judging its pages,
// and returns the bytes read. Bad pages are faults against key; an error
// is a failure to read the stream (the tar or object is damaged).
func (pc *pageCheck) checkMember(r *Report, key, name string, segment uint32, body io.Reader) (int64, error) {
	if pc.buf == nil {
		pc.buf = make([]byte, readBufSize)
	}
	bad := &badPages{r: r, key: key, name: memberName(name)}
	defer bad.close()
	var sig [4]byte
	k, err := io.ReadFull(body, sig[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return int64(k), err
	}
	body = io.MultiReader(bytes.NewReader(sig[:k]), body)
	if pc.incremented(name, sig[:k]) {
		return pc.checkIncrement(bad, segment, body)
	}
	bs := int(pc.ctl.BlockSize)
	v := &pgdata.PageVerifier{BlockSize: bs, FirstBlock: segment * pc.ctl.RelSegBlocks, StartLSN: pc.startLSN}
	var total int64
	for {
		n, err := io.ReadFull(body, pc.buf)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return total + int64(n), err
		}
		whole := n - n%bs
		v.Inspect(total, pc.buf[:whole])
		r.Pages += int64(whole / bs)
		bad.add(v.Corrupt)
		v.Corrupt = v.Corrupt[:0]
		total += int64(n)
		if err != nil {
			// The end of the member (a partial last page is not judged,
			// as in backup-push --verify).
			return total, nil
		}
	}
}

// checkIncrement judges the pages of a page increment (only the pages it
// holds) and returns the bytes read. A malformed increment is a fault.
func (pc *pageCheck) checkIncrement(bad *badPages, segment uint32, body io.Reader) (int64, error) {
	cr := &countingReader{r: body}
	h, err := backup.ReadIncrementHeader(cr, pc.blocks)
	if err != nil {
		if errors.Is(err, backup.ErrInvalidIncrement) {
			bad.r.faultf(bad.key, "%s: %v", bad.name, err)
			_, err = io.Copy(io.Discard, cr)
		}
		return cr.n, err
	}
	pc.blocks = h.Blocks
	page := pc.buf[:backup.IncrementBlockSize]
	var v *pgdata.PageVerifier
	if pc.ctl.BlockSize == backup.IncrementBlockSize {
		v = &pgdata.PageVerifier{BlockSize: backup.IncrementBlockSize, FirstBlock: segment * pc.ctl.RelSegBlocks, StartLSN: pc.startLSN}
	}
	for i, blk := range h.Blocks {
		if _, err := io.ReadFull(cr, page); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				bad.r.faultf(bad.key, "%s: increment ends at page %d of %d", bad.name, i+1, len(h.Blocks))
				return cr.n, nil
			}
			return cr.n, err
		}
		if v != nil {
			v.Inspect(int64(blk)*backup.IncrementBlockSize, page)
			bad.r.Pages++
			bad.add(v.Corrupt)
			v.Corrupt = v.Corrupt[:0]
		}
	}
	_, err = io.Copy(io.Discard, cr)
	return cr.n, err
}

// badPages reports the bad pages of one file: a line each up to
// maxPageFaults, then one line counting the rest.
type badPages struct {
	r         *Report
	key, name string
	n         int
}

func (b *badPages) add(blocks []uint32) {
	for _, blk := range blocks {
		if b.n < maxPageFaults {
			b.r.faultf(b.key, "%s block %d: page checksum does not match", b.name, blk)
		}
		b.n++
	}
}

func (b *badPages) close() {
	if b.n > maxPageFaults {
		b.r.faultf(b.key, "%s: %d more pages whose checksum does not match", b.name, b.n-maxPageFaults)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readControl reads global/pg_control from its tar member. A pg_control
// that does not parse is a fault (ctl nil, problem set); err is a failure
// to read the stream.
func readControl(body io.Reader) (ctl *pgdata.Control, n int64, problem, err error) {
	b, err := io.ReadAll(io.LimitReader(body, 64<<10))
	n = int64(len(b))
	if err != nil {
		return nil, n, nil, err
	}
	rest, err := io.Copy(io.Discard, body)
	n += rest
	if err != nil {
		return nil, n, nil, err
	}
	c, perr := pgdata.ParseControl(b)
	if perr != nil {
		return nil, n, perr, nil
	}
	return &c, n, nil, nil
}

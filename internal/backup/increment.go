package backup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Page increments ("wi1") are how WAL-G stores a relation file in a delta
// backup: only the pages changed since the base backup, preceded by a
// header naming them. Layout (little-endian):
//
//	0   4      signature 'w' 'i' '1' 0x55 (byte 2 is the format version)
//	4   8      file size at backup time
//	12  4      block count n
//	16  4·n    block numbers, ascending
//	…   n·8192 page images in the same order
//
// The OrioleDB variant (an extra page-size field) is not supported.

const (
	// IncrementBlockSize is the page size of increments (WALG_PG_BLOCK_SIZE).
	IncrementBlockSize = 8192
	// IncrementHeaderSize is the fixed part of the header.
	IncrementHeaderSize = 16
	// MaxIncrementBlocks bounds the block list of one increment: 2^22
	// blocks are a 32 GiB file, far beyond PostgreSQL's largest segment
	// size, so the block list never needs more than 16 MiB.
	MaxIncrementBlocks = 1 << 22

	incrementMagic0, incrementMagic1, incrementVersion, incrementMagic3 = 'w', 'i', '1', 0x55
)

// IsIncrement reports whether head, the first bytes of a file, starts
// with an increment's signature (any version).
func IsIncrement(head []byte) bool {
	return len(head) >= 4 && head[0] == incrementMagic0 && head[1] == incrementMagic1 && head[3] == incrementMagic3
}

// ErrInvalidIncrement is wrapped by every failure to decode an increment.
var ErrInvalidIncrement = errors.New("invalid page increment")

// IncrementSize is the size of an increment holding n pages: the tar
// member size WAL-G writes.
func IncrementSize(n int) int64 {
	return IncrementHeaderSize + 4*int64(n) + IncrementBlockSize*int64(n)
}

// IncrementHeader is the decoded header of an increment.
type IncrementHeader struct {
	// FileSize is the size of the file when it was backed up; a restore
	// truncates or extends the file to it.
	FileSize uint64
	// Blocks are the numbers of the pages that follow, ascending.
	Blocks []uint32
}

// WriteIncrementHeader writes the header of an increment of a file of
// fileSize bytes holding the given blocks; the pages must follow in the
// same order.
func WriteIncrementHeader(w io.Writer, fileSize uint64, blocks []uint32) error {
	var fixed [IncrementHeaderSize]byte
	fixed[0], fixed[1], fixed[2], fixed[3] = incrementMagic0, incrementMagic1, incrementVersion, incrementMagic3
	binary.LittleEndian.PutUint64(fixed[4:], fileSize)
	binary.LittleEndian.PutUint32(fixed[12:], uint32(len(blocks)))
	if _, err := w.Write(fixed[:]); err != nil {
		return err
	}
	// Block numbers go out in small batches: no buffer of the whole list.
	var chunk [1024]byte
	n := 0
	for _, b := range blocks {
		binary.LittleEndian.PutUint32(chunk[n:], b)
		n += 4
		if n == len(chunk) {
			if _, err := w.Write(chunk[:n]); err != nil {
				return err
			}
			n = 0
		}
	}
	if n > 0 {
		if _, err := w.Write(chunk[:n]); err != nil {
			return err
		}
	}
	return nil
}

// ReadIncrementHeader decodes an increment's header from r, leaving r at
// the first page. The block list grows only as its bytes actually arrive,
// so a hostile count cannot make it allocate more than the input holds
// (and never more than MaxIncrementBlocks entries). Blocks must be
// strictly ascending and lie within FileSize. blocks is reused for the
// result when large enough.
func ReadIncrementHeader(r io.Reader, blocks []uint32) (*IncrementHeader, error) {
	var fixed [IncrementHeaderSize]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrInvalidIncrement, eofIsUnexpected(err))
	}
	if !IsIncrement(fixed[:]) {
		return nil, fmt.Errorf("%w: invalid increment file header % x", ErrInvalidIncrement, fixed[:4])
	}
	if fixed[2] != incrementVersion {
		return nil, fmt.Errorf("%w: unknown increment file header version %q", ErrInvalidIncrement, fixed[2])
	}
	h := &IncrementHeader{FileSize: binary.LittleEndian.Uint64(fixed[4:])}
	count := binary.LittleEndian.Uint32(fixed[12:])
	if count > MaxIncrementBlocks {
		return nil, fmt.Errorf("%w: %d blocks, more than the %d allowed", ErrInvalidIncrement, count, MaxIncrementBlocks)
	}
	fileBlocks := h.FileSize / IncrementBlockSize
	if uint64(count) > fileBlocks {
		return nil, fmt.Errorf("%w: %d blocks in a file of %d bytes", ErrInvalidIncrement, count, h.FileSize)
	}
	blocks = blocks[:0]
	var chunk [1024]byte
	for remaining := int(count); remaining > 0; {
		n := min(remaining*4, len(chunk))
		if _, err := io.ReadFull(r, chunk[:n]); err != nil {
			return nil, fmt.Errorf("%w: block list (%d of %d read): %w", ErrInvalidIncrement, len(blocks), count, eofIsUnexpected(err))
		}
		for i := 0; i < n; i += 4 {
			b := binary.LittleEndian.Uint32(chunk[i:])
			if uint64(b) >= fileBlocks {
				return nil, fmt.Errorf("%w: block %d beyond the file size %d", ErrInvalidIncrement, b, h.FileSize)
			}
			if len(blocks) > 0 && b <= blocks[len(blocks)-1] {
				return nil, fmt.Errorf("%w: block %d after block %d: not ascending", ErrInvalidIncrement, b, blocks[len(blocks)-1])
			}
			blocks = append(blocks, b)
		}
		remaining -= n / 4
	}
	h.Blocks = blocks
	return h, nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// IncrementTarget is the restored file an increment is applied to.
type IncrementTarget interface {
	io.WriterAt
	Truncate(size int64) error
}

var _ IncrementTarget = (*os.File)(nil)

// ApplyIncrement reads one increment from r (exactly to its end: trailing
// bytes are an error) and applies it to f as WAL-G does: the file is set
// to the recorded size, then each page is written at its block's offset.
// page is the caller's reusable buffer of at least IncrementBlockSize
// bytes; blocks a reusable block list. It returns the (possibly grown)
// block list for reuse.
func ApplyIncrement(f IncrementTarget, r io.Reader, page []byte, blocks []uint32) ([]uint32, error) {
	if len(page) < IncrementBlockSize {
		return blocks, fmt.Errorf("page buffer of %d bytes, need %d", len(page), IncrementBlockSize)
	}
	page = page[:IncrementBlockSize]
	h, err := ReadIncrementHeader(r, blocks)
	if err != nil {
		return blocks, err
	}
	if h.FileSize > 1<<62 {
		return h.Blocks, fmt.Errorf("%w: file size %d", ErrInvalidIncrement, h.FileSize)
	}
	if err := f.Truncate(int64(h.FileSize)); err != nil {
		return h.Blocks, fmt.Errorf("set size %d: %w", h.FileSize, err)
	}
	for i, b := range h.Blocks {
		if _, err := io.ReadFull(r, page); err != nil {
			return h.Blocks, fmt.Errorf("%w: page %d of %d (block %d): %w", ErrInvalidIncrement, i+1, len(h.Blocks), b, eofIsUnexpected(err))
		}
		if _, err := f.WriteAt(page, int64(b)*IncrementBlockSize); err != nil {
			return h.Blocks, fmt.Errorf("write block %d: %w", b, err)
		}
	}
	var one [1]byte
	if n, _ := io.ReadFull(r, one[:]); n > 0 {
		return h.Blocks, fmt.Errorf("%w: unexpected tar data after the last page", ErrInvalidIncrement)
	}
	return h.Blocks, nil
}

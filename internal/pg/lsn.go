package pg

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a WAL position. WAL-G stores it as a plain integer in sentinels.
type LSN uint64

// ParseLSN parses PostgreSQL's text form "X/Y" (two hex numbers of at most
// eight digits each).
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("%q is not an LSN (want X/Y in hex)", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an LSN: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an LSN: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// String is PostgreSQL's text form, e.g. "0/2000028".
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// Segment is the number of the WAL segment holding l, for segments of
// segSize bytes.
func (l LSN) Segment(segSize int64) uint64 { return uint64(l) / uint64(segSize) }

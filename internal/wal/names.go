// Package wal implements wal-push, wal-fetch and wal-prefetch with WAL-G's
// object names and semantics.
package wal

import (
	"fmt"
	"strconv"
	"strings"
)

// Folder is the storage prefix of archived WAL (WAL-G's wal_005/).
const Folder = "wal_005/"

// Segment identifies a WAL segment by timeline and segment number.
type Segment struct {
	Timeline uint32
	No       uint64
}

// ParseSegment parses a 24-hex-digit segment file name for segments of
// segSize bytes.
func ParseSegment(name string, segSize int64) (Segment, error) {
	if !IsSegmentName(name) {
		return Segment{}, fmt.Errorf("%q is not a WAL segment name (24 hex digits)", name)
	}
	tli, _ := strconv.ParseUint(name[0:8], 16, 32)
	hi, _ := strconv.ParseUint(name[8:16], 16, 32)
	lo, _ := strconv.ParseUint(name[16:24], 16, 32)
	perID := segmentsPerXLogID(segSize)
	if lo >= perID {
		return Segment{}, fmt.Errorf("%q: segment part %08X out of range for %d-byte segments", name, lo, segSize)
	}
	return Segment{Timeline: uint32(tli), No: hi*perID + lo}, nil
}

// Name formats the segment as PostgreSQL names its file.
func (s Segment) Name(segSize int64) string {
	perID := segmentsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", s.Timeline, s.No/perID, s.No%perID)
}

// Next is the following segment on the same timeline.
func (s Segment) Next() Segment { return Segment{Timeline: s.Timeline, No: s.No + 1} }

// Before orders segments as WAL-G's prefetch cleaner does: a lower timeline,
// or the same timeline and a lower number.
func (s Segment) Before(o Segment) bool {
	return s.Timeline < o.Timeline || (s.Timeline == o.Timeline && s.No < o.No)
}

func segmentsPerXLogID(segSize int64) uint64 {
	return 0x100000000 / uint64(segSize)
}

// IsSegmentName reports whether name is exactly 24 upper-case hex digits.
func IsSegmentName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// IsArchivableName reports whether name is a file PostgreSQL archives:
// a segment, a timeline history file, a partial segment or a backup
// history file. It guards object keys and local paths against arbitrary
// names arriving through the daemon socket or the command line.
func IsArchivableName(name string) bool {
	switch {
	case IsSegmentName(name):
		return true
	case strings.HasSuffix(name, ".history"):
		return len(name) == 16 && isHex(name[:8])
	case strings.HasSuffix(name, ".partial"):
		return IsSegmentName(strings.TrimSuffix(name, ".partial"))
	case strings.HasSuffix(name, ".backup"):
		// 000000010000000000000002.00000028.backup
		return len(name) == 40 && IsSegmentName(name[:24]) && name[24] == '.' && isHex(name[25:33])
	}
	return false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// MarkerName is WAL-G's name for the background-upload marker of a file:
// the name without its last extension (00000002.history → 00000002).
func MarkerName(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[:i]
	}
	return name
}

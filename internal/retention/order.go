package retention

import (
	"regexp"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/wal"
)

// backupNamePattern finds a backup name anywhere in a storage key, as WAL-G
// does to tell which backup an object belongs to when ordering by start time.
var backupNamePattern = regexp.MustCompile(`base_[0-9A-F]{24}(_D_[0-9A-F]{24})?(_[0-9A-F]{8})?`)

// position is where a key sits in WAL order: the timeline and segment of
// the first 24-hex-digit run in the key (a WAL object's own segment, a
// backup's start segment).
func position(key string, segSize int64) (wal.Segment, bool) {
	for i := 0; i+24 <= len(key); i++ {
		if !isUpperHex(key[i : i+24]) {
			continue
		}
		s, err := wal.ParseSegment(key[i:i+24], segSize)
		// WAL-G parses only the leftmost run; a bad one makes the key
		// unordered, it does not look further.
		return s, err == nil
	}
	return wal.Segment{}, false
}

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// order compares storage keys the way WAL-G's delete does. A key without a
// WAL position is never "before" anything, so it is never deleted by the
// forms that delete what comes before a target.
type order struct {
	segSize int64
	// startTimes, when set (--use-sentinel-time and every backup has
	// metadata), orders backup objects by their backup's start time.
	startTimes map[string]time.Time
}

// less reports whether key a comes before key b.
func (o order) less(a, b string) bool {
	if o.startTimes == nil {
		pa, ok := position(a, o.segSize)
		if !ok {
			return false
		}
		pb, ok := position(b, o.segSize)
		return ok && pa.Before(pb)
	}
	na, nb := backupNamePattern.FindString(a), backupNamePattern.FindString(b)
	if na == "" || nb == "" {
		return o.segmentLess(a, b) // WAL: the segment number alone, timelines ignored
	}
	ta, okA := o.startTimes[na]
	tb, okB := o.startTimes[nb]
	if !okA || !okB {
		// WAL-G never deletes a backup folder it has no start time for (one
		// without a sentinel). tusk orders it by segment instead, so that the
		// folders of an interrupted delete, whose sentinels went first, are
		// finished by running the delete again.
		return o.segmentLess(a, b)
	}
	return ta.Before(tb)
}

func (o order) segmentLess(a, b string) bool {
	pa, ok := position(a, o.segSize)
	if !ok {
		return false
	}
	pb, ok := position(b, o.segSize)
	return ok && pa.No < pb.No
}

// backupOfKey is the backup name a key under basebackups_005/ belongs to:
// its first path element up to "_backup" (so a sentinel and its folder
// give the same name).
func backupOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, backup.Prefix)
	if !ok {
		return "", false
	}
	rest = strings.Trim(rest, "/")
	first, _, _ := strings.Cut(rest, "/")
	name, _, _ := strings.Cut(first, "_backup")
	return name, true
}

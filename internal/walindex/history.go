package walindex

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// maxHistorySize bounds a decoded timeline history file. PostgreSQL writes
// one short line per ancestor timeline, so real files are a few hundred
// bytes; the bound keeps a hostile object from filling memory.
const maxHistorySize = 1 << 20

// HistoryRecord is one line of a timeline history file: timeline Timeline
// ended at SwitchPoint, where its child timeline began.
type HistoryRecord struct {
	Timeline    uint32
	SwitchPoint pg.LSN
	Reason      string
}

// HistoryFile is PostgreSQL's name for timeline tli's history file.
func HistoryFile(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// ErrNoHistory is returned (wrapping storage.ErrNotFound) when a timeline's
// history file is not archived.
var ErrNoHistory = fmt.Errorf("timeline history file not archived: %w", storage.ErrNotFound)

// Opener opens an archived WAL file by PostgreSQL's name, decrypted and
// decompressed, probing extensions as WAL-G does; the error wraps
// storage.ErrNotFound when it is not archived. wal.Restorer is one.
type Opener interface {
	Open(ctx context.Context, name string) (io.ReadCloser, string, error)
}

// LoadHistory reads and parses timeline tli's history file. Every record
// must name a timeline below tli.
func LoadHistory(ctx context.Context, o Opener, tli uint32) ([]HistoryRecord, error) {
	name := HistoryFile(tli)
	rc, key, err := o.Open(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", name, ErrNoHistory)
	}
	if err != nil {
		return nil, err
	}
	if key == "" {
		key = wal.Folder + name
	}
	recs, err := ParseHistoryOf(rc, tli)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return recs, nil
}

// ParseHistoryOf parses timeline tli's history file: every record must name
// a timeline below tli.
func ParseHistoryOf(r io.Reader, tli uint32) ([]HistoryRecord, error) {
	recs, err := ParseHistory(r)
	if err != nil {
		return nil, err
	}
	if n := len(recs); n > 0 && recs[n-1].Timeline >= tli {
		return nil, fmt.Errorf("names timeline %d, not below the file's own timeline %d", recs[n-1].Timeline, tli)
	}
	return recs, nil
}

// ParseHistory parses a timeline history file as PostgreSQL reads it
// (timeline.c, readTimeLineHistory): blank lines and lines starting with
// '#' are skipped; every other line is "<timeline>\t<switch LSN>\t<reason>"
// with timelines in increasing order. Fields may be separated by any run of
// blanks, the reason may be empty. Anything else is an error naming the
// line: a history file decides where recovery changes timeline, so a
// damaged one must not be half-read.
func ParseHistory(r io.Reader) ([]HistoryRecord, error) {
	lr := &io.LimitedReader{R: r, N: maxHistorySize + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 512), maxHistorySize+1)
	var recs []HistoryRecord
	for line := 1; sc.Scan(); line++ {
		rec, ok, err := parseHistoryLine(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if !ok {
			continue
		}
		if n := len(recs); n > 0 && rec.Timeline <= recs[n-1].Timeline {
			return nil, fmt.Errorf("line %d: timeline %d after %d: timelines must increase", line, rec.Timeline, recs[n-1].Timeline)
		}
		recs = append(recs, rec)
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("larger than %d bytes", maxHistorySize)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return recs, nil
}

// isBlank is C's isspace.
func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// nextField splits off the first run of non-blank bytes after leading
// blanks.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isBlank(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func parseHistoryLine(b []byte) (HistoryRecord, bool, error) {
	tliField, rest := nextField(b)
	if len(tliField) == 0 || tliField[0] == '#' {
		return HistoryRecord{}, false, nil
	}
	tli, err := strconv.ParseUint(string(tliField), 10, 32)
	if err != nil || tli == 0 {
		return HistoryRecord{}, false, fmt.Errorf("timeline %q is not a timeline ID (1 to 4294967295)", clip(tliField))
	}
	lsnField, rest := nextField(rest)
	if len(lsnField) == 0 {
		return HistoryRecord{}, false, fmt.Errorf("timeline %d has no switch point LSN", tli)
	}
	lsn, err := pg.ParseLSN(string(lsnField))
	if err != nil {
		return HistoryRecord{}, false, fmt.Errorf("switch point %q is not an LSN", clip(lsnField))
	}
	reason := bytes.TrimFunc(rest, func(r rune) bool { return r < 0x80 && isBlank(byte(r)) })
	return HistoryRecord{Timeline: uint32(tli), SwitchPoint: lsn, Reason: string(reason)}, true, nil
}

// clip keeps error messages one short line whatever the input holds.
func clip(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}

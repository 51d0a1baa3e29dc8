package pgdata

import (
	"path"
	"strconv"
	"strings"
)

// RelFile is a relation data file name: <relnode>[_<fork>][.<segment>].
type RelFile struct {
	Node    string // decimal relfilenode
	Fork    string // "", "fsm", "vm" or "init"
	Segment uint32
}

// ParseRelFile parses a relation file name as PostgreSQL names them in a
// database directory. Temporary relations ("t<backend>_<node>...") are not
// matched.
func ParseRelFile(name string) (RelFile, bool) {
	var rf RelFile
	rest := name
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		seg, ok := ParseDigits(rest[i+1:])
		if !ok || seg == 0 || rest[i+1] == '0' {
			// ".0" is never written (segment 0 has no suffix), nor are
			// leading zeros: such a file is not a relation segment.
			return RelFile{}, false
		}
		rf.Segment = uint32(seg)
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '_'); i >= 0 {
		rf.Fork = rest[i+1:]
		switch rf.Fork {
		case "fsm", "vm", "init":
		default:
			return RelFile{}, false
		}
		rest = rest[:i]
	}
	if _, ok := ParseDigits(rest); !ok || (len(rest) > 1 && rest[0] == '0') {
		return RelFile{}, false
	}
	rf.Node = rest
	return rf, true
}

// ParseDigits parses a non-empty decimal number of at most 10 digits that
// fits in 32 bits (OIDs, segment numbers).
func ParseDigits(s string) (uint64, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return n, err == nil
}

// IsDatabaseDir reports whether rel (slash-separated, relative to PGDATA)
// is a database directory: base/<oid> or pg_tblspc/<oid>/<version>/<oid>.
func IsDatabaseDir(rel string) bool {
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) == 2 && parts[0] == "base":
		_, ok := ParseDigits(parts[1])
		return ok
	case len(parts) == 4 && parts[0] == "pg_tblspc":
		_, ok1 := ParseDigits(parts[1])
		_, ok2 := ParseDigits(parts[3])
		return ok1 && ok2
	}
	return false
}

// PagedFile reports whether the file rel (slash-separated, relative to
// PGDATA) holds pages whose checksums are verified, and its segment
// number: the main fork of a relation in a database directory or in
// global/. The other forks are left alone, as WAL-G's --verify does.
func PagedFile(rel string) (segment uint32, ok bool) {
	if dir := path.Dir(rel); !IsDatabaseDir(dir) && dir != "global" {
		return 0, false
	}
	rf, ok := ParseRelFile(path.Base(rel))
	if !ok || rf.Fork != "" {
		return 0, false
	}
	return rf.Segment, true
}

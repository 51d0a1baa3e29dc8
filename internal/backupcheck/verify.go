// Package backupcheck verifies a base backup in storage without restoring
// it (backup-verify): its sentinel and metadata parse, every backup of its
// delta chain is there, every tar object decrypts, decompresses and is a
// well-formed tar holding exactly the members files_metadata.json lists for
// it, pg_control parses, the data pages' checksums hold where the
// cluster has data checksums (internal/pgdata, as backup-push --verify
// judges them: pages changed after the backup started are not judged,
// and a delta's increments are judged for the pages they hold), and the
// WAL from the backup's start to its consistency point is archived,
// decodes and has the right length and first page.
//
// Memory is bounded like backup-fetch's: objects are streamed one at a time
// through one decryptor, one decompressor and a tar reader, and contents
// are discarded as they are read (data files through one 64 KiB buffer).
// What is held is per backup: its files_metadata.json (as backup-fetch
// holds it), the member names of one tar at a time and the block list of
// one increment.
package backupcheck

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// Fault is one problem found, naming the object it is in.
type Fault struct {
	Object  string `json:"object"`
	Problem string `json:"problem"`
}

// Report is the outcome of verifying one backup.
type Report struct {
	Backup string `json:"backup_name"`
	// Status is OK, or FAILURE when there is any fault.
	Status string `json:"status"`
	// Chain lists the backups a restore needs, full backup first.
	Chain []string `json:"chain"`
	Tars  int      `json:"tars"`
	Files int64    `json:"files"`
	Bytes int64    `json:"bytes"`
	// Pages counts the data pages read for checksum verification (none
	// when the cluster has no data checksums).
	Pages       int64   `json:"pages_checked"`
	WALSegments int     `json:"wal_segments"`
	Faults      []Fault `json:"faults"`
}

// Verifier checks backups in one storage.
type Verifier struct {
	Store   storage.Storage
	Crypter crypt.Crypter // nil: not encrypted
	// WAL opens archived WAL files, decoded (wal.Restorer).
	WAL         walindex.Opener
	SegmentSize int64
	Log         *slog.Logger
}

// Verify checks the backup name (or LATEST). An error means the check
// could not run (storage unreachable, no such backup); what is wrong with
// the backup itself is in the report's faults.
func (v *Verifier) Verify(ctx context.Context, name string) (*Report, error) {
	info, err := backup.Find(ctx, v.Store, name)
	if errors.Is(err, backup.ErrBackupNotFound) && name != backup.LatestName {
		// Named but without a sentinel: not a complete backup (or not one
		// at all), which is a fault, not a failure to check.
		r := &Report{Backup: name, Status: "FAILURE"}
		r.faultf(backup.SentinelKey(name), "missing: %s is not a complete backup", name)
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	r := &Report{Backup: info.Name, Faults: []Fault{}}
	defer func() {
		r.Status = "OK"
		if len(r.Faults) > 0 {
			r.Status = "FAILURE"
		}
	}()
	s, err := backup.FetchSentinel(ctx, v.Store, info.Name)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		r.fault(backup.SentinelKey(info.Name), err)
		return r, nil
	}
	if _, err := backup.FetchMetadata(ctx, v.Store, info.Name); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		r.fault(backup.MetadataKey(info.Name), err)
	}
	chain := []backup.ChainLink{{Name: info.Name, Sentinel: s}}
	if s.IsDelta() {
		c, err := backup.ResolveChain(ctx, v.Store, info.Name, s)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			r.fault(backup.SentinelKey(s.DeltaFrom), err)
		} else {
			chain = c
		}
	}
	for _, l := range chain {
		r.Chain = append(r.Chain, l.Name)
		if err := v.checkData(ctx, r, l); err != nil {
			return nil, err
		}
	}
	if err := v.checkWAL(ctx, r, info.Name, s); err != nil {
		return nil, err
	}
	return r, nil
}

// fault records err against object; a missing object is just "missing"
// (the error would repeat the key).
func (r *Report) fault(object string, err error) {
	p := err.Error()
	if errors.Is(err, storage.ErrNotFound) {
		p = "missing"
	}
	r.Faults = append(r.Faults, Fault{Object: object, Problem: p})
}

func (r *Report) faultf(object, format string, args ...any) {
	r.Faults = append(r.Faults, Fault{Object: object, Problem: fmt.Sprintf(format, args...)})
}

// checkData reads every tar of one backup and compares its members with
// files_metadata.json. Only a cancelled context is returned as an error.
func (v *Verifier) checkData(ctx context.Context, r *Report, l backup.ChainLink) error {
	var fm *backup.FilesMetadata
	if !l.Sentinel.FilesMetadataDisabled {
		m, err := backup.FetchFilesMetadata(ctx, v.Store, l.Name, l.Sentinel)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			r.fault(backup.FilesMetadataKey(l.Name), err)
		} else {
			fm = m
		}
	}
	tars, err := backup.ListTars(ctx, v.Store, l.Name)
	if err != nil {
		return err
	}
	prefix := backup.TarPartitionsKey(l.Name)
	if tars.PgControl == "" {
		r.faultf(prefix+"pg_control.tar", "missing: the backup has no pg_control tar")
	}
	// pg_control first: it says whether the cluster has data checksums.
	all := append(append([]string{tars.PgControl}, tars.Parts...), tars.BackupLabel)
	pc := &pageCheck{startLSN: uint64(l.Sentinel.LSN), fm: fm, delta: l.Sentinel.IsDelta()}
	stored := map[string]bool{}
	// Members seen in this backup's tars, to check files_metadata's
	// non-skipped files against.
	seen := map[string]bool{}
	tarFaults := false
	for _, t := range all {
		if t == "" {
			continue
		}
		stored[t] = true
		r.Tars++
		members, err := v.readTar(ctx, r, prefix+t, t, pc.memberReader(r, prefix+t, t == tars.PgControl))
		if err != nil {
			return err
		}
		if members == nil {
			tarFaults = true // a fault was recorded
			continue
		}
		for m := range members {
			seen[m] = true
		}
		if t == tars.PgControl {
			if !members["global/pg_control"] {
				r.faultf(prefix+t, "does not hold global/pg_control")
			}
			continue
		}
		if fm == nil || fm.TarFileSets == nil {
			continue
		}
		listed, ok := fm.TarFileSets[t]
		if !ok {
			r.faultf(prefix+t, "not listed in %s", backup.FilesMetadataKey(l.Name))
			continue
		}
		want := make(map[string]bool, len(listed))
		for _, m := range listed {
			want[memberName(m)] = true
		}
		for _, m := range sortedMissing(want, members) {
			r.faultf(prefix+t, "lacks %s, which files_metadata.json lists in it", m)
		}
		for _, m := range sortedMissing(members, want) {
			r.faultf(prefix+t, "holds %s, which files_metadata.json does not list in it", m)
		}
	}
	if fm == nil {
		return nil
	}
	for _, t := range sortedKeys(fm.TarFileSets) {
		if !stored[t] {
			r.faultf(prefix+t, "missing: files_metadata.json lists it")
		}
	}
	// Every stored file must be in some tar. With TarFileSets that is
	// checked against the lists (the tars against their lists above), so
	// a damaged tar is one fault, not one per file it held.
	listed := seen
	if fm.TarFileSets != nil {
		listed = map[string]bool{}
		for _, names := range fm.TarFileSets {
			for _, n := range names {
				listed[memberName(n)] = true
			}
		}
	} else if tarFaults {
		return nil
	}
	for _, f := range sortedKeys(fm.Files) {
		if d := fm.Files[f]; !d.IsSkipped && !listed[memberName(f)] {
			r.faultf(backup.FilesMetadataKey(l.Name), "%s is in no tar of the backup", f)
		}
	}
	return nil
}

// memberName is how a tar member or files_metadata entry names a file:
// WAL-G writes "/base/5/1259" in part tars and "backup_label" in others.
func memberName(n string) string { return strings.TrimPrefix(n, "/") }

// memberFunc reads one tar member's contents to their end, returning the
// bytes read; an error is a failure to read the stream.
type memberFunc func(h *tar.Header, body io.Reader) (int64, error)

// memberReader returns how the members of the tar at key are read: in
// pg_control's tar, global/pg_control is parsed into pc; in the others,
// the pages of data files are judged when the cluster has data checksums.
func (pc *pageCheck) memberReader(r *Report, key string, control bool) memberFunc {
	return func(h *tar.Header, body io.Reader) (int64, error) {
		if control && memberName(h.Name) == "global/pg_control" {
			ctl, n, problem, err := readControl(body)
			if problem != nil {
				r.faultf(key, "%v", problem)
			}
			if ctl != nil {
				pc.ctl = ctl
			}
			return n, err
		}
		if seg, ok := pc.enabled(h.Name); ok && h.Typeflag == tar.TypeReg {
			return pc.checkMember(r, key, h.Name, seg, body)
		}
		return io.Copy(io.Discard, body)
	}
}

// readTar streams one tar object through decryption, decompression and a
// tar reader, reading each member with member, and returns its member
// names (nil after recording a fault). Only a cancelled context is
// returned as an error.
func (v *Verifier) readTar(ctx context.Context, r *Report, key, name string, member memberFunc) (map[string]bool, error) {
	method, err := backup.TarMethod(name)
	if err != nil {
		r.fault(key, err)
		return nil, nil
	}
	body, err := v.Store.Get(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.fault(key, err)
		return nil, nil
	}
	defer body.Close()
	dec, err := pipe.Decode(body, method, v.Crypter)
	if err != nil {
		r.fault(key, err)
		return nil, nil
	}
	members := map[string]bool{}
	tr := tar.NewReader(dec)
	var files, bytes int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			var n int64
			n, err = member(h, tr)
			bytes += n
		}
		if err != nil {
			dec.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.faultf(key, "not a well-formed tar (after %d members): %v", len(members), err)
			return nil, nil
		}
		members[memberName(h.Name)] = true
		if h.Typeflag == tar.TypeReg {
			files++
		}
	}
	// The rest of the stream (tar padding) must decode too: a bad frame
	// or authentication tag at the very end is still a damaged object.
	_, err = io.Copy(io.Discard, dec)
	if cerr := dec.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.faultf(key, "damaged after the tar's end: %v", err)
		return nil, nil
	}
	r.Files += files
	r.Bytes += bytes
	return members, nil
}

// xlogPageMagicMin is the oldest WAL page magic WAL-G accepts (9.6's is
// higher); every supported server writes a larger one.
const xlogPageMagicMin = 0xD061

// checkWAL reads every segment from the backup's start to its consistency
// point (its finish LSN) on the backup's timeline. Only a cancelled context
// is returned as an error.
func (v *Verifier) checkWAL(ctx context.Context, r *Report, name string, s *backup.Sentinel) error {
	first, err := wal.ParseSegment(backup.WalFileName(name), v.SegmentSize)
	if err != nil {
		r.faultf(backup.SentinelKey(name), "no WAL segment in the backup name: %v", err)
		return nil
	}
	start, finish := pg.LSN(s.LSN).Segment(v.SegmentSize), pg.LSN(s.FinishLSN).Segment(v.SegmentSize)
	if s.FinishLSN > s.LSN && uint64(s.FinishLSN)%uint64(v.SegmentSize) == 0 {
		finish-- // ends exactly at a segment boundary
	}
	if s.LSN == 0 || finish < start || start != first.No {
		r.faultf(backup.SentinelKey(name), "start LSN %s and finish LSN %s do not fit the name's segment %s",
			pg.LSN(s.LSN), pg.LSN(s.FinishLSN), first.Name(v.SegmentSize))
		return nil
	}
	buf := make([]byte, 32<<10)
	for no := start; no <= finish; no++ {
		seg := wal.Segment{Timeline: first.Timeline, No: no}
		segName := seg.Name(v.SegmentSize)
		r.WALSegments++
		if err := v.readSegment(ctx, r, seg, segName, buf); err != nil {
			return err
		}
	}
	return nil
}

func (v *Verifier) readSegment(ctx context.Context, r *Report, seg wal.Segment, name string, buf []byte) error {
	rc, key, err := v.WAL.Open(ctx, name)
	if key == "" {
		key = wal.Folder + name
	}
	if errors.Is(err, storage.ErrNotFound) {
		r.faultf(key, "missing: the backup needs this WAL segment to become consistent")
		return nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.fault(key, err)
		return nil
	}
	var total int64
	var head []byte
	for {
		n, err := rc.Read(buf)
		if total < 24 && n > 0 {
			head = append(head, buf[:min(n, 24-int(total))]...)
		}
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			rc.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.faultf(key, "cannot be read: %v", err)
			return nil
		}
	}
	if err := rc.Close(); err != nil {
		r.faultf(key, "cannot be read: %v", err)
		return nil
	}
	if total != v.SegmentSize {
		r.faultf(key, "%d bytes, not a whole %d-byte segment (truncated?)", total, v.SegmentSize)
		return nil
	}
	// The first page header (XLogLongPageHeaderData): magic, then the
	// page's own address, which must be this segment's start.
	magic := binary.LittleEndian.Uint16(head[0:2])
	addr := binary.LittleEndian.Uint64(head[8:16])
	if want := seg.No * uint64(v.SegmentSize); magic < xlogPageMagicMin || addr != want {
		r.faultf(key, "first page header is not this segment's (magic %#x, page address %s, want %s)",
			magic, pg.LSN(addr), pg.LSN(want))
	}
	return nil
}

// sortedMissing lists the keys of a that b lacks, sorted.
func sortedMissing(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

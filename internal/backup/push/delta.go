package push

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/storage"
)

// DeltaOptions are the settings that make backup-push take a delta backup.
type DeltaOptions struct {
	// MaxSteps is WALG_DELTA_MAX_STEPS: deltas are taken only when it is
	// positive, and a chain never gets longer than it.
	MaxSteps int
	// Origin is WALG_DELTA_ORIGIN: "" or LATEST chains deltas;
	// LATEST_FULL takes every delta from the chain's full backup.
	Origin string
	// FromName and FromUserData select the base (--delta-from-name,
	// --delta-from-user-data); otherwise it is the latest backup.
	FromName     string
	FromUserData json.RawMessage
}

// OriginLatestFull is the WALG_DELTA_ORIGIN value that takes deltas from
// the chain's full backup.
const OriginLatestFull = "LATEST_FULL"

// deltaBase is the backup a delta is taken from.
type deltaBase struct {
	name     string
	sentinel *backup.Sentinel
	// count is the new delta's DeltaCount.
	count int
	// mtimes are the base's files (tar member names) with their mtimes in
	// Unix nanoseconds (noMTime when unknown): equal mtimes make a file
	// skipped, presence lets a relation file be stored as an increment.
	// Only this is kept of the base's files metadata, which is streamed.
	mtimes map[string]int64
	// everything: every file counts as in the base and changed (catchup:
	// the base is a standby's state at an LSN, not a stored backup).
	everything bool
}

// noMTime marks a base file whose mtime was not recorded.
const noMTime = math.MinInt64

// lookup reports whether a file is in the base, and with the same mtime.
func (d *deltaBase) lookup(name string, mtime time.Time) (inBase, unchanged bool) {
	if d.everything {
		return true, false
	}
	m, ok := d.mtimes[name]
	return ok, ok && m != noMTime && m == mtime.UnixNano()
}

// fullName is the chain's full backup: the new delta's DeltaFullName.
func (d *deltaBase) fullName() string {
	if d.sentinel.IsDelta() {
		return d.sentinel.DeltaFullName
	}
	return d.name
}

// chooseDeltaBase applies WAL-G's rules for a delta base; nil means a full
// backup. permanent is whether the new backup is to be permanent.
func chooseDeltaBase(ctx context.Context, store storage.Storage, o DeltaOptions, permanent bool, log *slog.Logger) (*deltaBase, error) {
	if o.MaxSteps <= 0 {
		if o.FromName != "" || len(o.FromUserData) > 0 {
			log.Warn("a delta base was named but WALG_DELTA_MAX_STEPS is 0: taking a full backup")
		}
		return nil, nil
	}
	var sel backup.Info
	var err error
	switch {
	case o.FromName != "":
		sel, err = backup.Find(ctx, store, o.FromName)
	case len(o.FromUserData) > 0:
		sel, err = backup.FindByUserData(ctx, store, o.FromUserData)
	default:
		sel, err = backup.Latest(ctx, store)
		if errors.Is(err, backup.ErrNoBackups) {
			log.Info("no backup to take a delta from: taking a full backup")
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("delta base: %w", err)
	}
	s, err := backup.FetchSentinel(ctx, store, sel.Name)
	if err != nil {
		return nil, fmt.Errorf("delta base: %w", err)
	}
	if s.LSN == 0 {
		log.Info("the delta base has no start LSN (an old backup): taking a full backup", "base", sel.Name)
		return nil, nil
	}
	count := s.DeltaCount + 1
	if count > o.MaxSteps {
		log.Info("the delta chain reached WALG_DELTA_MAX_STEPS: taking a full backup", "base", sel.Name, "max_steps", o.MaxSteps)
		return nil, nil
	}
	name := sel.Name
	if o.Origin == OriginLatestFull {
		// WAL-G keeps the count of the selected backup even so.
		if s.IsDelta() {
			name = s.DeltaFullName
			if s, err = backup.FetchSentinel(ctx, store, name); err != nil {
				return nil, fmt.Errorf("delta base (the full backup of %s): %w", sel.Name, err)
			}
		}
	} else if !permanent {
		basePermanent := s.IsPermanent
		if m, err := backup.FetchMetadata(ctx, store, name); err == nil {
			basePermanent = m.IsPermanent // backup-mark rewrites only metadata.json
		}
		if basePermanent {
			log.Info("the delta base is permanent and this backup is not: taking a full backup", "base", name)
			return nil, nil
		}
	}
	mtimes := map[string]int64{}
	err = backup.ForEachBackupFile(ctx, store, name, s, func(member string, d backup.FileDescription) error {
		m := int64(noMTime)
		if !d.MTime.IsZero() {
			m = d.MTime.UnixNano()
		}
		mtimes[member] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", name, err)
	}
	return &deltaBase{name: name, sentinel: s, count: count, mtimes: mtimes}, nil
}

// transactionStateDirs hold SLRU files, which have no page headers.
var transactionStateDirs = []string{"pg_xact", "pg_clog", "pg_multixact", "pg_subtrans", "pg_commit_ts", "pg_serial", "pg_notify", "pg_snapshots"}

// isIncrementable is WAL-G's isPagedFile on a tar member name: a main-fork
// relation segment ("16384" or "16384.2") of whole pages under base/ or a
// tablespace.
func isIncrementable(name string, size int64) bool {
	if size <= 0 || size%backup.IncrementBlockSize != 0 {
		return false
	}
	if !strings.Contains(name, "base") && !strings.Contains(name, "pg_tblspc") {
		return false
	}
	for _, d := range transactionStateDirs {
		if strings.Contains(name, d) {
			return false
		}
	}
	base := path.Base(name)
	node, seg, hasSeg := strings.Cut(base, ".")
	if _, ok := pgdata.ParseDigits(node); !ok {
		return false
	}
	if hasSeg {
		if _, ok := pgdata.ParseDigits(seg); !ok {
			return false
		}
	}
	return true
}

// pageVerdict is what a delta does with one page.
type pageVerdict int

const (
	pageUnchanged pageVerdict = iota
	pageChanged
	pageInvalid
)

// classifyPage is WAL-G's full-scan rule: a new page (pd_upper 0) is
// stored; a page whose header is not plausible makes the whole file be
// stored instead; a valid page is stored when its LSN is at or after the
// base backup's start.
func classifyPage(p []byte, baseLSN uint64) pageVerdict {
	if pgdata.PageIsNew(p) {
		return pageChanged
	}
	if !pgdata.PageHeaderValid(p, backup.IncrementBlockSize) {
		return pageInvalid
	}
	if pgdata.PageLSN(p) >= baseLSN {
		return pageChanged
	}
	return pageUnchanged
}

// scanChanged lists the pages of the open file f (size bytes at open) a
// delta from baseLSN must store. ok is false when a page is not valid: the
// file is then stored whole. A file that shrank ends the scan early (WAL
// replay truncates it again).
func (b *builder) scanChanged(ctx context.Context, f *os.File, size int64, baseLSN uint64) (blocks []uint32, ok bool, err error) {
	blocks, ok, err = scanPages(ctx, b.p.source(ctx, f), f.Name(), b.buf, size, baseLSN, b.blocks[:0])
	b.blocks = blocks[:0]
	return blocks, ok, err
}

// scanPages reads size bytes of a relation file from r through buf and
// appends to blocks the numbers of the pages classifyPage keeps for a
// delta from baseLSN. ok is false as soon as a page is not valid.
func scanPages(ctx context.Context, r io.Reader, name string, buf []byte, size int64, baseLSN uint64, blocks []uint32) (_ []uint32, ok bool, err error) {
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return blocks, false, context.Cause(ctx)
		}
		chunk := buf[:min(int64(len(buf)), size-off)]
		n, rerr := io.ReadFull(r, chunk)
		for i := 0; i+backup.IncrementBlockSize <= n; i += backup.IncrementBlockSize {
			switch classifyPage(chunk[i:i+backup.IncrementBlockSize], baseLSN) {
			case pageChanged:
				blocks = append(blocks, uint32((off+int64(i))/backup.IncrementBlockSize))
			case pageInvalid:
				return blocks, false, nil
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return blocks, false, context.Cause(ctx)
			}
			return blocks, false, fmt.Errorf("read %s: %w", name, rerr)
		}
		off += int64(n)
	}
	return blocks, true, nil
}

// addIncrement stores the file as a wi1 page increment over the delta
// base. It returns false (having written nothing) when the file must be
// stored whole instead; the file offset is then back at its start.
func (b *builder) addIncrement(ctx context.Context, e walkEntry, f *os.File, fi fs.FileInfo) (bool, error) {
	p := b.p
	size := fi.Size()
	var blocks []uint32
	ok := false
	if p.summary != nil && p.relSegBlocks > 0 {
		if k, seg, isRel := relationOf(e.name); isRel {
			blocks, ok = p.summary.fileBlocks(b.blocks[:0], k, seg, p.relSegBlocks, size/backup.IncrementBlockSize), true
		}
	}
	if !ok {
		var err error
		if blocks, ok, err = b.scanChanged(ctx, f, size, uint64(p.delta.sentinel.LSN)); err != nil {
			return false, err
		}
	}
	if !ok {
		p.log.Debug("a page is not valid (perhaps being written): file stored whole", "file", e.name)
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return false, fmt.Errorf("rewind %s: %w", e.path, err)
		}
		return false, nil
	}
	// The scan's list lives in b.blocks; keep it while the pages are copied.
	b.blocks = blocks
	memberSize := backup.IncrementSize(len(blocks))
	if b.cur != nil && b.cur.contentSize > 0 && b.cur.contentSize+memberSize > p.threshold {
		if err := b.closeTar(); err != nil {
			return false, err
		}
	}
	if err := b.ensureTar(ctx); err != nil {
		return false, err
	}
	hdr, err := tarHeader(fi, e.name, memberSize)
	if err != nil {
		return false, fmt.Errorf("tar header for %s: %w", e.path, err)
	}
	if err := b.cur.tw.WriteHeader(hdr); err != nil {
		return false, fmt.Errorf("write tar header %s into %s: %w", e.name, b.cur.key, err)
	}
	if err := backup.WriteIncrementHeader(b.cur.tw, uint64(size), blocks); err != nil {
		return false, fmt.Errorf("write increment of %s into %s: %w", e.name, b.cur.key, err)
	}
	// --verify checks the pages the increment stores; the others were
	// checked, if at all, by the backups that stored them.
	var v *pgdata.PageVerifier
	if p.verify && e.paged && p.blockSize == backup.IncrementBlockSize {
		v = &pgdata.PageVerifier{BlockSize: p.blockSize, FirstBlock: e.segment * p.relSegBlocks,
			StartLSN: p.startLSN, Reread: readAtFunc(f)}
	}
	page := b.buf[:backup.IncrementBlockSize]
	shrank := false
	for _, blk := range blocks {
		n, err := p.readAt(ctx, f, page, int64(blk)*backup.IncrementBlockSize)
		if ctx.Err() != nil {
			return false, context.Cause(ctx)
		}
		if err != nil && err != io.EOF {
			return false, fmt.Errorf("read %s block %d: %w", e.path, blk, err)
		}
		if n < backup.IncrementBlockSize {
			// Truncated since the scan: WAL replay truncates it again.
			clear(page[n:])
			shrank = true
		}
		if v != nil && n == backup.IncrementBlockSize {
			v.Inspect(int64(blk)*backup.IncrementBlockSize, page)
		}
		if _, err := b.cur.tw.Write(page); err != nil {
			return false, fmt.Errorf("write increment of %s into %s: %w", e.name, b.cur.key, err)
		}
	}
	if shrank {
		p.changedFiles.Add(1)
	}
	b.cur.contentSize += memberSize
	d := backup.FileDescription{IsIncremented: true, MTime: fi.ModTime()}
	p.noteCorrupt(e.name, &d, v)
	b.record(e.name, d)
	if b.cur.contentSize >= p.threshold {
		return true, b.closeTar()
	}
	return true, nil
}

// tarHeader is the member header of a file stored under name with size
// bytes of content.
func tarHeader(fi fs.FileInfo, name string, size int64) (*tar.Header, error) {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return nil, err
	}
	hdr.Name, hdr.Size = name, size
	return hdr, nil
}

// markAncestorsPermanent marks every backup the new permanent delta
// depends on permanent, as WAL-G does, in metadata.json (the source of
// truth for permanence).
func markAncestorsPermanent(ctx context.Context, store storage.Storage, base *deltaBase) error {
	name, s := base.name, base.sentinel
	for i := 0; i < backup.MaxChainLength; i++ {
		m, err := backup.FetchMetadata(ctx, store, name)
		if err != nil {
			return fmt.Errorf("mark %s permanent: %w", name, err)
		}
		if !m.IsPermanent {
			m.IsPermanent = true
			if err := putJSON(ctx, store, backup.MetadataKey(name), func() ([]byte, error) { return backup.EncodeMetadata(m) }); err != nil {
				return fmt.Errorf("mark %s permanent: %w", name, err)
			}
		}
		if !s.IsDelta() {
			return nil
		}
		name = s.DeltaFrom
		if s, err = backup.FetchSentinel(ctx, store, name); err != nil {
			return fmt.Errorf("mark %s permanent: %w", name, err)
		}
	}
	return fmt.Errorf("mark ancestors of %s permanent: chain longer than %d", base.name, backup.MaxChainLength)
}

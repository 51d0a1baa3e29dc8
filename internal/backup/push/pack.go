package push

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/ratelimit"
	"github.com/tusk-pg/tusk/internal/storage"
)

// readBufferSize is each tar builder's file read buffer: a multiple of every
// PostgreSQL block size, so page verification sees whole pages.
const readBufferSize = 256 << 10

// packer turns walk entries into data tars part_NNN.tar.<ext>, streaming
// each to storage while it is written. Several builders (one goroutine,
// one encoder, one read buffer and one open tar each) take entries from the
// walk as they come, like WAL-G's tar ball queue.
type packer struct {
	store        storage.Storage
	backupName   string
	ext          string
	threshold    int64
	diskLimit    *ratelimit.Limiter
	verify       bool
	storeAll     bool
	startLSN     uint64
	blockSize    int
	relSegBlocks uint32
	log          *slog.Logger
	// beforeCopy, when set, runs between measuring a file and reading it
	// (tests change files there).
	beforeCopy func(path string)
	progress   backup.Progress // nil: not reported
	// delta is the base of a delta backup; nil for a full backup.
	delta *deltaBase
	// summary lists a delta's changed blocks from WAL summaries; nil: scan
	// the pages.
	summary *changedBlocks

	parts         partCounter
	uncompressed  atomic.Int64 // WAL-G's UncompressedSize: member bytes
	compressed    atomic.Int64 // bytes uploaded
	corruptFiles  atomic.Int64
	corruptBlocks atomic.Int64
	changedFiles  atomic.Int64 // read at a size other than the header's
	// dataRead counts bytes read from the data directory's files: what a
	// delta from WAL summaries saves over a page scan.
	dataRead atomic.Int64
}

// source is how every file of the data directory is read: rate-limited,
// counted in dataRead and reported to the progress display.
func (p *packer) source(ctx context.Context, f io.Reader) io.Reader {
	return counted(p.diskLimit.Reader(ctx, byteCounter{f, &p.dataRead}), p.progress)
}

// readAt reads one page of a page increment as source reads whole files.
func (p *packer) readAt(ctx context.Context, f io.ReaderAt, b []byte, off int64) (int, error) {
	if err := p.diskLimit.Take(ctx, len(b)); err != nil {
		return 0, err
	}
	n, err := f.ReadAt(b, off)
	p.dataRead.Add(int64(n))
	if p.progress != nil {
		p.progress.Add(int64(n))
	}
	return n, err
}

type byteCounter struct {
	r io.Reader
	n *atomic.Int64
}

func (c byteCounter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// builder fills one tar at a time.
type builder struct {
	p   *packer
	enc *pipe.Encoder
	buf []byte
	cur *tarObject
	rec *fileRecorder // nil: files metadata disabled
	// blocks is the reused list of changed pages of a delta's file.
	blocks []uint32
}

func (p *packer) newBuilder(enc *pipe.Encoder, rec *fileRecorder) *builder {
	return &builder{p: p, enc: enc, buf: make([]byte, readBufferSize), rec: rec}
}

// run packs entries until the channel closes or ctx ends; fail is called
// at once with the first error so the walk and the other builders stop.
// The builder's last tar is closed (stored) on success and abandoned on
// failure.
func (b *builder) run(ctx context.Context, entries <-chan walkEntry, fail func(error)) error {
	var err error
	for e := range entries {
		if err != nil || ctx.Err() != nil {
			continue // drain so the walker never blocks
		}
		if err = b.add(ctx, e); err != nil {
			fail(err)
		}
	}
	if err == nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		b.abort(err)
		return err
	}
	return b.closeTar()
}

func (b *builder) ensureTar(ctx context.Context) error {
	if b.cur != nil {
		return nil
	}
	tarName := backup.PartTarName(b.p.parts.next(), b.p.ext)
	t, err := openTar(ctx, b.p.store, backup.TarKey(b.p.backupName, tarName), b.enc)
	if err != nil {
		return err
	}
	b.cur = t
	if b.rec != nil {
		b.rec.startTar(tarName)
	}
	b.p.log.Debug("tar started", "key", t.key)
	return nil
}

func (b *builder) closeTar() error {
	t := b.cur
	if t == nil {
		return nil
	}
	b.cur = nil
	if err := t.close(); err != nil {
		return err
	}
	b.p.compressed.Add(t.out.n)
	b.p.uncompressed.Add(t.contentSize)
	b.p.log.Info("tar uploaded", "key", t.key, "size", t.contentSize, "stored", t.out.n)
	return nil
}

func (b *builder) abort(err error) {
	if b.cur != nil {
		b.cur.abort(err)
		b.cur = nil
	}
}

func (b *builder) record(name string, d backup.FileDescription) {
	if b.rec != nil {
		b.rec.add(name, d)
	}
}

func (b *builder) add(ctx context.Context, e walkEntry) error {
	switch e.kind {
	case entryFile:
		return b.addFile(ctx, e)
	default:
		if err := b.ensureTar(ctx); err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(e.info, e.link)
		if err != nil {
			return fmt.Errorf("tar header for %s: %w", e.path, err)
		}
		hdr.Name = e.name
		if err := b.cur.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar header %s into %s: %w", e.name, b.cur.key, err)
		}
		b.record(e.name, backup.FileDescription{MTime: e.info.ModTime()})
		return nil
	}
}

// addFile stores one regular file. Its size and mtime are taken from the
// open file, just before it is read; a file deleted since the walk is
// skipped (PostgreSQL dropped it, WAL replay agrees).
func (b *builder) addFile(ctx context.Context, e walkEntry) error {
	p := b.p
	f, err := os.Open(e.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			p.log.Debug("file removed during the backup, skipped", "path", e.path)
			return nil
		}
		return fmt.Errorf("open %s: %w", e.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", e.path, err)
	}
	if !fi.Mode().IsRegular() {
		p.log.Warn("no longer a regular file, skipped", "path", e.path)
		return nil
	}
	size := fi.Size()
	if p.delta != nil {
		if inBase, unchanged := p.delta.lookup(e.name, fi.ModTime()); inBase {
			if unchanged {
				// Unchanged since the base: restored from the chain.
				if b.rec != nil {
					b.rec.addSkipped(e.name, backup.FileDescription{IsSkipped: true, MTime: fi.ModTime()})
				}
				return nil
			}
			if isIncrementable(e.name, size) {
				if done, err := b.addIncrement(ctx, e, f, fi); done || err != nil {
					return err
				}
			}
		}
	}
	if b.cur != nil && b.cur.contentSize > 0 && b.cur.contentSize+size > p.threshold {
		if err := b.closeTar(); err != nil {
			return err
		}
	}
	if err := b.ensureTar(ctx); err != nil {
		return err
	}
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return fmt.Errorf("tar header for %s: %w", e.path, err)
	}
	hdr.Name, hdr.Size = e.name, size
	if err := b.cur.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header %s into %s: %w", e.name, b.cur.key, err)
	}
	var v *pgdata.PageVerifier
	var inspect func(int64, []byte)
	if p.verify && e.paged && p.blockSize > 0 && size%int64(p.blockSize) == 0 {
		v = &pgdata.PageVerifier{BlockSize: p.blockSize, FirstBlock: e.segment * p.relSegBlocks,
			StartLSN: p.startLSN, Reread: readAtFunc(f)}
		inspect = v.Inspect
	}
	if p.beforeCopy != nil {
		p.beforeCopy(e.path)
	}
	read, err := copyMember(b.cur.tw, p.source(ctx, f), size, b.buf, inspect)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("copy %s into %s: %w", e.path, b.cur.key, err)
	}
	if read != size {
		p.changedFiles.Add(1)
		p.log.Debug("file shrank while read; padded with zeros to its size at open", "path", e.path, "size", size, "read", read)
	}
	b.cur.contentSize += size
	d := backup.FileDescription{MTime: fi.ModTime()}
	p.noteCorrupt(e.name, &d, v)
	b.record(e.name, d)
	if b.cur.contentSize >= p.threshold {
		return b.closeTar()
	}
	return nil
}

// noteCorrupt records in d and in the log the pages v found corrupt.
func (p *packer) noteCorrupt(name string, d *backup.FileDescription, v *pgdata.PageVerifier) {
	if v == nil || len(v.Corrupt) == 0 {
		return
	}
	d.CorruptBlocks = corruptBlocks(v.Corrupt, p.storeAll)
	p.corruptFiles.Add(1)
	p.corruptBlocks.Add(int64(len(v.Corrupt)))
	p.log.Warn("page checksum failures", "file", name, "blocks", d.CorruptBlocks.CorruptBlocksCount,
		"first", d.CorruptBlocks.SomeCorruptBlocks)
}

// packAll runs the walk and the builders until every data tar is stored.
func (p *packer) packAll(ctx context.Context, w *walker, builders []*builder) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	entries := make(chan walkEntry, 4*len(builders))
	w.emit = func(e walkEntry) error {
		select {
		case entries <- e:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(builders)+1)
	wg.Go(func() {
		defer close(entries)
		if err := w.walk(ctx); err != nil {
			errs[0] = err
			cancel(err)
		}
	})
	for i, b := range builders {
		wg.Go(func() {
			if err := b.run(ctx, entries, cancel); err != nil {
				errs[i+1] = err
				cancel(err)
			}
		})
	}
	wg.Wait()
	// The first failure caused the others (cancellations); report it.
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// storeFile writes one file alone into its own tar object tarName, reading
// at most size bytes (pg_control).
func (p *packer) storeFile(ctx context.Context, enc *pipe.Encoder, buf []byte, tarName string, e walkEntry) error {
	f, err := os.Open(e.path)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", e.path, err)
	}
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return fmt.Errorf("tar header for %s: %w", e.path, err)
	}
	hdr.Name = e.name
	return p.storeMember(ctx, enc, buf, tarName, hdr, f)
}

// storeMember writes one member, hdr.Size bytes of r, alone into its own
// tar object tarName.
func (p *packer) storeMember(ctx context.Context, enc *pipe.Encoder, buf []byte, tarName string, hdr *tar.Header, r io.Reader) error {
	p.parts.next() // WAL-G's part counter counts this tar too
	t, err := openTar(ctx, p.store, backup.TarKey(p.backupName, tarName), enc)
	if err != nil {
		return err
	}
	if err := t.tw.WriteHeader(hdr); err != nil {
		t.abort(err)
		return fmt.Errorf("write tar header %s: %w", hdr.Name, err)
	}
	if _, err := copyMember(t.tw, p.source(ctx, r), hdr.Size, buf, nil); err != nil {
		t.abort(err)
		return fmt.Errorf("copy %s: %w", hdr.Name, err)
	}
	t.contentSize = hdr.Size
	return p.finishSingle(t)
}

// storeLabelFiles writes backup_label and tablespace_map, as returned by
// pg_backup_stop, into tarName: members without a leading slash, mode 0600,
// no owner and no mtime, exactly as WAL-G writes them.
func (p *packer) storeLabelFiles(ctx context.Context, enc *pipe.Encoder, tarName, label, tablespaceMap string) error {
	p.parts.next()
	t, err := openTar(ctx, p.store, backup.TarKey(p.backupName, tarName), enc)
	if err != nil {
		return err
	}
	for _, m := range []struct{ name, body string }{{"backup_label", label}, {"tablespace_map", tablespaceMap}} {
		hdr := &tar.Header{Name: m.name, Mode: 0o600, Size: int64(len(m.body)), Typeflag: tar.TypeReg}
		if err := t.tw.WriteHeader(hdr); err != nil {
			t.abort(err)
			return fmt.Errorf("write tar header %s: %w", m.name, err)
		}
		if _, err := t.tw.Write([]byte(m.body)); err != nil {
			t.abort(err)
			return fmt.Errorf("write %s: %w", m.name, err)
		}
		t.contentSize += hdr.Size
	}
	return p.finishSingle(t)
}

func (p *packer) finishSingle(t *tarObject) error {
	if err := t.close(); err != nil {
		return err
	}
	p.compressed.Add(t.out.n)
	p.uncompressed.Add(t.contentSize)
	p.log.Info("tar uploaded", "key", t.key, "size", t.contentSize, "stored", t.out.n)
	return nil
}

// labelMembers are the backup_label tar's entries in TarFileSets.
func labelMembers() []string { return []string{"backup_label", "tablespace_map"} }

package backup

import (
	"context"
	"io"
	"log/slog"
)

// Progress receives byte counts as a backup moves data: bytes read from
// disk by backup-push, bytes written to disk by backup-fetch. Add is called
// from several goroutines, once per buffer-sized read or write, so it must
// be cheap and safe for concurrent use. The display lives elsewhere: this
// package only counts.
type Progress interface{ Add(n int64) }

type progressReader struct {
	r io.Reader
	p Progress
}

func (c progressReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.p.Add(int64(n))
	}
	return n, err
}

// counted reports what is read from r to p (nil: r itself).
func counted(r io.Reader, p Progress) io.Reader {
	if p == nil {
		return r
	}
	return progressReader{r, p}
}

type progressWriter struct {
	w io.Writer
	p Progress
}

// Write has no ReadFrom sibling on purpose: callers copy through their own
// reused buffer.
func (c progressWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	if n > 0 {
		c.p.Add(int64(n))
	}
	return n, err
}

// EstimatePushSize is what backup-push will read from disk for the data
// directory dataDir: the sizes of the files its walk would back up, with
// the same exclusions, tablespaces included. It reads only directory
// entries and file metadata, so a progress display gets a total (and an
// ETA) long before the backup's own walk, which is paced by the uploads,
// reaches the end. Files change while a backup runs: it is an estimate. A
// delta backup reads less (files unchanged since the base are skipped) and
// some of it twice (relation files are scanned, then their changed pages
// read), so for it the estimate is rougher still.
func EstimatePushSize(ctx context.Context, dataDir string) (int64, error) {
	var total int64
	w := &walker{root: dataDir, log: slog.New(slog.DiscardHandler)}
	w.emit = func(e walkEntry) error {
		if e.kind == entryFile {
			total += e.info.Size()
		}
		return nil
	}
	if err := w.walk(ctx); err != nil {
		return total, err
	}
	if w.pgControl != nil {
		total += w.pgControl.info.Size()
	}
	return total, nil
}

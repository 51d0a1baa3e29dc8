package push

import (
	"context"
	"io"
	"log/slog"

	"github.com/tusk-pg/tusk/internal/backup"
)

type progressReader struct {
	r io.Reader
	p backup.Progress
}

func (c progressReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.p.Add(int64(n))
	}
	return n, err
}

// counted reports what is read from r to p (nil: r itself).
func counted(r io.Reader, p backup.Progress) io.Reader {
	if p == nil {
		return r
	}
	return progressReader{r, p}
}

// EstimateSize is what backup-push will read from disk for the data
// directory dataDir: the sizes of the files its walk would back up, with
// the same exclusions, tablespaces included. It reads only directory
// entries and file metadata, so a progress display gets a total (and an
// ETA) long before the backup's own walk, which is paced by the uploads,
// reaches the end. Files change while a backup runs: it is an estimate. A
// delta backup reads less (files unchanged since the base are skipped) and
// some of it twice (relation files are scanned, then their changed pages
// read), so for it the estimate is rougher still.
func EstimateSize(ctx context.Context, dataDir string) (int64, error) {
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

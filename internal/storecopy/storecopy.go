// Package storecopy copies objects from one storage to another, byte for
// byte and under the same keys: whole backups with the WAL they need
// (tusk copy, WAL-G's copy) or every object under a prefix (tusk st copy).
//
// Memory: objects are streamed, never held whole. At most Workers objects
// (DefaultWorkers unless set) are in flight at once, each holding what its
// two backends state per download and per upload (a backend that needs
// the length of a body it cannot seek, S3, buffers it in part buffers from
// its own bounded pool). Candidates are taken from the source listing in
// batches of at most batchSize keys; for each batch the target is listed
// under the batch's common key prefix to find what it already holds, and
// only the batch's keys are kept. Copying backups keeps, besides, one
// entry per backup (names, delta depth, WAL range) and the continuity of
// each backup's WAL as runs of consecutive segments: one run per timeline
// when the source lists keys in order (S3, file and SFTP storage do), more
// only while a listing in another order leaves holes. Nothing grows with
// the number or the size of the objects copied.
package storecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/tusk-pg/tusk/internal/storage"
)

// DefaultWorkers is how many objects are copied at once when Copier.Workers
// is 0. WAL-G copies 8 at once; 4 keep an S3 target within its default
// pool of part buffers while still overlapping requests.
const DefaultWorkers = 4

// batchSize bounds the candidate keys checked against the target at once.
const batchSize = 1000

// ErrConflict is wrapped when the target holds an object under a key being
// copied, with another size: copying never replaces such an object.
var ErrConflict = errors.New("destination object conflicts with source")

// Transform rewrites an object's bytes on the way (st copy's
// --decrypt-source and --encrypt-source): it reads src to its end and
// writes the result to dst.
type Transform func(dst io.Writer, src io.Reader) error

// Copier copies objects from From to To under the same keys.
type Copier struct {
	From, To storage.Storage
	// Workers is how many objects are copied at once (DefaultWorkers when 0).
	Workers int
	// Overwrite copies every object even when To holds its key (st copy);
	// otherwise an object To holds with the same size is skipped and one
	// with another size fails the copy with ErrConflict (WAL-G's copy).
	Overwrite bool
	// KeepExisting skips every object To holds, whatever its size (st
	// transfer without --overwrite); it takes precedence over Overwrite's
	// absence, not over Overwrite.
	KeepExisting bool
	// Transform, when set, rewrites each object's bytes; without it the
	// bytes are copied unchanged and their count checked against the
	// source listing.
	Transform Transform
	// After runs in the copying worker once an object is copied (st
	// transfer: wait for it to appear, then delete it from the source);
	// its failure is the object's.
	After func(ctx context.Context, o storage.ObjectInfo) error
	// Limit stops after this many objects are copied or being copied;
	// 0: no limit.
	Limit int64
	// KeepGoing logs an object's failure and goes on with the others
	// (Stats().Failed counts them) instead of stopping at the first.
	KeepGoing bool
	Log       *slog.Logger

	copied, skipped, failed, bytes, started atomic.Int64
}

// errLimit ends a listing once Limit objects are under way.
var errLimit = errors.New("copy limit reached")

// Stats counts what a Copier did.
type Stats struct {
	Copied, Skipped, Failed int64
	// Bytes is the total size of the objects copied, as read.
	Bytes int64
}

// Stats returns the counts so far.
func (c *Copier) Stats() Stats {
	return Stats{Copied: c.copied.Load(), Skipped: c.skipped.Load(), Failed: c.failed.Load(), Bytes: c.bytes.Load()}
}

func (c *Copier) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Prefix copies every object whose key starts with prefix (st copy).
func (c *Copier) Prefix(ctx context.Context, prefix string) error {
	return c.copyAll(ctx, func(fn func(storage.ObjectInfo) error) error {
		return c.From.List(ctx, prefix, fn)
	})
}

// Objects copies the given objects, whose sizes are the source's.
func (c *Copier) Objects(ctx context.Context, objs []storage.ObjectInfo) error {
	return c.copyAll(ctx, func(fn func(storage.ObjectInfo) error) error {
		for _, o := range objs {
			if err := fn(o); err != nil {
				return err
			}
		}
		return nil
	})
}

// copyAll copies every object list yields, Workers at a time, and returns
// once all of them are copied (or the first failure): callers order what
// becomes visible on the target by the order of their copyAll calls.
func (c *Copier) copyAll(ctx context.Context, list func(fn func(storage.ObjectInfo) error) error) error {
	g, gctx := errgroup.WithContext(ctx)
	workers := c.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	g.SetLimit(workers)
	batch := make([]storage.ObjectInfo, 0, batchSize)
	flush := func() error {
		todo, err := c.missing(gctx, batch)
		batch = batch[:0]
		if err != nil {
			return err
		}
		for _, o := range todo {
			if err := gctx.Err(); err != nil {
				return err
			}
			if c.Limit > 0 && c.started.Add(1) > c.Limit {
				return errLimit
			}
			g.Go(func() error { return c.copyOne(gctx, o) })
		}
		return nil
	}
	err := list(func(o storage.ObjectInfo) error {
		if err := gctx.Err(); err != nil {
			return err
		}
		// A batch stays within one folder (a backup's, the WAL's), so
		// the target is listed under a narrow prefix.
		if len(batch) > 0 && scope(batch[0].Key) != scope(o.Key) {
			if err := flush(); err != nil {
				return err
			}
		}
		if batch = append(batch, o); len(batch) == batchSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if errors.Is(err, errLimit) {
		err = nil
	}
	werr := g.Wait()
	if err == nil || (werr != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil) {
		// A worker's failure cancelled the listing: report the failure.
		err = werr
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// missing returns the objects of batch the target lacks; those it holds
// with the same size are counted as skipped, one with another size is
// ErrConflict. The target is listed once, under the batch's common prefix.
func (c *Copier) missing(ctx context.Context, batch []storage.ObjectInfo) ([]storage.ObjectInfo, error) {
	if (c.Overwrite && !c.KeepExisting) || len(batch) == 0 {
		return batch, nil
	}
	want := make(map[string]int, len(batch))
	prefix := batch[0].Key
	for i, o := range batch {
		want[o.Key] = i
		prefix = commonPrefix(prefix, o.Key)
	}
	have := make([]int64, len(batch))
	for i := range have {
		have[i] = -1
	}
	err := c.To.List(ctx, prefix, func(t storage.ObjectInfo) error {
		if i, ok := want[t.Key]; ok {
			have[i] = t.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", c.To, prefix, err)
	}
	todo := batch[:0:0]
	for i, o := range batch {
		switch {
		case have[i] < 0:
			todo = append(todo, o)
		case have[i] == o.Size || c.KeepExisting:
			c.skipped.Add(1)
			c.log().Debug("skipping existing object", "key", o.Key)
		default:
			return nil, fmt.Errorf("%w: %s/%s: source size %d, destination size %d", ErrConflict, c.To, o.Key, o.Size, have[i])
		}
	}
	return todo, nil
}

// scope is the folder a key is batched in: its first two levels
// ("basebackups_005/base_X/"), or its first when it has only two
// ("wal_005/").
func scope(key string) string {
	i := strings.IndexByte(key, '/')
	if i < 0 {
		return ""
	}
	if j := strings.IndexByte(key[i+1:], '/'); j >= 0 {
		return key[:i+1+j+1]
	}
	return key[:i+1]
}

func commonPrefix(a, b string) string {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return a[:i]
		}
	}
	return a[:n]
}

// copyOne copies one object and runs After; with KeepGoing a failure is
// logged and counted instead of returned.
func (c *Copier) copyOne(ctx context.Context, o storage.ObjectInfo) error {
	err := c.copyBody(ctx, o)
	if err == nil && c.After != nil {
		err = c.After(ctx, o)
	}
	if err != nil && c.KeepGoing && ctx.Err() == nil {
		c.failed.Add(1)
		c.log().Error("object not copied", "key", o.Key, "error", err)
		return nil
	}
	return err
}

// copyBody streams one object from the source into the target.
func (c *Copier) copyBody(ctx context.Context, o storage.ObjectInfo) error {
	// Backends name the object in their errors.
	body, err := c.From.Get(ctx, o.Key)
	if err != nil {
		return err
	}
	defer body.Close()
	if c.Transform != nil {
		err = c.putTransformed(ctx, o.Key, body)
	} else {
		var r io.Reader = body
		if _, ok := body.(io.ReadSeeker); !ok {
			// A stream: its length is checked against the listing before
			// the target can commit the object.
			r = storage.NewSource(ctx, body, o.Size)
		}
		err = c.To.Put(ctx, o.Key, r, o.Size)
	}
	if err != nil {
		return err
	}
	c.copied.Add(1)
	c.bytes.Add(o.Size)
	c.log().Info("copied", "key", o.Key, "size", o.Size)
	return nil
}

// putTransformed uploads what Transform makes of body, of unknown length.
func (c *Copier) putTransformed(ctx context.Context, key string, body io.Reader) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(c.Transform(pw, storage.NewSource(ctx, body, -1)))
	}()
	err := c.To.Put(ctx, key, pr, -1)
	pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
	<-done
	return err
}

// BatchBytes bounds the memory of one batch of candidate keys, with the
// index kept to find them in the target's listing: keys are at most a few
// hundred bytes (a backup name and a tar's name).
const BatchBytes = batchSize * 512

package storecopy

import (
	"context"

	"fmt"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
)

// TransferOptions are WAL-G's st transfer flags beyond the Copier's.
type TransferOptions struct {
	// Preserve keeps the objects in the source (--preserve); otherwise
	// each is deleted there once it has appeared in the target.
	Preserve bool
	// AppearanceChecks is how many times the target is asked for a copied
	// object before the copy counts as failed (0: not asked);
	// AppearanceInterval is the least time between two asks.
	AppearanceChecks   uint
	AppearanceInterval time.Duration
}

// TransferFiles moves every object under prefix from From to To (WAL-G's
// st transfer files and pg-wals): each object is copied, seen in the
// target, then deleted from the source, so an object is in one storage or
// the other (or both) at every moment, never in neither.
func (c *Copier) TransferFiles(ctx context.Context, prefix string, o TransferOptions) error {
	c.After = func(ctx context.Context, obj storage.ObjectInfo) error {
		if err := c.appeared(ctx, obj.Key, o); err != nil {
			return err
		}
		if o.Preserve {
			return nil
		}
		if err := c.From.Delete(ctx, obj.Key); err != nil {
			return fmt.Errorf("delete %s/%s from the source: %w", c.From, obj.Key, err)
		}
		return nil
	}
	defer func() { c.After = nil }()
	return c.finish(c.Prefix(ctx, prefix))
}

// TransferBackups moves backups (all, at most maxBackups of them oldest
// first, or the one named) from From to To (WAL-G's st transfer backups).
// A backup becomes visible in the target whole: its files first, its stop
// sentinel once they have all appeared; it leaves the source the other
// way round: the sentinel first, then its files, and only when all of it
// reached the target.
func (c *Copier) TransferBackups(ctx context.Context, name string, maxBackups int, o TransferOptions) error {
	var names []string
	if name != "" {
		b, err := backup.Find(ctx, c.From, name)
		if err != nil {
			return err
		}
		names = []string{b.Name}
	} else {
		all, err := backup.List(ctx, c.From)
		if err != nil {
			return err
		}
		for _, b := range all {
			if maxBackups > 0 && len(names) >= maxBackups {
				break
			}
			names = append(names, b.Name)
		}
	}
	c.After = func(ctx context.Context, obj storage.ObjectInfo) error { return c.appeared(ctx, obj.Key, o) }
	defer func() { c.After = nil }()
	for _, n := range names {
		if err := c.transferBackup(ctx, n, o); err != nil {
			if !c.KeepGoing || ctx.Err() != nil {
				return err
			}
			c.failed.Add(1)
			c.log().Error("backup not transferred", "backup", n, "error", err)
		}
	}
	return c.finish(nil)
}

func (c *Copier) transferBackup(ctx context.Context, name string, o TransferOptions) error {
	failed := c.failed.Load()
	dir := backup.Prefix + name + "/"
	if err := c.Prefix(ctx, dir); err != nil {
		return err
	}
	sentinel := backup.SentinelKey(name)
	info, err := c.From.Stat(ctx, sentinel)
	if err != nil {
		return fmt.Errorf("backup %s: %w", name, err)
	}
	if c.failed.Load() != failed {
		return fmt.Errorf("backup %s: %d of its files were not copied; its stop sentinel is not", name, c.failed.Load()-failed)
	}
	if err := c.Objects(ctx, []storage.ObjectInfo{info}); err != nil {
		return err
	}
	if c.failed.Load() != failed || o.Preserve {
		return nil
	}
	if err := c.From.Delete(ctx, sentinel); err != nil {
		return fmt.Errorf("delete %s/%s from the source: %w", c.From, sentinel, err)
	}
	return c.deleteUnder(ctx, dir)
}

// deleteUnder deletes every object under prefix from the source, in
// batches of batchSize keys.
func (c *Copier) deleteUnder(ctx context.Context, prefix string) error {
	keys := make([]string, 0, batchSize)
	del := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := c.From.Delete(ctx, keys...)
		keys = keys[:0]
		return err
	}
	err := c.From.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if keys = append(keys, o.Key); len(keys) == batchSize {
			return del()
		}
		return nil
	})
	if err == nil {
		err = del()
	}
	if err != nil {
		return fmt.Errorf("delete %s/%s from the source: %w", c.From, prefix, err)
	}
	return nil
}

// appeared asks the target for key until it is there, at most
// AppearanceChecks times, AppearanceInterval apart.
func (c *Copier) appeared(ctx context.Context, key string, o TransferOptions) error {
	for i := uint(0); i < o.AppearanceChecks; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(o.AppearanceInterval):
			}
		}
		ok, err := storage.Exists(ctx, c.To, key)
		if err != nil {
			return fmt.Errorf("check %s/%s appeared: %w", c.To, key, err)
		}
		if ok {
			return nil
		}
		c.log().Warn("copied object has not appeared in the target yet", "key", key, "check", i+1, "of", o.AppearanceChecks)
	}
	if o.AppearanceChecks > 0 {
		return fmt.Errorf("%s/%s did not appear after %d checks", c.To, key, o.AppearanceChecks)
	}
	return nil
}

// finish turns the failures KeepGoing let pass into the command's error.
func (c *Copier) finish(err error) error {
	if err == nil && c.failed.Load() > 0 {
		err = fmt.Errorf("finished with %d errors", c.failed.Load())
	}
	return err
}

package retention

import (
	"context"
	"fmt"
	"strings"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// BatchSize bounds the keys held and sent per delete request (S3's
// DeleteObjects takes at most 1000).
const BatchSize = 1000

// Result counts what a sweep deleted (or, in a dry run, would delete).
type Result struct {
	Objects int
}

// Sweep carries out a plan in three passes, each finished before the next
// starts: the stop sentinels, then every other object under
// basebackups_005/, then everything else (WAL). Each listing streams; keys
// are deleted in batches of at most BatchSize as they are found. Without
// Confirm nothing is deleted and each object is only reported.
func (r *Repo) Sweep(ctx context.Context, p *Plan) (Result, error) {
	log := r.opts.Log
	log.Info("Evaluating objects for deletion...")
	var res Result
	batch := make([]string, 0, BatchSize)
	flush := func() error {
		if len(batch) == 0 || !r.opts.Confirm {
			batch = batch[:0]
			return nil
		}
		if err := r.store.Delete(ctx, batch...); err != nil {
			return fmt.Errorf("delete from %s: %w", r.store, err)
		}
		batch = batch[:0]
		return nil
	}
	add := func(key string) error {
		log.Info("Object marked for deletion", "key", key)
		res.Objects++
		batch = append(batch, key)
		if len(batch) == BatchSize {
			return flush()
		}
		return nil
	}
	// sweep deletes the keys under prefix that del accepts.
	sweep := func(prefix string, del func(key string) bool) error {
		err := r.store.List(ctx, prefix, func(o storage.ObjectInfo) error {
			if !del(o.Key) {
				return nil
			}
			return add(o.Key)
		})
		if err != nil {
			return fmt.Errorf("list %s/%s: %w", r.store, prefix, err)
		}
		return flush()
	}

	// 1. Sentinels: the backups leave the listing before any data goes.
	for _, k := range p.Sentinels {
		if err := add(k); err != nil {
			return res, err
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	// 2. The backups' data and leftover folders.
	if p.Scope != ScopeWAL {
		prefixes := []string{backup.Prefix}
		if p.Folders != nil {
			prefixes = prefixes[:0]
			for _, name := range p.Folders {
				prefixes = append(prefixes, backup.FolderKey(name))
			}
		}
		for _, prefix := range prefixes {
			err := sweep(prefix, func(key string) bool {
				_, isSentinel := backup.NameFromSentinelKey(key)
				return !isSentinel && p.Match(key)
			})
			if err != nil {
				return res, err
			}
		}
	}
	// 3. WAL (and anything else under the prefix), after every backup that
	// needed it is gone.
	if !p.NoWAL {
		prefix := ""
		if p.Scope == ScopeWAL {
			prefix = wal.Folder
		}
		err := sweep(prefix, func(key string) bool {
			return !strings.HasPrefix(key, backup.Prefix) && p.Scope.includes(key) && p.Match(key)
		})
		if err != nil {
			return res, err
		}
	}
	switch {
	case res.Objects == 0:
		log.Info("No objects matched the deletion criteria.")
	case r.opts.Confirm:
		log.Info(fmt.Sprintf("Objects deleted successfully: count=%d", res.Objects))
	default:
		log.Info(fmt.Sprintf("Dry run: objects would be deleted count=%d, Run with --confirm to execute", res.Objects))
	}
	return res, nil
}

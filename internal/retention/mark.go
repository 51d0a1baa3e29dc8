package retention

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
)

// maxChain bounds the walk up a delta chain (hostile sentinels could form
// a cycle); WAL-G's WALG_DELTA_MAX_STEPS tops out far below it.
const maxChain = 10000

// Mark makes a backup permanent, with every backup its delta chain needs,
// or (permanent false) impermanent, refused while a delta built directly
// on it is permanent. Only metadata.json changes, as with WAL-G: it, not
// the sentinel, is what delete reads. It returns the backups it changed.
func Mark(ctx context.Context, store storage.Storage, name string, permanent bool, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := backup.CheckName(name); err != nil {
		return nil, err
	}
	log.Info(fmt.Sprintf("Retrieving previous related backups to be marked: toPermanent=%t", permanent))
	m, err := backup.FetchMetadata(ctx, store, name)
	if err != nil {
		return nil, fmt.Errorf("failed to get previous backups: %w", err)
	}
	if m.IsPermanent == permanent {
		kind := "impermanent"
		if permanent {
			kind = "permanent"
		}
		log.Warn(fmt.Sprintf("Backup %s is already marked as %s, ignoring...", name, kind))
	}
	var toMark []string
	if permanent {
		toMark, err = chainToMark(ctx, store, name)
	} else {
		toMark, err = unmarkable(ctx, store, name, m, log)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get previous backups: %w", err)
	}
	log.Info(fmt.Sprintf("Retrieved backups to be marked, marking: %v", toMark))
	for _, n := range toMark {
		if err := setPermanent(ctx, store, n, permanent); err != nil {
			return nil, fmt.Errorf("failed to mark backups: %w", err)
		}
	}
	return toMark, nil
}

// chainToMark walks from name up its delta chain and returns the backups
// not yet permanent, the full backup first.
func chainToMark(ctx context.Context, store storage.Storage, name string) ([]string, error) {
	var out []string
	for i := 0; name != ""; i++ {
		if i == maxChain {
			return nil, fmt.Errorf("backup %s: delta chain longer than %d backups (a cycle?)", name, maxChain)
		}
		m, err := backup.FetchMetadata(ctx, store, name)
		if err != nil {
			return nil, err
		}
		if !m.IsPermanent {
			out = append([]string{name}, out...)
		}
		s, err := backup.FetchSentinel(ctx, store, name)
		if err != nil {
			return nil, err
		}
		name = s.DeltaFrom
	}
	return out, nil
}

// unmarkable returns name if it is permanent and no permanent delta is
// built directly on it; a permanent direct child refuses.
func unmarkable(ctx context.Context, store storage.Storage, name string, m *backup.Metadata, log *slog.Logger) ([]string, error) {
	log.Info("retrieving permanent objects")
	infos, err := backup.List(ctx, store)
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		if info.Name == name {
			continue
		}
		cm, err := backup.FetchMetadata(ctx, store, info.Name)
		if errors.Is(err, storage.ErrNotFound) {
			// WAL-G skips a backup without metadata when collecting the
			// permanent ones: it cannot be permanent.
			log.Info(fmt.Sprintf("Backup %s lacks metadata to check if it's permanent, ignoring...", info.Name))
			continue
		}
		if err != nil {
			return nil, err
		}
		s, err := backup.FetchSentinel(ctx, store, info.Name)
		if err != nil {
			return nil, err
		}
		if cm.IsPermanent && s.DeltaFrom == name {
			return nil, refuse("Can't mark backup '%s' as impermanent. There is permanent increment backup that depends on this backup.", name)
		}
	}
	if !m.IsPermanent {
		return []string{}, nil
	}
	return []string{name}, nil
}

// setPermanent rewrites metadata.json with is_permanent changed, encoded as
// WAL-G encodes it (user_data through a generic JSON value, so its object
// keys come out sorted as WAL-G writes them).
func setPermanent(ctx context.Context, store storage.Storage, name string, permanent bool) error {
	m, err := backup.FetchMetadata(ctx, store, name)
	if err != nil {
		return err
	}
	m.IsPermanent = permanent
	if m.UserData != nil {
		var v any
		if err := json.Unmarshal(m.UserData, &v); err != nil {
			return fmt.Errorf("%s/%s: user_data: %w", store, backup.MetadataKey(name), err)
		}
		if m.UserData, err = json.Marshal(v); err != nil {
			return fmt.Errorf("%s/%s: user_data: %w", store, backup.MetadataKey(name), err)
		}
	}
	data, err := backup.EncodeMetadata(m)
	if err != nil {
		return err
	}
	return store.Put(ctx, backup.MetadataKey(name), bytes.NewReader(data), int64(len(data)))
}

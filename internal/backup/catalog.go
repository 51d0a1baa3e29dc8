package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
)

// DefaultStorageName is what backup-list shows in storage_name for the
// primary storage (WAL-G's name for it).
const DefaultStorageName = "default"

// Limits on the plain JSON documents read from storage, which may be
// hostile: a document is decoded in memory, so its size must be bounded.
// Legacy sentinels embed per-file metadata, hence the larger sentinel limit.
const (
	maxSentinelSize = 256 << 20
	maxMetadataSize = 16 << 20
	// files_metadata.json has one entry per file of the cluster.
	maxFilesMetadataSize = 2 << 30
)

// ErrNoBackups is returned when storage holds no complete backup.
var ErrNoBackups = errors.New("no backups found")

// ErrBackupNotFound is wrapped when a named backup has no sentinel.
var ErrBackupNotFound = errors.New("backup not found")

// Info is one complete backup as listed from storage.
type Info struct {
	Name string
	// ModTime is the sentinel object's storage modification time, which
	// defines LATEST.
	ModTime     time.Time
	WalFileName string
	StorageName string
}

// List returns every backup that has a stop sentinel, oldest first by the
// sentinel's modification time (WAL-G's order; ties are broken by name so
// the order does not depend on the backend's listing order).
func List(ctx context.Context, store storage.Storage) ([]Info, error) {
	var out []Info
	err := store.List(ctx, Prefix, func(o storage.ObjectInfo) error {
		name, ok := NameFromSentinelKey(o.Key)
		if !ok {
			return nil
		}
		out = append(out, Info{Name: name, ModTime: o.ModTime, WalFileName: WalFileName(name), StorageName: storageName(o)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups in %s/%s: %w", store, Prefix, err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].ModTime.Equal(out[j].ModTime) {
			return out[i].ModTime.Before(out[j].ModTime)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Latest returns the backup whose sentinel was written last.
func Latest(ctx context.Context, store storage.Storage) (Info, error) {
	all, err := List(ctx, store)
	if err != nil {
		return Info{}, err
	}
	if len(all) == 0 {
		return Info{}, fmt.Errorf("%s: %w", store, ErrNoBackups)
	}
	return all[len(all)-1], nil
}

// Find resolves a backup by name, or LATEST.
func Find(ctx context.Context, store storage.Storage, name string) (Info, error) {
	if name == LatestName {
		return Latest(ctx, store)
	}
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	st, err := store.Stat(ctx, SentinelKey(name))
	if errors.Is(err, storage.ErrNotFound) {
		return Info{}, fmt.Errorf("backup %q: no sentinel %s in %s: %w", name, SentinelKey(name), store, ErrBackupNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("backup %q: %w", name, err)
	}
	return Info{Name: name, ModTime: st.ModTime, WalFileName: WalFileName(name), StorageName: storageName(st)}, nil
}

// storageName is the storage_name backup-list shows: the storage holding
// the sentinel among failover storages, else the primary's name.
func storageName(o storage.ObjectInfo) string {
	if o.Storage != "" {
		return o.Storage
	}
	return DefaultStorageName
}

// FindByUserData returns the one backup whose metadata.json user_data
// equals userData (compared as WAL-G does). No match or more than one match
// is an error.
func FindByUserData(ctx context.Context, store storage.Storage, userData json.RawMessage) (Info, error) {
	if normaliseRaw(userData) == nil {
		return Info{}, fmt.Errorf("target user data is empty")
	}
	if !json.Valid(userData) {
		return Info{}, fmt.Errorf("target user data %q is not valid JSON", userData)
	}
	all, err := List(ctx, store)
	if err != nil {
		return Info{}, err
	}
	var found []Info
	for _, b := range all {
		m, err := FetchMetadata(ctx, store, b.Name)
		if err != nil {
			return Info{}, err
		}
		eq, err := UserDataEqual(m.UserData, userData)
		if err != nil {
			return Info{}, fmt.Errorf("backup %s: %w", b.Name, err)
		}
		if eq {
			found = append(found, b)
		}
	}
	switch len(found) {
	case 0:
		return Info{}, fmt.Errorf("no backup in %s has user data %s: %w", store, userData, ErrBackupNotFound)
	case 1:
		return found[0], nil
	}
	names := make([]string, len(found))
	for i, b := range found {
		names[i] = b.Name
	}
	return Info{}, fmt.Errorf("%d backups have user data %s: %v; select one by name", len(found), userData, names)
}

// FetchSentinel reads and validates a backup's stop sentinel.
func FetchSentinel(ctx context.Context, store storage.Storage, name string) (*Sentinel, error) {
	key := SentinelKey(name)
	data, err := readObject(ctx, store, key, maxSentinelSize)
	if err != nil {
		return nil, err
	}
	s, err := ParseSentinel(data)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", store, key, err)
	}
	return s, nil
}

// FetchMetadata reads a backup's metadata.json.
func FetchMetadata(ctx context.Context, store storage.Storage, name string) (*Metadata, error) {
	key := MetadataKey(name)
	data, err := readObject(ctx, store, key, maxMetadataSize)
	if err != nil {
		return nil, err
	}
	m, err := ParseMetadata(data)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", store, key, err)
	}
	return m, nil
}

// FetchFilesMetadata reads a backup's files_metadata.json, decoding it as
// it streams in. A sentinel with FilesMetadataDisabled has none: the result
// is then empty, as it is for old backups (sentinel Version < 2) whose file
// is missing; for current backups a missing file is an error, as in WAL-G.
func FetchFilesMetadata(ctx context.Context, store storage.Storage, name string, s *Sentinel) (*FilesMetadata, error) {
	if s.FilesMetadataDisabled {
		return &FilesMetadata{}, nil
	}
	key := FilesMetadataKey(name)
	body, err := store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) && s.Version < 2 {
		if s.Legacy != nil {
			return s.Legacy, nil
		}
		return &FilesMetadata{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", store, key, err)
	}
	defer body.Close()
	lr := &io.LimitedReader{R: body, N: maxFilesMetadataSize + 1}
	var fm FilesMetadata
	if err := json.NewDecoder(lr).Decode(&fm); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("%s/%s: larger than %d bytes", store, key, int64(maxFilesMetadataSize))
		}
		return nil, fmt.Errorf("%s/%s: decode files metadata: %w", store, key, err)
	}
	return &fm, nil
}

// readObject reads a small plain object whole, refusing one above limit.
func readObject(ctx context.Context, store storage.Storage, key string, limit int64) ([]byte, error) {
	body, err := store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", store, key, err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", store, key, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s/%s: larger than %d bytes", store, key, limit)
	}
	return data, nil
}

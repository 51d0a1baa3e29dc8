package backup

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/storage"
)

// TarSet is a backup's tar objects in restore order.
type TarSet struct {
	// Parts are the data tars, restored concurrently.
	Parts []string
	// PgControl and BackupLabel are restored last, in this order; either
	// may be empty (remote backups have no backup_label tar).
	PgControl, BackupLabel string
}

// ClassifyTars sorts the object names found under tar_partitions/ as WAL-G
// does: names matching pg_control.tar[.ext] and backup_label.tar[.ext] are
// restored last; everything else is a data part.
func ClassifyTars(names []string) TarSet {
	var ts TarSet
	for _, n := range names {
		switch {
		case isTarNamed(n, "pg_control"):
			ts.PgControl = n
		case isTarNamed(n, "backup_label"):
			ts.BackupLabel = n
		default:
			ts.Parts = append(ts.Parts, n)
		}
	}
	sort.Strings(ts.Parts)
	return ts
}

// isTarNamed matches WAL-G's `^.*?<base>\.tar(\..+$|$)`.
func isTarNamed(name, base string) bool {
	i := strings.Index(name, base+".tar")
	if i < 0 {
		return false
	}
	rest := name[i+len(base)+4:]
	return rest == "" || (rest[0] == '.' && len(rest) > 1)
}

// TarMethod is the decompressor for a tar object, chosen by its extension
// as WAL-G does: ".tar" alone is uncompressed.
func TarMethod(name string) (codec.Method, error) {
	ext := codec.ExtOf(name)
	if ext == "tar" {
		ext = ""
	}
	m, err := codec.ByExt(ext)
	if err != nil {
		return nil, fmt.Errorf("tar %s: %w", name, err)
	}
	return m, nil
}

// ListTars lists the tar objects of a backup.
func ListTars(ctx context.Context, store storage.Storage, name string) (TarSet, error) {
	prefix := TarPartitionsKey(name)
	var names []string
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, prefix)
		if rest != "" && !strings.Contains(rest, "/") {
			names = append(names, rest)
		}
		return nil
	})
	if err != nil {
		return TarSet{}, fmt.Errorf("list %s/%s: %w", store, prefix, err)
	}
	return ClassifyTars(names), nil
}

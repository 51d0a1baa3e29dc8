package restore

import (
	"context"
	"fmt"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
)

// restoreLayer is one backup of the chain being restored.
type restoreLayer struct {
	name    string
	tars    backup.TarSet
	methods map[string]codec.Method
	extract extractLayer
}

// planLayers resolves the chain of the backup name and what to extract
// from each of its backups, full backup first.
// A catch-up backup is one layer whose increments apply onto the
// standby's files.
func (f *Fetcher) planLayers(ctx context.Context, name string, s *backup.Sentinel, catchup bool) ([]*restoreLayer, error) {
	chain, err := backup.ResolveChain(ctx, f.Store, name, s)
	if err != nil {
		return nil, err
	}
	layers := make([]*restoreLayer, len(chain))
	for i, link := range chain {
		tars, err := backup.ListTars(ctx, f.Store, link.Name)
		if err != nil {
			return nil, err
		}
		l := &restoreLayer{name: link.Name, tars: tars, methods: map[string]codec.Method{}}
		for _, n := range append([]string{tars.PgControl, tars.BackupLabel}, tars.Parts...) {
			if n == "" {
				continue
			}
			m, err := backup.TarMethod(n)
			if err != nil {
				return nil, fmt.Errorf("backup %s: %w", link.Name, err)
			}
			l.methods[n] = m
		}
		layers[i] = l
	}
	if len(chain) == 1 && !catchup {
		return layers, nil
	}
	// Which members are increments is only recorded in files metadata.
	// Files a later backup no longer has (dropped relations) are not
	// restored from its ancestors.
	var leafFiles map[string]bool
	for i := len(chain) - 1; i >= 0; i-- {
		link := chain[i]
		incs := map[string]bool{}
		var files map[string]bool
		if i == len(chain)-1 {
			files = map[string]bool{}
		}
		err := backup.ForEachBackupFile(ctx, f.Store, link.Name, link.Sentinel, func(member string, d backup.FileDescription) error {
			rel, err := CleanMemberName(member)
			if err != nil {
				return err
			}
			if d.IsIncremented {
				incs[rel] = true
			}
			if files != nil {
				files[rel] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("backup %s of the chain: files metadata: %w", link.Name, err)
		}
		if len(files) > 0 {
			leafFiles = files
		}
		layers[i].extract = extractLayer{increments: incs, createMissing: catchup}
		if i < len(chain)-1 {
			layers[i].extract.only = leafFiles
		}
	}
	return layers, nil
}

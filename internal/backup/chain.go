package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/tusk-pg/tusk/internal/storage"
)

// ErrBrokenChain is wrapped when a delta backup's chain of base backups
// cannot be restored: a base is missing or does not match.
var ErrBrokenChain = errors.New("broken delta chain")

// MaxChainLength bounds the walk along DeltaFrom, so a cycle in hostile
// sentinels cannot loop forever. WAL-G's WALG_DELTA_MAX_STEPS is an int,
// but chains are short in practice.
const MaxChainLength = 10000

// ChainLink is one backup of a delta chain.
type ChainLink struct {
	Name     string
	Sentinel *Sentinel
}

// ResolveChain walks from the backup name (whose sentinel is s) along
// DeltaFrom to its full backup and returns the chain full backup first.
// Each delta must match its base as WAL-G records it: DeltaLSN is the
// base's start LSN, DeltaFullName the chain's full backup, and both come
// from the same cluster. A missing base is named in the error.
func ResolveChain(ctx context.Context, store storage.Storage, name string, s *Sentinel) ([]ChainLink, error) {
	chain := []ChainLink{{name, s}}
	seen := map[string]bool{name: true}
	for cur := chain[0]; cur.Sentinel.IsDelta(); {
		child := cur
		parentName := child.Sentinel.DeltaFrom
		if err := CheckName(parentName); err != nil {
			return nil, fmt.Errorf("%w: backup %s: DeltaFrom: %w", ErrBrokenChain, child.Name, err)
		}
		if seen[parentName] || len(chain) >= MaxChainLength {
			return nil, fmt.Errorf("%w: backup %s: the chain through %s loops or is longer than %d", ErrBrokenChain, name, parentName, MaxChainLength)
		}
		seen[parentName] = true
		ps, err := FetchSentinel(ctx, store, parentName)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("%w: backup %s is a delta of %s, which is not in %s (%v)", ErrBrokenChain, child.Name, parentName, store, err)
		}
		if err != nil {
			return nil, fmt.Errorf("base %s of delta %s: %w", parentName, child.Name, err)
		}
		if ps.LSN != child.Sentinel.DeltaLSN {
			return nil, fmt.Errorf("%w: backup %s is a delta from LSN %s, but its base %s starts at %s",
				ErrBrokenChain, child.Name, child.Sentinel.DeltaLSN, parentName, ps.LSN)
		}
		wantFull := parentName
		if ps.IsDelta() {
			wantFull = ps.DeltaFullName
		}
		if child.Sentinel.DeltaFullName != wantFull {
			return nil, fmt.Errorf("%w: backup %s names %s as its full backup, but its base %s belongs to %s",
				ErrBrokenChain, child.Name, child.Sentinel.DeltaFullName, parentName, wantFull)
		}
		if a, b := child.Sentinel.SystemIdentifier, ps.SystemIdentifier; a != nil && b != nil && *a != *b {
			return nil, fmt.Errorf("%w: backup %s (system %d) and its base %s (system %d) are of different clusters",
				ErrBrokenChain, child.Name, *a, parentName, *b)
		}
		cur = ChainLink{parentName, ps}
		chain = append(chain, cur)
	}
	// Full backup first.
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

package retention

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
)

// interruptedTarget finishes a delete target that was stopped after the
// named backup's sentinel went (WAL-G would only say that the backup does
// not exist, and leave its data behind). The folders left without a
// sentinel that belong to the named backup's deletion go: its own, those of
// the deltas built on it, found by name (a delta's name carries its base's
// start segment), and with FindFull those up its chain, up to a backup still
// listed, whose chain then goes as delete target FIND_FULL would take it.
// Listed backups are never reached by name alone.
func (r *Repo) interruptedTarget(ctx context.Context, spec TargetSpec, notFound error) (*Plan, error) {
	if _, err := backup.ParseName(spec.Name); err != nil {
		return nil, notFound
	}
	leftovers, err := r.leftoverFolders(ctx)
	if err != nil {
		return nil, err
	}
	root := spec.Name
	var set []*Backup
	for i := 0; spec.FindFull && i < maxChain; i++ {
		n, _ := backup.ParseName(root)
		if !n.IsDelta() {
			break
		}
		if p := leftoverStarting(leftovers, n.DeltaBase); p != "" {
			root = p
			continue
		}
		for _, b := range r.backups {
			if bn, err := backup.ParseName(b.Name); err == nil && bn.Start == n.DeltaBase {
				set = r.related(b)
				break
			}
		}
		break
	}
	chained := chainedLeftovers(leftovers, []string{root})
	if !leftovers[root] && len(chained) == 0 && len(set) == 0 {
		return nil, notFound
	}
	r.opts.Log.Warn(fmt.Sprintf("backup %s has no sentinel; deleting what an interrupted delete left of it", spec.Name))
	return r.targetPlan(ctx, set, []string{root})
}

func leftoverStarting(leftovers map[string]bool, start string) string {
	for name := range leftovers {
		if n, err := backup.ParseName(name); err == nil && n.Start == start {
			return name
		}
	}
	return ""
}

// chainedLeftovers returns the roots that are leftover folders and every
// leftover folder whose name chains (through its delta base) to a root,
// bases before their deltas.
func chainedLeftovers(leftovers map[string]bool, roots []string) []string {
	var out []string
	seen := map[string]bool{}
	for queue := roots; len(queue) > 0; queue = queue[1:] {
		cur := queue[0]
		if seen[cur] {
			continue
		}
		seen[cur] = true
		if leftovers[cur] {
			out = append(out, cur)
		}
		n, err := backup.ParseName(cur)
		if err != nil {
			continue
		}
		for _, name := range sortedKeys(leftovers) {
			if c, err := backup.ParseName(name); err == nil && c.DeltaBase == n.Start {
				queue = append(queue, name)
			}
		}
	}
	return out
}

// leftoverFolders names the folders under basebackups_005/ that have no
// sentinel. The listing streams; only folder names are kept.
func (r *Repo) leftoverFolders(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := r.store.List(ctx, backup.Prefix, func(o storage.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, backup.Prefix)
		folder, _, isNested := strings.Cut(rest, "/")
		if isNested && r.byName[folder] == nil {
			out[folder] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", r.store, backup.Prefix, err)
	}
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

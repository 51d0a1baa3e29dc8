// Package multi is WAL-G's failover storages: a primary storage
// ("default") and named failover storages, of which commands use the
// first alive one (writes) or all alive ones (reads), as WAL-G v3.0.9
// decides.
//
// Which storages are alive comes from a status cache, in memory and in a
// file shared between processes, fed by explicit checks (a listing, and
// for writing commands an upload and delete of a small object) when a
// storage's status is older than its lifetime, and by the result of every
// operation (an exponential moving average, see EMAParams).
//
// Memory: the views hold no buffers; an explicit write check streams
// CheckSize bytes generated on the fly from a seekable source (the
// backend's own per-upload memory applies, for each storage checked at
// once). The cache holds one small entry per storage; merging listings
// asks earlier storages about each later object instead of remembering
// keys, so nothing grows with a listing.
package multi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
)

// Reserved storage names (WAL-G's): the primary storage, and "every
// storage" where a command accepts it.
const (
	Default = "default"
	All     = "all"
)

// ErrNoAlive is returned when no storage the command may use is alive.
var ErrNoAlive = errors.New("no alive storages")

// Member is one configured storage.
type Member struct {
	// Name is "default" for the primary storage, else the failover
	// storage's name in WALG_FAILOVER_STORAGES.
	Name string
	// Hash identifies the storage's configuration, so that a cache file
	// shared by several configurations keeps their statuses apart.
	Hash  string
	Store storage.Storage
}

func (m Member) key() key { return key{m.Name, m.Hash} }

// Options are the WALG_FAILOVER_STORAGES_* settings.
type Options struct {
	// Check enables the alive checks (WALG_FAILOVER_STORAGES_CHECK); off,
	// every storage counts as alive.
	Check bool
	// CheckWrite: the command writes, so a storage is alive only if an
	// upload works too; it also selects the RW cache file.
	CheckWrite   bool
	CheckTimeout time.Duration // WALG_FAILOVER_STORAGES_CHECK_TIMEOUT
	CheckSize    int64         // WALG_FAILOVER_STORAGES_CHECK_SIZE
	// CacheLifetime is how long a status is trusted without a check
	// (WALG_FAILOVER_STORAGES_CACHE_LIFETIME).
	CacheLifetime time.Duration
	EMA           EMAParams
	// CacheDir holds the cache files (WAL-G: the home directory); empty
	// keeps the cache in memory.
	CacheDir string
	Log      *slog.Logger
}

// CacheFile is the status cache file of a read-only or a writing command,
// WAL-G's names.
func CacheFile(dir string, write bool) string {
	if write {
		return dir + "/.walg_storage_rw_status_cache"
	}
	return dir + "/.walg_storage_ro_status_cache"
}

// Set is the configured storages in WAL-G's order: the primary first,
// then the failovers sorted by name (and configuration hash).
type Set struct {
	members []Member
	opts    Options
	cache   *statusCache // nil when checks are off
}

// New orders the storages and prepares the status cache. A failover
// named "default" or "all" is refused, as are two with one name.
func New(primary Member, failovers []Member, o Options) (*Set, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	primary.Name = Default
	fo := slices.Clone(failovers)
	seen := map[string]bool{}
	for _, m := range fo {
		if m.Name == Default || m.Name == All {
			return nil, fmt.Errorf("WALG_FAILOVER_STORAGES: the storage name %q is reserved", m.Name)
		}
		if seen[m.Name] {
			return nil, fmt.Errorf("WALG_FAILOVER_STORAGES: storage %q is configured twice", m.Name)
		}
		seen[m.Name] = true
	}
	slices.SortFunc(fo, func(a, b Member) int { return cmp.Compare(a.key().String(), b.key().String()) })
	s := &Set{members: append([]Member{primary}, fo...), opts: o}
	if o.Check {
		if err := o.EMA.Validate(); err != nil {
			return nil, err
		}
		path := ""
		if o.CacheDir != "" {
			path = CacheFile(o.CacheDir, o.CheckWrite)
		}
		s.cache = newStatusCache(path, o.CacheLifetime, o.EMA, o.Log)
	}
	return s, nil
}

// Names lists the storages in order.
func (s *Set) Names() []string {
	out := make([]string, len(s.members))
	for i, m := range s.members {
		out[i] = m.Name
	}
	return out
}

// Member returns the storage called name, or an error listing the names.
func (s *Set) Member(name string) (Member, error) {
	for _, m := range s.members {
		if m.Name == name {
			return m, nil
		}
	}
	return Member{}, fmt.Errorf("storage %q is not configured; the storages are %s", name, strings.Join(s.Names(), ", "))
}

// Close writes the status cache to its file.
func (s *Set) Close() error {
	if s.cache != nil {
		s.cache.flush()
	}
	return nil
}

func (s *Set) keys() []key {
	out := make([]key, len(s.members))
	for i, m := range s.members {
		out[i] = m.key()
	}
	return out
}

// FirstAlive is the storage a writing command uses: the first in order
// that is alive, where every storage before it has a known status.
// Cached statuses answer first; then the outdated storages are checked,
// and, when still none is alive, the relevant ones too (WAL-G's order).
func (s *Set) FirstAlive(ctx context.Context) (Member, error) {
	if s.cache == nil {
		return s.members[0], nil
	}
	relevant, outdated := s.cache.read(s.keys())
	if m, ok := s.firstAlive(relevant); ok {
		return m, nil
	}
	for _, group := range []map[string]bool{outdated, relevant} {
		alive, err := s.checkGroup(ctx, group)
		if err != nil {
			return Member{}, err
		}
		if m, ok := s.firstAlive(alive); ok {
			return m, nil
		}
	}
	return Member{}, fmt.Errorf("%w among %s", ErrNoAlive, strings.Join(s.Names(), ", "))
}

// firstAlive walks the storages in order; a storage missing from alive
// ends the walk, since one before the alive one might be alive too.
func (s *Set) firstAlive(alive map[string]bool) (Member, bool) {
	for _, m := range s.members {
		a, ok := alive[m.Name]
		if !ok {
			return Member{}, false
		}
		if a {
			return m, true
		}
	}
	return Member{}, false
}

// AllAlive is the storages a reading command uses, in order.
func (s *Set) AllAlive(ctx context.Context) ([]Member, error) {
	if s.cache == nil {
		return slices.Clone(s.members), nil
	}
	relevant, outdated := s.cache.read(s.keys())
	if len(outdated) == 0 {
		if ms := s.alive(relevant); len(ms) > 0 {
			return ms, nil
		}
	}
	for _, group := range []map[string]bool{outdated, relevant} {
		alive, err := s.checkGroup(ctx, group)
		if err != nil {
			return nil, err
		}
		if ms := s.alive(alive); len(ms) > 0 {
			return ms, nil
		}
	}
	return nil, fmt.Errorf("%w among %s", ErrNoAlive, strings.Join(s.Names(), ", "))
}

// checkGroup checks the storages of group and returns the cached alive
// map of every storage afterwards.
func (s *Set) checkGroup(ctx context.Context, group map[string]bool) (map[string]bool, error) {
	res, err := s.check(ctx, names(group))
	if err != nil {
		return nil, err
	}
	return s.cache.checked(res, s.keys()), nil
}

func (s *Set) alive(alive map[string]bool) []Member {
	var out []Member
	for _, m := range s.members {
		if alive[m.Name] {
			out = append(out, m)
		}
	}
	return out
}

// Specific is the storage --target-storage names, which must be alive.
func (s *Set) Specific(ctx context.Context, name string) (Member, error) {
	m, err := s.Member(name)
	if err != nil || s.cache == nil {
		return m, err
	}
	relevant, _ := s.cache.read([]key{m.key()})
	if relevant[name] {
		return m, nil
	}
	res, err := s.check(ctx, []string{name})
	if err != nil {
		return Member{}, err
	}
	if s.cache.checked(res, []key{m.key()})[name] {
		return m, nil
	}
	return Member{}, fmt.Errorf("storage %q: %w", name, ErrNoAlive)
}

// report feeds one operation's result to the cache. A missing object is
// a successful operation; a cancelled one says nothing about the storage.
func (s *Set) report(m Member, weight float64, err error) {
	if s.cache == nil || errors.Is(err, context.Canceled) {
		return
	}
	ok := err == nil || errors.Is(err, storage.ErrNotFound)
	s.cache.reported(m.key(), ok, weight)
}

func names(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

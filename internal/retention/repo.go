package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// Options configure a delete.
type Options struct {
	// SegmentSize is the WAL segment size in bytes (WALG_PG_WAL_SIZE).
	SegmentSize int64
	// UseSentinelTime orders backups by their metadata start time instead of
	// their position in WAL (WAL-G's --use-sentinel-time).
	UseSentinelTime bool
	// Confirm deletes; without it a delete only reports what it would do.
	Confirm bool
	Log     *slog.Logger
}

// Backup is one complete backup (one with a stop sentinel) as the delete
// forms see it.
type Backup struct {
	Name string
	// ModTime is the sentinel's modification time.
	ModTime time.Time
	// DeltaFrom is the direct base of a delta, DeltaFullName the full
	// backup at the root of its chain; both empty for a full backup.
	DeltaFrom     string
	DeltaFullName string
	// Meta is metadata.json, nil when the backup has none.
	Meta *backup.Metadata
}

// IsFull reports whether the backup is a full backup.
func (b *Backup) IsFull() bool { return b.DeltaFrom == "" }

// Permanent reports what metadata.json says: after backup-mark it, not the
// sentinel, holds the truth.
func (b *Backup) Permanent() bool { return b.Meta != nil && b.Meta.IsPermanent }

func (b *Backup) sentinelKey() string { return backup.SentinelKey(b.Name) }

// sentinelFile is the sentinel's name inside basebackups_005/, which WAL-G
// matches names given on the command line against (as a prefix).
func (b *Backup) sentinelFile() string { return b.Name + backup.SentinelSuffix }

// walRange is the WAL a permanent backup needs: its timeline, and the
// segments from the one holding start_lsn-1 to the one holding finish_lsn-1.
type walRange struct {
	timeline uint32
	lo, hi   uint64
}

// Repo is a loaded repository: its backups and what is permanent.
type Repo struct {
	store   storage.Storage
	opts    Options
	backups []*Backup
	byName  map[string]*Backup
	// permanent names the permanent backups; permanentWAL the WAL they need.
	permanent    map[string]bool
	permanentWAL []walRange
	order        order
	// listed is every complete backup in sentinel modification order (the
	// order that defines LATEST).
	listed []*Backup
}

// Load reads every backup's sentinel and metadata.json. A sentinel that
// cannot be read stops the delete (WAL-G's behaviour: deciding without it
// could delete a chain's base); a missing metadata.json only means the
// backup cannot be permanent.
func Load(ctx context.Context, store storage.Storage, opts Options) (*Repo, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 16 << 20
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	infos, err := backup.List(ctx, store)
	if err != nil {
		return nil, err
	}
	r := &Repo{store: store, opts: opts, byName: map[string]*Backup{}, permanent: map[string]bool{},
		order: order{segSize: opts.SegmentSize}}
	for _, info := range infos {
		s, err := backup.FetchSentinel(ctx, store, info.Name)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", info.Name, err)
		}
		b := &Backup{Name: info.Name, ModTime: info.ModTime, DeltaFrom: s.DeltaFrom, DeltaFullName: s.DeltaFullName}
		m, err := backup.FetchMetadata(ctx, store, info.Name)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			opts.Log.Info(fmt.Sprintf("Backup %s lacks metadata to check if it's permanent, ignoring...", info.Name))
		case err != nil:
			return nil, fmt.Errorf("backup %s: %w", info.Name, err)
		default:
			b.Meta = m
		}
		r.backups = append(r.backups, b)
		r.byName[b.Name] = b
	}
	r.listed = append([]*Backup(nil), r.backups...)
	// A stable base order (by name) so that ties sort the same on every
	// backend, whatever its listing order.
	sort.SliceStable(r.backups, func(i, j int) bool { return r.backups[i].Name < r.backups[j].Name })
	r.loadPermanence()
	if opts.UseSentinelTime {
		r.useStartTimes()
	}
	return r, nil
}

func (r *Repo) loadPermanence() {
	var names []string
	for _, b := range r.backups {
		if !b.Permanent() {
			continue
		}
		if len(b.Name) < len(backup.NamePrefix)+8 {
			r.opts.Log.Error(fmt.Sprintf("failed to parse backup timeline for backup %s, ignoring...", b.Name))
			continue
		}
		tli, err := strconv.ParseUint(b.Name[len(backup.NamePrefix):len(backup.NamePrefix)+8], 16, 32)
		if err != nil {
			r.opts.Log.Error(fmt.Sprintf("failed to parse backup timeline for backup %s with error %s, ignoring...", b.Name, err))
			continue
		}
		seg := uint64(r.opts.SegmentSize)
		// start_lsn-1 and finish_lsn-1 wrap for 0 exactly as WAL-G's do.
		r.permanentWAL = append(r.permanentWAL, walRange{timeline: uint32(tli),
			lo: uint64(b.Meta.StartLSN-1) / seg, hi: uint64(b.Meta.FinishLSN-1) / seg})
		r.permanent[b.Name] = true
		names = append(names, b.Name)
	}
	if len(names) > 0 {
		r.opts.Log.Info("Found permanent backups", "backups", strings.Join(names, ","))
	}
}

// useStartTimes switches to start-time order when every backup has
// metadata; otherwise WAL-G falls back to WAL order with a warning.
func (r *Repo) useStartTimes() {
	times := make(map[string]time.Time, len(r.backups))
	for _, b := range r.backups {
		if b.Meta == nil {
			r.opts.Log.Warn(fmt.Sprintf("Failed to get sentinel backup start times: backup %s has no metadata, will fall back to timeline and segment number for ordering...", b.Name))
			return
		}
		times[b.Name] = b.Meta.StartTime
	}
	r.order.startTimes = times
}

// Backups returns the loaded backups.
func (r *Repo) Backups() []*Backup { return r.backups }

// backupTime is the time the time-based forms compare: the sentinel's
// modification time, or the start time in start-time order.
func (r *Repo) backupTime(b *Backup) time.Time {
	if r.order.startTimes != nil {
		return r.order.startTimes[b.Name]
	}
	return b.ModTime
}

// isPermanent reports whether a key belongs to a permanent backup or is WAL
// a permanent backup needs. Other keys are never permanent.
//
// A WAL key is judged by its first 24 characters, as WAL-G's delete judges
// it, not by walindex.ParseName (wal-show's classification): an object
// such as wal_005/000000010000000000000003_tmp is WAL of segment 3 to the
// delete, and stays while a permanent backup needs segment 3.
func (r *Repo) isPermanent(key string) bool {
	if rest, ok := strings.CutPrefix(key, wal.Folder); ok {
		if len(rest) < 24 || !isUpperHex(rest[:24]) {
			return false
		}
		s, err := wal.ParseSegment(rest[:24], r.opts.SegmentSize)
		if err != nil {
			return false
		}
		for _, w := range r.permanentWAL {
			if s.Timeline == w.timeline && s.No >= w.lo && s.No <= w.hi {
				return true
			}
		}
		return false
	}
	if name, ok := backupOfKey(key); ok {
		return r.permanent[name]
	}
	return false
}

// newestFirst returns the backups sorted newest first in the delete order.
func (r *Repo) newestFirst() []*Backup {
	bs := append([]*Backup(nil), r.backups...)
	sort.SliceStable(bs, func(i, j int) bool { return r.order.less(bs[j].sentinelKey(), bs[i].sentinelKey()) })
	return bs
}

// oldestFirst returns the backups sorted oldest first in the delete order.
func (r *Repo) oldestFirst() []*Backup {
	bs := append([]*Backup(nil), r.backups...)
	sort.SliceStable(bs, func(i, j int) bool { return r.order.less(bs[i].sentinelKey(), bs[j].sentinelKey()) })
	return bs
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tusk-pg/tusk/internal/bufpool"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/rss"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/multi"
	"github.com/tusk-pg/tusk/internal/wal"
)

// openStorage connects the backend the configuration selects, with the
// wrappers every backend gets (storage.Open): the one way commands reach
// the primary storage alone.
func (a *app) openStorage(ctx context.Context) (storage.Storage, error) {
	c, err := a.cfg.Storage()
	if err != nil {
		return nil, err
	}
	return storage.Open(ctx, c, a.wrappers(), a.log)
}

func (a *app) wrappers() storage.Wrappers {
	return storage.Wrappers{NetworkRateLimit: a.cfg.NetworkRateLimit()}
}

// namedStorage opens one storage by name, "default" for the primary,
// without an alive check (WAL-G's st tools and st transfer).
func (a *app) namedStorage(ctx context.Context, name string) (storage.Storage, error) {
	if name == "" || name == multi.Default {
		return a.openStorage(ctx)
	}
	names := []string{multi.Default}
	for _, f := range a.cfg.FailoverStorages() {
		if f.Name == name {
			return storage.Open(ctx, f.Storage, a.wrappers(), a.log)
		}
		names = append(names, f.Name)
	}
	return nil, fmt.Errorf("storage %q is not configured; the storages are %s", name, strings.Join(names, ", "))
}

// storageUse is how a command uses the failover storages, WAL-G's
// policy for it.
type storageUse int

const (
	// usePrimary: the primary storage alone (commands WAL-G does not run
	// on failover storages).
	usePrimary storageUse = iota
	// useWrite: the first alive storage, chosen once (wal-push,
	// backup-push); checks include a write.
	useWrite
	// useFollow: the first alive storage at each operation (the daemon).
	useFollow
	// useMerge: every alive storage, each object from the first holding
	// it (wal-fetch, wal-prefetch).
	useMerge
	// useUnite: every alive storage, listing every copy with its storage
	// (backup-list, backup-fetch).
	useUnite
	// useUniteWrite is useUnite with write checks (delete).
	useUniteWrite
)

// openStorageFor opens the storage a command uses under WAL-G's failover
// rules: target (--target-storage, else WALG_TARGET_STORAGE) names one
// storage ("default" is the primary). Without failover storages and
// without a target other than the primary this is openStorage.
func (a *app) openStorageFor(ctx context.Context, use storageUse, target string) (storage.Storage, error) {
	if use == usePrimary {
		return a.openStorage(ctx)
	}
	if target == "" {
		target = a.cfg.TargetStorage()
	}
	failovers := a.cfg.FailoverStorages()
	if len(failovers) == 0 && (target == "" || target == multi.Default) {
		return a.openStorage(ctx)
	}
	if use == useFollow && target != "" {
		use = useWrite // a named storage is used for every operation
	}
	primary, err := a.openStorage(ctx)
	if err != nil {
		return nil, err
	}
	var members []multi.Member
	for _, f := range failovers {
		st, err := storage.Open(ctx, f.Storage, a.wrappers(), a.log)
		if err != nil {
			return nil, fmt.Errorf("failover storage %q: %w", f.Name, err)
		}
		members = append(members, multi.Member{Name: f.Name, Hash: f.Hash, Store: st})
	}
	o := a.cfg.FailoverOptions()
	o.CheckWrite = use == useWrite || use == useFollow || use == useUniteWrite
	o.Log = a.log
	set, err := multi.New(multi.Member{Hash: a.cfg.StorageHash(), Store: primary}, members, o)
	if err != nil {
		return nil, err
	}
	a.storageSets = append(a.storageSets, set)
	switch use {
	case useWrite:
		st, name, err := set.Writer(ctx, target)
		if err == nil {
			a.log.Info("files will be uploaded to storage "+name, "storage", name)
		}
		return st, err
	case useFollow:
		return set.Follower(), nil
	default:
		st, names, err := set.Reader(ctx, target, use != useMerge)
		if err == nil {
			a.log.Debug("files will be read from storages "+strings.Join(names, ", "), "storages", names)
		}
		return st, err
	}
}

// closeStorages saves what the failover storages' status cache learnt.
func (a *app) closeStorages() {
	for _, s := range a.storageSets {
		_ = s.Close()
	}
	a.storageSets = nil
}

// walBuffering is how WAL uploads reach storage with this configuration
// (see wal.ChooseBuffering): the archiver and the daemon's memory plan
// both take it from here.
func (a *app) walBuffering(cr crypt.Crypter) (mode, why string, err error) {
	b, err := a.cfg.Storage()
	if err != nil {
		return "", "", err
	}
	mode, why = wal.ChooseBuffering(a.cfg.WALUploadBuffer(), b.Traits, cr)
	return mode, why, nil
}

// compression is the method WALG_COMPRESSION_METHOD and WALG_ZSTD_LEVEL
// select (checked in config.Load).
func (a *app) compression() (codec.Method, error) { return a.cfg.Compression(), nil }

// crypter builds the encryption the configuration asks for, or nil.
func (a *app) crypter() (crypt.Crypter, error) {
	return crypt.FromSettings(a.ctx, a.cfg.Crypt())
}

// walTools are the WAL commands' workers, built once per process.
type walTools struct {
	store    storage.Storage
	archiver *wal.Archiver
	restorer *wal.Restorer
}

func (a *app) newWAL(ctx context.Context, use storageUse, target string) (*walTools, error) {
	method, err := a.compression()
	if err != nil {
		return nil, err
	}
	cr, err := a.crypter()
	if err != nil {
		return nil, err
	}
	store, err := a.openStorageFor(ctx, use, target)
	if err != nil {
		return nil, err
	}
	segSize := a.cfg.WalSegmentSize()
	readStore := store
	if use == useFollow && target == "" && a.cfg.TargetStorage() == "" && len(a.storageSets) > 0 {
		// The daemon's wal-fetch reads every alive storage, as WAL-G's.
		readStore = a.storageSets[len(a.storageSets)-1].ReadFollower()
	}
	r := &wal.Restorer{
		Store:        readStore,
		Crypter:      cr,
		SegmentSize:  segSize,
		Retries:      a.cfg.DownloadFileRetries(),
		RetryTimeout: a.cfg.FetchRetryTimeout(),
		Log:          a.log,
	}
	if home, err := os.UserHomeDir(); err == nil {
		r.ExtCachePath = filepath.Join(home, ".walg_decompressor_cache")
	}
	buffering, why, err := a.walBuffering(cr)
	if err != nil {
		return nil, err
	}
	if why != "" {
		a.log.Info("TUSK_WAL_UPLOAD_BUFFER: using "+buffering, "reason", why)
	}
	w := &wal.Archiver{
		Store:            store,
		Buffering:        buffering,
		NewEncoder:       func() *pipe.Encoder { return pipe.NewEncoder(method, cr) },
		Pool:             bufpool.New(bufpool.DefaultChunkSize),
		SegmentSize:      segSize,
		PreventOverwrite: a.cfg.PreventWALOverwrite(),
		Restorer:         r,
		Log:              a.log,
	}
	// Start-up (package initialisers, configuration, the storage client)
	// is done: drop the code pages only it touched from the resident set.
	rss.DropFilePages()
	return &walTools{store: store, archiver: w, restorer: r}, nil
}

// walReader is what the commands that only read archived WAL need: the
// storage and a restorer that opens archived files (decrypted and
// decompressed, extensions probed as WAL-G does).
type walReader struct {
	store    storage.Storage
	restorer *wal.Restorer
}

func (a *app) newWALReader(ctx context.Context) (*walReader, error) {
	cr, err := a.crypter()
	if err != nil {
		return nil, err
	}
	store, err := a.openStorage(ctx)
	if err != nil {
		return nil, err
	}
	// No ExtCachePath: a read-only command writes nothing.
	r := &wal.Restorer{Store: store, Crypter: cr, SegmentSize: a.cfg.WalSegmentSize(), Log: a.log}
	return &walReader{store: store, restorer: r}, nil
}

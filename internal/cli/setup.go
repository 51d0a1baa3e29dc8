package cli

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
func (a *App) OpenStorage(ctx context.Context) (storage.Storage, error) {
	c, err := a.Cfg.Storage()
	if err != nil {
		return nil, err
	}
	return storage.Open(ctx, c, a.Wrappers(), a.Log)
}

func (a *App) Wrappers() storage.Wrappers {
	return storage.Wrappers{NetworkRateLimit: a.Cfg.NetworkRateLimit()}
}

// namedStorage opens one storage by name, "default" for the primary,
// without an alive check (WAL-G's st tools and st transfer).
func (a *App) NamedStorage(ctx context.Context, name string) (storage.Storage, error) {
	if name == "" || name == multi.Default {
		return a.OpenStorage(ctx)
	}
	names := []string{multi.Default}
	for _, f := range a.Cfg.FailoverStorages() {
		if f.Name == name {
			return storage.Open(ctx, f.Storage, a.Wrappers(), a.Log)
		}
		names = append(names, f.Name)
	}
	return nil, fmt.Errorf("storage %q is not configured; the storages are %s", name, strings.Join(names, ", "))
}

// StorageUse is how a command uses the failover storages, WAL-G's
// policy for it.
type StorageUse int

const (
	// UsePrimary: the primary storage alone (commands WAL-G does not run
	// on failover storages).
	UsePrimary StorageUse = iota
	// UseWrite: the first alive storage, chosen once (wal-push,
	// backup-push); checks include a write.
	UseWrite
	// UseFollow: the first alive storage at each operation (the daemon).
	UseFollow
	// UseMerge: every alive storage, each object from the first holding
	// it (wal-fetch, wal-prefetch).
	UseMerge
	// UseUnite: every alive storage, listing every copy with its storage
	// (backup-list, backup-fetch).
	UseUnite
	// UseUniteWrite is UseUnite with write checks (delete).
	UseUniteWrite
)

// openStorageFor opens the storage a command uses under WAL-G's failover
// rules: target (--target-storage, else WALG_TARGET_STORAGE) names one
// storage ("default" is the primary). Without failover storages and
// without a target other than the primary this is openStorage.
func (a *App) OpenStorageFor(ctx context.Context, use StorageUse, target string) (storage.Storage, error) {
	if use == UsePrimary {
		return a.OpenStorage(ctx)
	}
	if target == "" {
		target = a.Cfg.TargetStorage()
	}
	failovers := a.Cfg.FailoverStorages()
	if len(failovers) == 0 && (target == "" || target == multi.Default) {
		return a.OpenStorage(ctx)
	}
	if use == UseFollow && target != "" {
		use = UseWrite // a named storage is used for every operation
	}
	primary, err := a.OpenStorage(ctx)
	if err != nil {
		return nil, err
	}
	var members []multi.Member
	for _, f := range failovers {
		st, err := storage.Open(ctx, f.Storage, a.Wrappers(), a.Log)
		if err != nil {
			return nil, fmt.Errorf("failover storage %q: %w", f.Name, err)
		}
		members = append(members, multi.Member{Name: f.Name, Hash: f.Hash, Store: st})
	}
	o := a.Cfg.FailoverOptions()
	o.CheckWrite = use == UseWrite || use == UseFollow || use == UseUniteWrite
	o.Log = a.Log
	set, err := multi.New(multi.Member{Hash: a.Cfg.StorageHash(), Store: primary}, members, o)
	if err != nil {
		return nil, err
	}
	a.StorageSets = append(a.StorageSets, set)
	switch use {
	case UseWrite:
		st, name, err := set.Writer(ctx, target)
		if err == nil {
			a.Log.Info("files will be uploaded to storage "+name, "storage", name)
		}
		return st, err
	case UseFollow:
		return set.Follower(), nil
	default:
		st, names, err := set.Reader(ctx, target, use != UseMerge)
		if err == nil {
			a.Log.Debug("files will be read from storages "+strings.Join(names, ", "), "storages", names)
		}
		return st, err
	}
}

// closeStorages saves what the failover storages' status cache learnt.
func (a *App) closeStorages() {
	for _, s := range a.StorageSets {
		_ = s.Close()
	}
	a.StorageSets = nil
}

// walBuffering is how WAL uploads reach storage with this configuration
// (see wal.ChooseBuffering): the archiver and the daemon's memory plan
// both take it from here.
func (a *App) WALBuffering(cr crypt.Crypter) (mode, why string, err error) {
	b, err := a.Cfg.Storage()
	if err != nil {
		return "", "", err
	}
	mode, why = wal.ChooseBuffering(a.Cfg.WALUploadBuffer(), b.Traits, cr)
	return mode, why, nil
}

// compression is the method WALG_COMPRESSION_METHOD and WALG_ZSTD_LEVEL
// select (checked in config.Load).
func (a *App) Compression() (codec.Method, error) { return a.Cfg.Compression(), nil }

// crypter builds the encryption the configuration asks for, or nil.
func (a *App) Crypter() (crypt.Crypter, error) {
	return crypt.FromSettings(a.Ctx, a.Cfg.Crypt())
}

// WALTools are the WAL commands' workers, built once per process.
type WALTools struct {
	Store    storage.Storage
	Archiver *wal.Archiver
	Restorer *wal.Restorer
}

func (a *App) NewWAL(ctx context.Context, use StorageUse, target string) (*WALTools, error) {
	method, err := a.Compression()
	if err != nil {
		return nil, err
	}
	cr, err := a.Crypter()
	if err != nil {
		return nil, err
	}
	store, err := a.OpenStorageFor(ctx, use, target)
	if err != nil {
		return nil, err
	}
	segSize := a.Cfg.WalSegmentSize()
	readStore := store
	if use == UseFollow && target == "" && a.Cfg.TargetStorage() == "" && len(a.StorageSets) > 0 {
		// The daemon's wal-fetch reads every alive storage, as WAL-G's.
		readStore = a.StorageSets[len(a.StorageSets)-1].ReadFollower()
	}
	r := &wal.Restorer{
		Store:        readStore,
		Crypter:      cr,
		SegmentSize:  segSize,
		Retries:      a.Cfg.DownloadFileRetries(),
		RetryTimeout: a.Cfg.FetchRetryTimeout(),
		Log:          a.Log,
	}
	if home, err := os.UserHomeDir(); err == nil {
		r.ExtCachePath = filepath.Join(home, ".walg_decompressor_cache")
	}
	buffering, why, err := a.WALBuffering(cr)
	if err != nil {
		return nil, err
	}
	if why != "" {
		a.Log.Info("TUSK_WAL_UPLOAD_BUFFER: using "+buffering, "reason", why)
	}
	w := &wal.Archiver{
		Store:            store,
		Buffering:        buffering,
		NewEncoder:       func() *pipe.Encoder { return pipe.NewEncoder(method, cr) },
		Pool:             bufpool.New(bufpool.DefaultChunkSize),
		SegmentSize:      segSize,
		PreventOverwrite: a.Cfg.PreventWALOverwrite(),
		Restorer:         r,
		Log:              a.Log,
	}
	// Start-up (package initialisers, configuration, the storage client)
	// is done: drop the code pages only it touched from the resident set.
	rss.DropFilePages()
	return &WALTools{Store: store, Archiver: w, Restorer: r}, nil
}

// WALReader is what the commands that only read archived WAL need: the
// storage and a restorer that opens archived files (decrypted and
// decompressed, extensions probed as WAL-G does).
type WALReader struct {
	Store    storage.Storage
	Restorer *wal.Restorer
}

func (a *App) NewWALReader(ctx context.Context) (*WALReader, error) {
	cr, err := a.Crypter()
	if err != nil {
		return nil, err
	}
	store, err := a.OpenStorage(ctx)
	if err != nil {
		return nil, err
	}
	// No ExtCachePath: a read-only command writes nothing.
	r := &wal.Restorer{Store: store, Crypter: cr, SegmentSize: a.Cfg.WalSegmentSize(), Log: a.Log}
	return &WALReader{Store: store, Restorer: r}, nil
}

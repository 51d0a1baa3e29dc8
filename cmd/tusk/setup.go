package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/tusk-pg/tusk/internal/bufpool"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/rss"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// openStorage connects the backend the configuration selects, with the
// wrappers every backend gets (storage.Open): the one way commands reach
// storage.
func (a *app) openStorage(ctx context.Context) (storage.Storage, error) {
	c, err := a.cfg.Storage()
	if err != nil {
		return nil, err
	}
	return storage.Open(ctx, c, storage.Wrappers{NetworkRateLimit: a.cfg.NetworkRateLimit()}, a.log)
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
	return crypt.FromSettings(a.cfg.Crypt())
}

// walTools are the WAL commands' workers, built once per process.
type walTools struct {
	store    storage.Storage
	archiver *wal.Archiver
	restorer *wal.Restorer
}

func (a *app) newWAL(ctx context.Context) (*walTools, error) {
	method, err := a.compression()
	if err != nil {
		return nil, err
	}
	cr, err := a.crypter()
	if err != nil {
		return nil, err
	}
	store, err := a.openStorage(ctx)
	if err != nil {
		return nil, err
	}
	segSize := a.cfg.WalSegmentSize()
	r := &wal.Restorer{
		Store:        store,
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

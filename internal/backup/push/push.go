package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/ratelimit"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/wal"
)

// DefaultTarSizeThreshold is WALG_TAR_SIZE_THRESHOLD's default (2^30 - 1).
const DefaultTarSizeThreshold = 1<<30 - 1

// maxNameAttempts bounds the WAL switches backup-push makes to get a
// backup name no other backup uses.
const maxNameAttempts = 3

// Options configure one backup-push.
type Options struct {
	// DataDir is the data directory given on the command line; it must be
	// the server's data_directory.
	DataDir string
	Store   storage.Storage
	Method  codec.Method
	Crypter crypt.Crypter // nil: no encryption
	// Connect configures the PostgreSQL sessions (PG* variables).
	Connect pg.ConnectOptions

	// TarSizeThreshold is WALG_TAR_SIZE_THRESHOLD: uncompressed bytes per
	// data tar (a larger file gets a tar of its own).
	TarSizeThreshold int64
	// DiskConcurrency (WALG_UPLOAD_DISK_CONCURRENCY) and UploadConcurrency
	// (WALG_UPLOAD_CONCURRENCY): tars are read and uploaded together, so
	// min of the two tars are built at once.
	DiskConcurrency   int
	UploadConcurrency int
	// DiskRateLimit bounds reads of the data directory in bytes per
	// second (0: none). WALG_NETWORK_RATE_LIMIT is the storage's own
	// wrapper (storage.Wrappers).
	DiskRateLimit int64

	Verify          bool // --verify / WALG_VERIFY_PAGE_CHECKSUMS
	StoreAllCorrupt bool // --store-all-corrupt / WALG_STORE_ALL_CORRUPT_BLOCKS
	Permanent       bool
	// UserData is --add-user-data / WALG_SENTINEL_USER_DATA (valid JSON).
	UserData              json.RawMessage
	WithoutFilesMetadata  bool // no files_metadata.json
	DisablePartialRestore bool // WALG_DISABLE_PARTIAL_RESTORE: no DatabasesByNames

	// StopTimeout is WALG_STOP_BACKUP_TIMEOUT (0: wait as long as it takes).
	StopTimeout time.Duration
	// AliveCheckInterval is WALG_ALIVE_CHECK_INTERVAL (0: no checks).
	AliveCheckInterval time.Duration
	// WalSegmentSize is WALG_PG_WAL_SIZE in bytes, which wal-push and
	// wal-fetch use; compared with the server's.
	WalSegmentSize int64
	// TempDir holds the (unlinked) files metadata spools; "" = os.TempDir().
	TempDir string
	Log     *slog.Logger
	// Progress, when set, is told every byte read from the data directory.
	Progress backup.Progress
	// Delta chooses whether to take a delta backup and from which base
	// (ignored with WithoutFilesMetadata: a delta needs files metadata).
	Delta DeltaOptions
	// CatchupFrom, when set, makes the backup a catch-up backup
	// (catchup-push): every relation file stored as the pages changed at
	// or after this LSN, other files whole, the configuration files left
	// out. Store should then be the catchup_005/ view (storage.Remap).
	CatchupFrom pg.LSN
	// Remote: the files come over a replication connection (RunRemote),
	// one stream packed by one builder.
	Remote bool
	// DeltaSource is TUSK_DELTA_SOURCE: auto (default), page-scan or
	// wal-summaries.
	DeltaSource string
}

// Result describes a stored backup.
type Result struct {
	Name     string
	Sentinel *backup.Sentinel
}

// ceilMicro is WAL-G's CeilTimeUpToMicroseconds: timestamps and labels
// carry whole microseconds, rounded up.
func ceilMicro(t time.Time) time.Time {
	if t.Nanosecond()%1000 != 0 {
		t = t.Add(time.Microsecond)
		t = t.Add(-time.Duration(t.Nanosecond() % 1000))
	}
	return t
}

func (o *Options) defaults() {
	if o.TarSizeThreshold <= 0 {
		o.TarSizeThreshold = DefaultTarSizeThreshold
	}
	o.DiskConcurrency = max(o.DiskConcurrency, 1)
	o.UploadConcurrency = max(o.UploadConcurrency, 1)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Connect.Log == nil {
		o.Connect.Log = o.Log
	}
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
}

// Builders is how many tars are built and uploaded at once.
func (o *Options) Builders() int {
	if o.Remote {
		return 1
	}
	return max(1, min(o.DiskConcurrency, o.UploadConcurrency))
}

// Run takes an online base backup of the server whose data directory is
// o.DataDir and stores it in WAL-G's layout: data tars, pg_control.tar,
// backup_label.tar, metadata.json, files_metadata.json, and the stop
// sentinel last. A backup without its sentinel does not exist; on any
// failure no sentinel is written and the server's backup is aborted.
//
// The phases run in order: connect (check the server and the data
// directory), chooseBase (full or delta), start (pg_backup_start under a
// name no other backup uses), copyFiles (data tars, then pg_control),
// stop (pg_backup_stop, backup_label), commit (metadata, then the
// sentinel).
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	j := &job{o: o, log: o.Log, startTime: ceilMicro(time.Now().UTC())}
	defer j.close(ctx)
	if err := j.connect(ctx); err != nil {
		return nil, err
	}
	if err := j.chooseBase(ctx); err != nil {
		return nil, err
	}
	if err := j.start(ctx); err != nil {
		return nil, err
	}
	return j.result(j.finish(ctx))
}

// result reports the stored backup, or names it in the error.
func (j *job) result(s *backup.Sentinel, err error) (*Result, error) {
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", j.name, err)
	}
	j.log.Info("wrote backup", "name", j.name, "storage", j.o.Store.String(),
		"uncompressed", s.UncompressedSize, "stored", s.CompressedSize, "start_lsn", s.LSN.String(), "finish_lsn", s.FinishLSN.String(),
		"data_read", j.pack.dataRead.Load())
	return &Result{Name: j.name, Sentinel: s}, nil
}

// job is one backup-push as it moves through Run's phases.
type job struct {
	o         Options
	log       *slog.Logger
	startTime time.Time

	// Set by connect.
	conn    *pg.Conn
	info    pg.ServerInfo
	dataDir string
	verify  bool // page checksums are verified (asked for and enabled)

	// Set by chooseBase: nil for a full backup.
	delta *deltaBase

	// Set by start.
	name    string
	begin   pg.BackupStart
	tli     uint32         // the standby's timeline at the start
	summary *changedBlocks // delta from WAL summaries; nil: page scan

	// Set by copyFiles.
	pack   *packer
	walker *walker
	recs   []*fileRecorder
	last   *builder // stores pg_control and the backup label
}

// close ends the session, which aborts a backup still running on it: the
// clean-up for every failure.
func (j *job) close(ctx context.Context) {
	for _, r := range j.recs {
		r.close()
	}
	if j.conn != nil {
		j.conn.Close(context.WithoutCancel(ctx))
	}
}

// finish runs the phases after the backup started; their errors are
// reported under the backup's name.
func (j *job) finish(ctx context.Context) (*backup.Sentinel, error) {
	if j.delta != nil && j.begin.LSN <= j.delta.sentinel.LSN {
		return nil, fmt.Errorf("starts at %s, not after its delta base %s (%s)", j.begin.LSN, j.delta.name, j.delta.sentinel.LSN)
	}
	j.log.Info("backup started", "name", j.name, "lsn", j.begin.LSN.String(), "standby", j.begin.InRecovery)
	if j.delta != nil {
		j.log.Info("delta backup", "base", j.delta.name, "base_lsn", j.delta.sentinel.LSN, "delta_count", j.delta.count)
		var err error
		if j.summary, err = deltaFromSummaries(ctx, j.conn, j.o.DeltaSource, j.info.Version, j.delta.sentinel.LSN, j.begin.LSN, j.log); err != nil {
			return nil, err
		}
	}
	if err := j.copyFiles(ctx); err != nil {
		return nil, err
	}
	stop, err := j.stop(ctx)
	if err != nil {
		return nil, err
	}
	s := j.sentinel(stop)
	if err := j.commit(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// connect opens the session and checks that the server is one tusk backs
// up and that its data directory is the one given.
func (j *job) connect(ctx context.Context) error {
	o, log := j.o, j.log
	dataDir, err := filepath.Abs(o.DataDir)
	if err == nil {
		dataDir, err = filepath.EvalSymlinks(dataDir)
	}
	if err != nil {
		return fmt.Errorf("data directory %s: %w", o.DataDir, err)
	}
	j.dataDir = dataDir
	if j.conn, err = pg.Connect(ctx, o.Connect); err != nil {
		return err
	}
	info, err := j.conn.Info(ctx)
	if err != nil {
		return err
	}
	j.info = info
	if info.Version < pg.MinVersion {
		return fmt.Errorf("PostgreSQL server_version_num %d: tusk backs up PostgreSQL 10 and later (tested: 13 to 18)", info.Version)
	}
	if dataDir != info.DataDirectory {
		return fmt.Errorf("data directory from command line '%s' is not the same as Postgres' one '%s'", dataDir, info.DataDirectory)
	}
	for _, f := range []string{"global/pg_control", "PG_VERSION"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			return fmt.Errorf("it looks like you are trying to backup not pg_data: %w", err)
		}
	}
	if o.WalSegmentSize > 0 && info.WalSegmentSize != o.WalSegmentSize {
		msg := fmt.Sprintf("the server's wal_segment_size is %d MiB but WALG_PG_WAL_SIZE is %d MiB", info.WalSegmentSize>>20, o.WalSegmentSize>>20)
		if info.InRecovery {
			// WAL-G refuses too: the standby backup name depends on it.
			return errors.New(msg + "; set WALG_PG_WAL_SIZE to match")
		}
		log.Warn(msg + "; set WALG_PG_WAL_SIZE to match, wal-push and wal-fetch depend on it")
	}
	j.verify = o.Verify
	if j.verify && !info.DataChecksums {
		log.Warn("data_checksums is disabled in the database; skipping checksum validation, which may result in undetected data corruption")
		j.verify = false
	}
	if !info.InRecovery {
		checkArchiving(log, info)
	}
	if o.WithoutFilesMetadata {
		log.Info("files metadata tracking is disabled: files_metadata.json will not be uploaded")
	}
	return nil
}

// chooseBase decides between a full and a delta backup.
func (j *job) chooseBase(ctx context.Context) error {
	if from := j.o.CatchupFrom; from != 0 {
		if j.o.WithoutFilesMetadata {
			// Which members are page increments is only in files metadata.
			return errors.New("catchup-push needs files metadata: unset WALG_WITHOUT_FILES_METADATA")
		}
		if j.info.BlockSize != backup.IncrementBlockSize {
			return fmt.Errorf("catchup-push needs 8 KiB pages (block_size %d)", j.info.BlockSize)
		}
		// WAL-G's catch-up base: no backup, just its start LSN.
		j.delta = &deltaBase{sentinel: &backup.Sentinel{LSN: from}, count: 1, everything: true}
		return nil
	}
	if j.o.WithoutFilesMetadata {
		return nil // a delta needs the base's files metadata
	}
	delta, err := chooseDeltaBase(ctx, j.o.Store, j.o.Delta, j.o.Permanent, j.log)
	if err != nil || delta == nil {
		return err
	}
	info := j.info
	if info.HasSystemIdentifier && delta.sentinel.SystemIdentifier != nil && *delta.sentinel.SystemIdentifier != info.SystemIdentifier {
		j.log.Warn("the delta base is a backup of another cluster (system identifier differs): taking a full backup",
			"base", delta.name, "base_system_identifier", *delta.sentinel.SystemIdentifier, "system_identifier", info.SystemIdentifier)
		return nil
	}
	if info.BlockSize != backup.IncrementBlockSize {
		j.log.Warn("page increments need 8 KiB pages: taking a full backup", "block_size", info.BlockSize)
		return nil
	}
	j.delta = delta
	return nil
}

// start starts the backup on the server under a name no other backup uses.
func (j *job) start(ctx context.Context) error {
	baseName := ""
	if j.delta != nil {
		baseName = j.delta.name
	}
	var err error
	j.begin, j.name, j.tli, err = startUnique(ctx, j.conn, j.o, j.info, baseName)
	return err
}

// copyFiles stores the data tars and then pg_control, while a watch on the
// session stops the copy at once if PostgreSQL aborted the backup, rather
// than upload a backup that cannot be completed.
func (j *job) copyFiles(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopAlive := watchAlive(ctx, j.conn, j.o.AliveCheckInterval, cancel, j.log)
	err := j.packFiles(ctx)
	stopAlive()
	if err != nil {
		return err
	}
	return context.Cause(ctx)
}

func (j *job) packFiles(ctx context.Context) error {
	o := j.o
	j.pack = &packer{
		store: o.Store, backupName: j.name, ext: o.Method.Ext(), threshold: o.TarSizeThreshold,
		diskLimit: ratelimit.New(o.DiskRateLimit),
		verify:    j.verify, storeAll: o.StoreAllCorrupt, startLSN: uint64(j.begin.LSN),
		blockSize: j.info.BlockSize, relSegBlocks: j.info.RelSegmentBlocks, log: j.log,
		progress: o.Progress, delta: j.delta, summary: j.summary,
	}
	builders := make([]*builder, o.Builders())
	for i := range builders {
		var rec *fileRecorder
		if !o.WithoutFilesMetadata {
			var err error
			if rec, err = newFileRecorder(o.TempDir); err != nil {
				return err
			}
			j.recs = append(j.recs, rec)
		}
		builders[i] = j.pack.newBuilder(pipe.NewEncoder(o.Method, o.Crypter), rec)
	}
	j.walker = &walker{root: j.dataDir, log: j.log, catchup: o.CatchupFrom != 0}
	if err := j.pack.packAll(ctx, j.walker, builders); err != nil {
		return err
	}
	if j.walker.pgControl == nil {
		return fmt.Errorf("global/pg_control vanished from %s", j.dataDir)
	}
	j.last = builders[0]
	return j.pack.storeFile(ctx, j.last.enc, j.last.buf, backup.PgControlTarName(j.pack.ext), *j.walker.pgControl)
}

// stop ends the backup on the server, stores backup_label and
// tablespace_map, and refuses a standby backup whose timeline changed.
func (j *job) stop(ctx context.Context) (pg.BackupStop, error) {
	j.log.Info("stopping the backup (waits until PostgreSQL has archived the WAL it needs)")
	stop, err := j.conn.StopBackup(ctx, true, j.o.StopTimeout)
	if err != nil {
		return stop, err
	}
	if err := j.pack.storeLabelFiles(ctx, j.last.enc, backup.BackupLabelTarName(j.pack.ext), stop.Label, stop.TablespaceMap); err != nil {
		return stop, err
	}
	if j.begin.InRecovery {
		// WAL-G's pessimistic check: a standby promoted (or following a
		// new timeline) during the backup invalidates it.
		now, _, err := j.conn.Timeline(ctx)
		if err != nil {
			return stop, fmt.Errorf("unable to check timeline change, the sentinel will not be uploaded: %w", err)
		}
		if now != j.tli {
			return stop, fmt.Errorf("timeline has changed since backup start (%d → %d), the sentinel will not be uploaded", j.tli, now)
		}
	}
	p := j.pack
	if c, b := p.corruptFiles.Load(), p.corruptBlocks.Load(); c > 0 {
		j.log.Warn("page checksum verification found corrupt blocks (recorded in files_metadata.json)", "files", c, "blocks", b)
	}
	if c := p.changedFiles.Load(); c > 0 {
		j.log.Info("files shrank while they were read (zero-padded; WAL replay restores them)", "files", c)
	}
	return stop, nil
}

// sentinel describes the finished backup.
func (j *job) sentinel(stop pg.BackupStop) *backup.Sentinel {
	o, info := j.o, j.info
	hostname, _ := os.Hostname()
	s := &backup.Sentinel{
		LSN:                   j.begin.LSN,
		PgVersion:             info.Version,
		FinishLSN:             stop.LSN,
		UncompressedSize:      j.pack.uncompressed.Load(),
		CompressedSize:        j.pack.compressed.Load(),
		DataCatalogSize:       j.walker.catalogSize,
		UserData:              o.UserData,
		FilesMetadataDisabled: o.WithoutFilesMetadata,
		Version:               backup.SentinelVersion,
		StartTime:             j.startTime,
		FinishTime:            ceilMicro(time.Now().UTC()),
		DateFmt:               backup.DateFmt,
		Hostname:              hostname,
		DataDir:               info.DataDirectory,
		IsPermanent:           o.Permanent,
	}
	if d := j.delta; d != nil {
		s.DeltaLSN = d.sentinel.LSN
		s.DeltaFrom = d.name
		s.DeltaFullName = d.fullName()
		s.DeltaCount = d.count
		// A catch-up base is the standby, not a stored backup.
		s.UnnamedBase = d.name == ""
	}
	if info.HasSystemIdentifier {
		id := info.SystemIdentifier
		s.SystemIdentifier = &id
	}
	if len(j.walker.spec) > 0 {
		s.Spec = &backup.TablespaceSpec{BasePrefix: strings.TrimRight(info.DataDirectory, "/"), Tablespaces: j.walker.spec}
	}
	return s
}

// commit stores metadata.json and files_metadata.json, then the sentinel:
// the point from which the backup exists.
func (j *job) commit(ctx context.Context, s *backup.Sentinel) error {
	o := j.o
	if j.delta != nil && o.Permanent {
		if err := markAncestorsPermanent(ctx, o.Store, j.delta); err != nil {
			return err
		}
	}
	if err := putJSON(ctx, o.Store, backup.MetadataKey(j.name), func() ([]byte, error) { return backup.EncodeMetadata(backup.MetadataFromSentinel(s)) }); err != nil {
		return err
	}
	if !o.WithoutFilesMetadata {
		var dbs databaseSource
		if !o.DisablePartialRestore {
			dbs = collectDatabases(j.conn, o.Connect)
		}
		extra := []extraTarSet{{tar: backup.BackupLabelTarName(j.pack.ext), members: labelMembers()}}
		if err := putStream(ctx, o.Store, backup.FilesMetadataKey(j.name), func(w io.Writer) error {
			return writeFilesMetadata(ctx, w, j.recs, extra, dbs)
		}); err != nil {
			return err
		}
	}
	return putJSON(ctx, o.Store, backup.SentinelKey(j.name), func() ([]byte, error) { return backup.EncodeSentinel(s) })
}

// checkArchiving warns, as WAL-G does, when the primary does not archive
// WAL: the backup cannot be restored without the WAL written during it.
func checkArchiving(log *slog.Logger, info pg.ServerInfo) {
	if info.ArchiveMode != "on" && info.ArchiveMode != "always" {
		log.Warn("archive_mode is not enabled. This may cause inconsistent backups. Please consider configuring WAL archiving.")
		return
	}
	if (info.ArchiveCommand == "" || info.ArchiveCommand == "(disabled)") && info.ArchiveLibrary == "" {
		log.Warn("archive_command is not configured. This may cause inconsistent backups. Please consider configuring WAL archiving.")
	}
}

// startUnique starts the backup and makes sure its name is not taken: two
// backups started in the same WAL segment get the same name, and the second
// would silently overwrite the first's objects (WAL-G's behaviour). On a
// primary tusk ends the backup, switches to a new WAL segment and starts
// again; on a standby, where WAL cannot be switched, it refuses.
func startUnique(ctx context.Context, conn *pg.Conn, o Options, info pg.ServerInfo, deltaBase string) (pg.BackupStart, string, uint32, error) {
	for attempt := 1; ; attempt++ {
		label := ceilMicro(time.Now()).String()
		start, err := conn.StartBackup(ctx, label)
		if err != nil {
			return start, "", 0, err
		}
		var name string
		var tli uint32
		if start.InRecovery {
			// WAL-G: the timeline of the last restartpoint and the segment
			// of the byte before the start LSN.
			t, seg, err := conn.Timeline(ctx)
			if err != nil {
				return start, "", 0, err
			}
			if seg != info.WalSegmentSize {
				return start, "", 0, fmt.Errorf("bytes_per_wal_segment %d does not match wal_segment_size %d", seg, info.WalSegmentSize)
			}
			tli = t
			name = backup.FullName(wal.Segment{Timeline: t, No: (uint64(start.LSN) - 1) / uint64(seg)}.Name(seg))
		} else {
			if !wal.IsSegmentName(start.WalFileName) {
				return start, "", 0, fmt.Errorf("pg_walfile_name_offset returned %q", start.WalFileName)
			}
			name = backup.FullName(start.WalFileName)
		}
		if deltaBase != "" {
			if name, err = backup.DeltaName(backup.WalFileName(name), deltaBase); err != nil {
				return start, "", 0, err
			}
		}
		taken, what, err := nameTaken(ctx, o.Store, name)
		if err != nil {
			return start, "", 0, err
		}
		if !taken {
			return start, name, tli, nil
		}
		if _, err := conn.StopBackup(ctx, false, o.StopTimeout); err != nil {
			return start, "", 0, err
		}
		if start.InRecovery {
			return start, "", 0, fmt.Errorf("backup name %s is already used (%s) and a standby cannot switch WAL to get a new one; "+
				"wait for the next restartpoint or delete the other backup", name, what)
		}
		if attempt >= maxNameAttempts {
			return start, "", 0, fmt.Errorf("backup name %s is already used (%s), even after %d WAL switches", name, what, attempt-1)
		}
		o.Log.Warn("backup name already used; switching WAL and starting again", "name", name, "found", what)
		if _, err := conn.SwitchWAL(ctx); err != nil {
			return start, "", 0, err
		}
	}
}

// errFound stops a listing at its first object.
var errFound = errors.New("found")

// nameTaken reports whether a backup called name exists (its sentinel) or
// has left objects behind (an incomplete backup whose tars a restore
// would mix with ours, since restores list the tar folder).
func nameTaken(ctx context.Context, store storage.Storage, name string) (bool, string, error) {
	ok, err := storage.Exists(ctx, store, backup.SentinelKey(name))
	if err != nil {
		return false, "", fmt.Errorf("check for an existing backup %s: %w", name, err)
	}
	if ok {
		return true, "a complete backup of that name exists", nil
	}
	var found string
	err = store.List(ctx, backup.FolderKey(name), func(oi storage.ObjectInfo) error {
		found = oi.Key
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return false, "", fmt.Errorf("check for objects of a backup %s: %w", name, err)
	}
	if found != "" {
		return true, "objects of an incomplete backup of that name exist, e.g. " + found, nil
	}
	return false, "", nil
}

// watchAlive pings the backup session every interval; a failure cancels the
// backup. The returned function stops the checks and waits for them. It
// lets a ping in flight finish instead of cancelling it: pgx closes a
// connection whose query is cancelled, and that would end the backup
// session with it. Only ctx's own end (the backup is cancelled) cuts a
// ping short.
func watchAlive(ctx context.Context, conn *pg.Conn, interval time.Duration, cancel context.CancelCauseFunc, log *slog.Logger) func() {
	if interval <= 0 {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-stop:
				return
			case <-t.C:
			}
			log.Debug("checking that PostgreSQL is still alive")
			if err := conn.Ping(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("PG alive check failed, PostgreSQL aborted the backup: %w", err))
				return
			}
		}
	})
	return func() {
		close(stop)
		wg.Wait()
	}
}

// putJSON stores a small plain JSON document (sentinel, metadata.json):
// never compressed nor encrypted, so listing works without keys.
func putJSON(ctx context.Context, store storage.Storage, key string, encode func() ([]byte, error)) error {
	b, err := encode()
	if err != nil {
		return err
	}
	if err := store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// putStream stores what write produces, streamed (files_metadata.json).
func putStream(ctx context.Context, store storage.Storage, key string, write func(io.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := store.Put(ctx, key, pr, -1)
		if err != nil {
			pr.CloseWithError(err) // the writer sees why the upload stopped
		} else {
			pr.CloseWithError(errPutReturned)
		}
		done <- err
	}()
	if werr := write(pw); werr != nil {
		pw.CloseWithError(werr)
		if perr := <-done; perr != nil && !errors.Is(werr, perr) {
			return fmt.Errorf("upload %s: %w", key, perr)
		}
		return fmt.Errorf("write %s: %w", key, werr)
	}
	pw.Close()
	if err := <-done; err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

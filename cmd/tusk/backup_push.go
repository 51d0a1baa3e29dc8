package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/backup/push"
	"github.com/tusk-pg/tusk/internal/pg"
)

type backupPushFlags struct {
	permanent, full, verify, storeAllCorrupt   bool
	ratingComposer, copyComposer, dbComposer   bool
	deltaFromName, deltaFromUserData, userData string
	withoutFilesMetadata                       bool
	targetStorage                              string
	memoryPlan                                 bool
	// catchupFrom is catchup-push's --from-lsn: a catch-up backup.
	catchupFrom pg.LSN
}

func newBackupPushCommand(a *app) *cobra.Command {
	var fl backupPushFlags
	cmd := &cobra.Command{
		Use:   "backup-push [DATA_DIRECTORY]",
		Short: "Take an online base backup of a running PostgreSQL",
		Long: `Takes a base backup of the running server whose data directory is
DATA_DIRECTORY (it must be the server's data_directory) and stores it as WAL-G
does: basebackups_005/<name>/tar_partitions/part_NNN.tar.<ext>, pg_control.tar,
backup_label.tar, metadata.json, files_metadata.json, and the stop sentinel
<name>_backup_stop_sentinel.json last: a backup without it does not exist.

It connects with the PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, ...),
runs pg_backup_start/pg_backup_stop (pg_start_backup/pg_stop_backup before
PostgreSQL 15) on one session, and streams each tar through compression and
encryption to storage. pg_backup_stop waits until PostgreSQL has archived the
WAL the backup needs, so archive_command (tusk wal-push) must work.

Tars hold about WALG_TAR_SIZE_THRESHOLD bytes; min(WALG_UPLOAD_DISK_CONCURRENCY,
WALG_UPLOAD_CONCURRENCY) tars are built and uploaded at once. Memory is bounded
by these settings, not by the database size: --memory-plan prints the bound.
Progress goes to stderr: a bar with bytes read, rate and ETA on a terminal,
otherwise a log line every 5 seconds.
With WALG_DELTA_MAX_STEPS > 0 (and without --full) a delta backup is taken, as
WAL-G does: its base is --delta-from-name / --delta-from-user-data
(WALG_DELTA_FROM_NAME, WALG_DELTA_FROM_USER_DATA) or else the latest backup
(its chain's full backup with WALG_DELTA_ORIGIN=LATEST_FULL); files whose mtime
equals the base's are skipped, relation files store only the pages whose LSN is
at or after the base's start LSN (wi1 page increments), other files are stored
whole. A full backup is taken instead when the chain would exceed
WALG_DELTA_MAX_STEPS, when there is no backup yet, or when the base is permanent
and this backup is not. On PostgreSQL 17+ with summarize_wal = on the changed
pages come from WAL summaries instead of reading every page
(TUSK_DELTA_SOURCE = auto, the default; page-scan; or wal-summaries to require
them); the stored backup is the same format either way.

Without DATA_DIRECTORY the backup is taken over a replication connection
(BASE_BACKUP, as WAL-G does): the PG* user needs the REPLICATION attribute
and a pg_hba.conf "replication" entry, plus an ordinary session for the
server's facts. The server's tar streams are re-cut into the same layout
(tablespaces included) by one tar builder; there is no delta backup and
page checksums (--verify) are checked by the server. WALG_DISK_RATE_LIMIT
becomes BASE_BACKUP's MAX_RATE.`,
		Args: cli.ArgCount(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.backupPush(cmd, args, &fl)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&fl.permanent, "permanent", "p", false, "mark the backup permanent (never deleted by retention)")
	f.BoolVarP(&fl.full, "full", "f", false, "take a full backup even with WALG_DELTA_MAX_STEPS > 0")
	f.BoolVarP(&fl.verify, "verify", "v", false, "verify page checksums (WALG_VERIFY_PAGE_CHECKSUMS); corrupt blocks go to files_metadata.json")
	f.BoolVarP(&fl.storeAllCorrupt, "store-all-corrupt", "s", false, "record every corrupt block, not just 10 per file (WALG_STORE_ALL_CORRUPT_BLOCKS)")
	f.BoolVarP(&fl.ratingComposer, "rating-composer", "r", false, "not supported yet: the regular composer is used")
	f.BoolVarP(&fl.copyComposer, "copy-composer", "c", false, "not supported yet: the regular composer is used")
	f.BoolVarP(&fl.dbComposer, "database-composer", "b", false, "not supported yet: the regular composer is used")
	f.StringVar(&fl.deltaFromName, "delta-from-name", "", "take the delta from this backup (WALG_DELTA_FROM_NAME)")
	f.StringVar(&fl.deltaFromUserData, "delta-from-user-data", "", "take the delta from the backup with this user data (WALG_DELTA_FROM_USER_DATA)")
	f.StringVar(&fl.userData, "add-user-data", "", "JSON stored as the backup's user data (WALG_SENTINEL_USER_DATA)")
	f.BoolVar(&fl.withoutFilesMetadata, "without-files-metadata", false, "do not upload files_metadata.json (WALG_WITHOUT_FILES_METADATA)")
	cli.AddTargetStorageFlag(cmd, &fl.targetStorage)
	f.BoolVar(&fl.memoryPlan, "memory-plan", false, "print the memory bound of this configuration and exit")
	return cmd
}

func (a *app) backupPush(cmd *cobra.Command, args []string, fl *backupPushFlags) error {
	ctx := cmd.Context()
	cfg := a.Cfg
	method, err := a.Compression()
	if err != nil {
		return err
	}
	cr, err := a.Crypter()
	if err != nil {
		return err
	}
	// A flag wins; an empty flag falls back to the setting (WAL-G).
	userData := fl.userData
	if userData == "" {
		userData = cfg.SentinelUserData()
	}
	var raw json.RawMessage
	if userData != "" {
		if !json.Valid([]byte(userData)) {
			return fmt.Errorf("--add-user-data / WALG_SENTINEL_USER_DATA is not valid JSON: %q", userData)
		}
		raw = json.RawMessage(userData)
	}
	opts := push.Options{
		Method:                method,
		Crypter:               cr,
		Connect:               pg.ConnectOptions{AppName: cfg.PGAppName(), Log: a.Log},
		TarSizeThreshold:      cfg.TarSizeThreshold(),
		DiskConcurrency:       cfg.UploadDiskConcurrency(),
		UploadConcurrency:     cfg.UploadConcurrency(),
		DiskRateLimit:         cfg.DiskRateLimit(),
		Verify:                fl.verify || cfg.VerifyPageChecksums(),
		StoreAllCorrupt:       fl.storeAllCorrupt || cfg.StoreAllCorruptBlocks(),
		Permanent:             fl.permanent,
		UserData:              raw,
		WithoutFilesMetadata:  fl.withoutFilesMetadata || cfg.WithoutFilesMetadata(),
		DisablePartialRestore: cfg.DisablePartialRestore(),
		StopTimeout:           cfg.StopBackupTimeout(),
		AliveCheckInterval:    cfg.AliveCheckInterval(),
		WalSegmentSize:        cfg.WalSegmentSize(),
		Remote:                len(args) == 0,
		Log:                   a.Log,
	}
	facts, err := a.memoryFacts(opts.Method, opts.Crypter)
	if err != nil {
		return err
	}
	plan := push.MemoryPlan(opts, facts)
	if fl.memoryPlan {
		return plan.Table(cmd.OutOrStdout())
	}
	// A backstop under the bound the code keeps: the collector works
	// harder near it instead of letting garbage raise the high-water mark.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(plan.HeapLimit())
	}

	if fl.ratingComposer || fl.copyComposer || fl.dbComposer {
		a.Log.Warn("the rating, copy and database tar composers are not supported yet; using the regular composer (the backup is complete either way)")
	}
	fromName, fromUserData := fl.deltaFromName, fl.deltaFromUserData
	if fromName == "" {
		fromName = cfg.DeltaFromName()
	}
	if fromUserData == "" {
		fromUserData = cfg.DeltaFromUserData()
	}
	if opts.WithoutFilesMetadata && (fromName != "" || fromUserData != "") {
		// WAL-G refuses too: a delta needs its base's files metadata.
		return errors.New("--without-files-metadata (WALG_WITHOUT_FILES_METADATA) cannot be combined with a delta base (--delta-from-name, --delta-from-user-data)")
	}
	if fromUserData != "" && !json.Valid([]byte(fromUserData)) {
		return fmt.Errorf("--delta-from-user-data / WALG_DELTA_FROM_USER_DATA is not valid JSON: %q", fromUserData)
	}
	opts.DeltaSource = cfg.DeltaSource()
	if !fl.full && fl.catchupFrom == 0 {
		opts.Delta = push.DeltaOptions{
			MaxSteps: cfg.DeltaMaxSteps(),
			Origin:   cfg.DeltaOrigin(),
			FromName: fromName,
		}
		if fromUserData != "" {
			opts.Delta.FromUserData = json.RawMessage(fromUserData)
		}
	}

	if opts.Remote && (fromName != "" || fromUserData != "") {
		// WAL-G refuses too: BASE_BACKUP sends every file whole.
		return errors.New("a delta backup (--delta-from-name, --delta-from-user-data, WALG_DELTA_FROM_*) needs DATA_DIRECTORY; over a replication connection only full backups are taken")
	}
	if !opts.Remote {
		opts.DataDir = args[0]
	}
	use := cli.UseWrite
	if fl.catchupFrom != 0 {
		use = cli.UsePrimary // WAL-G runs catchup-push on the primary storage only
	}
	if opts.Store, err = a.OpenStorageFor(ctx, use, fl.targetStorage); err != nil {
		return err
	}
	op := "backup-push"
	if fl.catchupFrom != 0 {
		op, opts.CatchupFrom = "catchup-push", fl.catchupFrom
		opts.Store = catchupStore(opts.Store)
	}
	rep, log := a.startProgress(op)
	defer rep.Stop()
	opts.Progress, opts.Log, opts.Connect.Log = rep, log, log
	// The total (for a percentage and an ETA) comes from a walk of its own:
	// the backup's walk is paced by the uploads and ends only near the end.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		estimate := func() (int64, error) { return push.EstimateSize(ctx, opts.DataDir) }
		if opts.Remote {
			estimate = func() (int64, error) { return push.EstimateRemoteSize(ctx, opts.Connect) }
		}
		if n, err := estimate(); err == nil {
			rep.SetTotal(n)
		} else if ctx.Err() == nil {
			log.Debug("backup-push: no size estimate for progress", "error", err)
		}
	})
	run := push.Run
	if opts.Remote {
		run = push.RunRemote
	}
	if _, err := run(ctx, opts); err != nil {
		return err
	}
	rep.Finish()
	return nil
}

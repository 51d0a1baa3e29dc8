package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/backup/restore"
	"github.com/tusk-pg/tusk/internal/config"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
)

// restoreConfigSuffix names the configuration file backup-fetch writes next
// to (never inside) the restored directory for its restore_command.
const restoreConfigSuffix = ".tusk-restore.json"

type backupFetchFlags struct {
	restoreSpec    string
	targetUserData string
	targetStorage  string
	mask           string
	restoreOnly    string
	reverseUnpack  bool
	skipRedundant  bool

	immediate bool
	time      string
	name      string
	lsn       string
	xid       string
	inclusive bool
	timeline  string
	action    string

	memoryPlan bool
	json       bool
}

func newBackupFetchCommand(a *app) *cobra.Command {
	var fl backupFetchFlags
	cmd := &cobra.Command{
		Use:   "backup-fetch DESTINATION [BACKUP_NAME|LATEST]",
		Short: "Restore a base backup into an empty directory",
		Long: `Restores a base backup into DESTINATION, which must be empty or absent.
The backup is LATEST (the last one completed), a name from backup-list, or the
one whose user data equals --target-user-data (WALG_FETCH_TARGET_USER_DATA).

Data tars are restored WALG_DOWNLOAD_CONCURRENCY at a time, then pg_control and
backup_label; every file and directory is fsynced unless WALG_TAR_DISABLE_FSYNC.
User tablespaces go to the locations recorded in the backup, which must be empty
or absent, not symlinks, and neither inside DESTINATION nor holding it or each
other, or where --restore-spec FILE says (WAL-G's JSON:
{"base_prefix": DEST, "tablespaces": ["16384"],
 "16384": {"loc": "/new/place", "link": "pg_tblspc/16384"}});
DESTINATION/pg_tblspc/<oid> links to them.

As with WAL-G, nothing else is written: configure recovery yourself
(recovery.signal and restore_command = 'tusk wal-fetch %f %p'). Or give a
recovery target and tusk does it: --target-immediate, --target-time,
--target-name, --target-lsn or --target-xid (with --target-inclusive,
--target-timeline, --target-action pause|promote|shutdown; default pause).
Then postgresql.auto.conf gets a restore_command running this tusk binary with
this configuration (the --config file, or one written to
DESTINATION.tusk-restore.json readable only by its owner; refused when
DESTINATION's parent is writable by group or others), with
TUSK_FETCH_ABORT_ON_STORAGE_ERROR=true so a storage outage stops recovery
instead of ending it early; recovery.signal is created.

If the restore fails, DESTINATION keeps the files written so far but never
global/pg_control, so PostgreSQL cannot start on it; empty it (and any
tablespace directories) before trying again.

A delta backup is restored as WAL-G does: the full backup of its chain first,
then each delta in order, page increments applied onto the files restored
before. --reverse-unpack and --skip-redundant-tars are accepted; the restore
order stays the same.

Progress goes to stderr: a bar with bytes written, rate and ETA (against the
backup's uncompressed size) on a terminal, otherwise a log line every 5
seconds. --memory-plan prints the memory bound of this configuration (--json:
as JSON) and exits without touching DESTINATION or storage.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fl.memoryPlan {
				return cli.ArgCount(0, 2)(cmd, args)
			}
			return cli.ArgCount(1, 2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.backupFetch(cmd, args, &fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.restoreSpec, "restore-spec", "", "JSON tablespace spec: where to restore each tablespace")
	f.StringVar(&fl.targetUserData, "target-user-data", "", "select the backup whose user data equals this JSON")
	cli.AddTargetStorageFlag(cmd, &fl.targetStorage)
	f.StringVar(&fl.mask, "mask", "", "restore only files matching this mask (not supported yet)")
	f.StringVar(&fl.restoreOnly, "restore-only", "", "partial restore of some databases (not supported yet)")
	f.BoolVar(&fl.reverseUnpack, "reverse-unpack", false, "accepted for WAL-G compatibility: deltas are restored oldest first, with the same result")
	f.BoolVar(&fl.skipRedundant, "skip-redundant-tars", false, "accepted for WAL-G compatibility (no effect)")
	f.BoolVar(&fl.immediate, "target-immediate", false, "recover only to the end of the backup (recovery_target = 'immediate')")
	f.StringVar(&fl.time, "target-time", "", "recover up to this timestamp (recovery_target_time)")
	f.StringVar(&fl.name, "target-name", "", "recover up to this restore point (recovery_target_name)")
	f.StringVar(&fl.lsn, "target-lsn", "", "recover up to this LSN (recovery_target_lsn)")
	f.StringVar(&fl.xid, "target-xid", "", "recover up to this transaction (recovery_target_xid)")
	f.BoolVar(&fl.inclusive, "target-inclusive", true, "stop just after (true) or just before (false) the target")
	f.StringVar(&fl.timeline, "target-timeline", "", "timeline to recover along: current, latest or a number")
	f.StringVar(&fl.action, "target-action", "", "at the target: pause (default), promote or shutdown")
	f.BoolVar(&fl.memoryPlan, "memory-plan", false, "print the memory bound of this configuration and exit")
	f.BoolVar(&fl.json, "json", false, "with --memory-plan: print it as JSON")
	return cmd
}

func (a *app) backupFetch(cmd *cobra.Command, args []string, fl *backupFetchFlags) error {
	ctx := cmd.Context()
	if fl.json && !fl.memoryPlan {
		return errors.New("backup-fetch --json goes with --memory-plan")
	}
	cr, err := a.Crypter()
	if err != nil {
		return err
	}
	plan, err := a.fetchMemoryPlan(cr)
	if err != nil {
		return err
	}
	if fl.memoryPlan {
		if fl.json {
			return plan.JSON(cmd.OutOrStdout())
		}
		return plan.Table(cmd.OutOrStdout())
	}
	// As for backup-push: the collector works harder near the bound
	// instead of letting garbage raise the high-water mark.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(plan.HeapLimit())
	}
	dest := args[0]
	switch {
	case fl.mask != "":
		return errors.New("backup-fetch --mask is not supported yet")
	case fl.restoreOnly != "":
		return errors.New("backup-fetch --restore-only is not supported yet")
	}

	target := restore.RecoveryTarget{
		Immediate: fl.immediate, Time: fl.time, Name: fl.name, LSN: fl.lsn, XID: fl.xid,
		Timeline: fl.timeline, Action: fl.action,
	}
	if cmd.Flags().Changed("target-inclusive") {
		target.Inclusive = &fl.inclusive
	}
	writeRecovery := false
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "target-immediate", "target-time", "target-name", "target-lsn", "target-xid",
			"target-inclusive", "target-timeline", "target-action":
			writeRecovery = true
		}
	})
	if writeRecovery {
		if err := target.Validate(); err != nil {
			return err
		}
		if a.needsRestoreConfig() {
			// Refuse before the restore, not after it.
			if err := checkRestoreConfigDir(dest); err != nil {
				return err
			}
		}
	}

	var spec *backup.TablespaceSpec
	if fl.restoreSpec != "" {
		data, err := os.ReadFile(fl.restoreSpec)
		if err != nil {
			return fmt.Errorf("--restore-spec: %w", err)
		}
		if spec, err = backup.ParseTablespaceSpec(data); err != nil {
			return fmt.Errorf("--restore-spec %s: %w", fl.restoreSpec, err)
		}
	}

	store, err := a.OpenStorageFor(ctx, cli.UseUnite, fl.targetStorage)
	if err != nil {
		return err
	}
	userData := fl.targetUserData
	if userData == "" {
		userData = a.Cfg.FetchTargetUserData()
	}
	var info backup.Info
	switch {
	case len(args) == 2 && fl.targetUserData != "":
		return errors.New("give either a backup name or --target-user-data, not both")
	case len(args) == 2:
		info, err = backup.Find(ctx, store, args[1])
	case userData != "":
		info, err = backup.FindByUserData(ctx, store, json.RawMessage(userData))
	default:
		return errors.New("name the backup to restore (a name from backup-list, or LATEST) or give --target-user-data")
	}
	if err != nil {
		return err
	}
	if len(args) == 2 && args[1] == backup.LatestName {
		a.Log.Info("backup-fetch: LATEST backup is " + info.Name)
	}

	rep, log := a.startProgress("backup-fetch")
	defer rep.Stop()
	rep.SetTotal(restoreSize(ctx, store, info.Name))
	res, err := a.fetcher(store, cr, log).Fetch(ctx, info.Name, dest, restore.FetchOptions{RestoreSpec: spec, Progress: rep})
	if err != nil {
		rep.Stop()
		return fmt.Errorf("backup-fetch %s into %s: %w", info.Name, dest, err)
	}
	rep.Finish()
	if writeRecovery {
		if err := a.writeRecovery(dest, res, target); err != nil {
			return fmt.Errorf("backup-fetch: backup %s restored into %s, but configuring recovery failed: %w", info.Name, dest, err)
		}
	}
	log.Info("backup-fetch: restored", "backup", info.Name, "destination", dest,
		"tars", res.Tars, "files", res.Files, "bytes", res.Bytes)
	return nil
}

// fetcher restores from store with the download settings.
func (a *app) fetcher(store storage.Storage, cr crypt.Crypter, log *slog.Logger) *restore.Fetcher {
	return &restore.Fetcher{
		Store:       store,
		Crypter:     cr,
		Concurrency: a.Cfg.DownloadConcurrency(),
		Retries:     a.Cfg.DownloadFileRetries(),
		NoFsync:     a.Cfg.TarDisableFsync(),
		Log:         log,
	}
}

// writeRecovery configures the restored directory to recover with this
// binary as restore_command.
func (a *app) writeRecovery(dest string, res *restore.FetchResult, target restore.RecoveryTarget) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locate the tusk binary for restore_command: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("locate the tusk binary for restore_command: %w", err)
	}
	dest, err = filepath.Abs(dest)
	if err != nil {
		return err
	}
	abort := "TUSK_FETCH_ABORT_ON_STORAGE_ERROR=true"
	var configFile string
	var env []string
	if !a.needsRestoreConfig() {
		// Everything came from the user's file: refer to it, so later edits
		// (e.g. rotated credentials) apply to recovery too.
		if configFile, err = filepath.Abs(a.Cfg.ConfigFileUsed()); err != nil {
			return err
		}
		env = []string{abort}
	} else {
		configFile = filepath.Clean(dest) + restoreConfigSuffix
		if err := a.writeRestoreConfig(configFile, dest); err != nil {
			return err
		}
		a.Log.Info("backup-fetch: wrote the configuration for restore_command", "file", configFile)
	}
	cmd := restore.RestoreCommand(exe, configFile, env)
	return restore.WriteRecoveryConfig(dest, res.Sentinel.PgVersion, cmd, target, !a.Cfg.TarDisableFsync())
}

// needsRestoreConfig reports whether restore_command needs a config file
// written by backup-fetch: unless every setting came from the --config
// file, which it then names.
func (a *app) needsRestoreConfig() bool {
	return a.Cfg.ConfigFileUsed() == "" || a.settingsOutsideFile()
}

// checkRestoreConfigDir refuses a restore whose configuration file (next
// to dest) would be created in a directory other users may write. A
// parent that does not exist yet is created private by the restore.
func checkRestoreConfigDir(dest string) error {
	parent := filepath.Dir(filepath.Clean(dest))
	root, err := os.OpenRoot(parent)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup-fetch: %w", err)
	}
	defer root.Close()
	return privateConfigDir(root)
}

// privateConfigDir checks the directory that receives the restore
// configuration.
func privateConfigDir(root *os.Root) error {
	if err := fsutil.CheckPrivateDir(root); err != nil {
		return fmt.Errorf("backup-fetch: refusing to write the restore configuration, which holds secrets, there: %w; restore below a private directory, or put every setting in the --config file", err)
	}
	return nil
}

// settingsOutsideFile reports whether any setting was given by the
// environment or a flag, which a restore_command run by PostgreSQL would
// not see.
func (a *app) settingsOutsideFile() bool {
	for _, name := range a.Cfg.Explicit() {
		if src := a.Cfg.Source(name); src == config.SourceEnv || src == config.SourceFlag {
			return true
		}
	}
	return false
}

// pathSettings hold file system paths that must not depend on the working
// directory of the process PostgreSQL starts.
func isPathSetting(k string) bool {
	return k == "WALG_FILE_PREFIX" || strings.HasSuffix(k, "_PATH") || k == "WALG_PREFETCH_DIR" || k == "WALG_LOG_DESTINATION"
}

// writeRestoreConfig writes the whole configuration as a JSON config file
// readable only by its owner (the restored directory's owner), replacing
// any previous one atomically and never following a planted symlink.
func (a *app) writeRestoreConfig(path, dest string) error {
	vals := map[string]string{}
	a.Cfg.Export(func(k, v string) {
		if isPathSetting(k) && v != "" && !filepath.IsAbs(v) && !strings.Contains(v, "://") {
			if abs, err := filepath.Abs(v); err == nil {
				v = abs
			}
		}
		vals[k] = v
	})
	vals["TUSK_FETCH_ABORT_ON_STORAGE_ERROR"] = "true"
	data, err := json.MarshalIndent(vals, "", "  ")
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer root.Close()
	if err := privateConfigDir(root); err != nil {
		return err
	}
	return fsutil.Replace(root, filepath.Base(path), fsutil.Options{Perm: 0o600}, func(f *os.File) error {
		if _, err := f.Write(append(data, '\n')); err != nil {
			return err
		}
		if os.Geteuid() != 0 {
			return nil
		}
		// Run as root, the file must still be readable by the cluster's
		// owner, who runs restore_command.
		st, err := os.Lstat(dest)
		if err != nil {
			return err
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			return f.Chown(int(sys.Uid), int(sys.Gid))
		}
		return nil
	})
}

// restoreSize is the progress total of a restore of name: the bytes
// counted are those written to restored files, so it is the uncompressed
// size of every backup in its chain (each a few KiB of tar headers above
// what is written); the compressed sizes of a listing would not match. It
// is 0 (bytes and rate only) when a sentinel cannot be read, which the
// restore itself then reports.
func restoreSize(ctx context.Context, store storage.Storage, name string) int64 {
	s, err := backup.FetchSentinel(ctx, store, name)
	if err != nil {
		return 0
	}
	chain, err := backup.ResolveChain(ctx, store, name, s)
	if err != nil {
		return 0
	}
	var total int64
	for _, l := range chain {
		total += l.Sentinel.UncompressedSize
	}
	return total
}

// Per download, beyond the decoders and the storage's request.
const (
	// tarHeaderBound is archive/tar's limit on a PAX or GNU long-name
	// header, which it reads whole: the worst a hostile tar can make a
	// worker hold. WAL-G's tars need under 1 KiB.
	tarHeaderBound = 1 << 20
	// incrementBlockList is the block list of an increment of a 1 GiB
	// relation segment (PostgreSQL's default), 4 bytes per 8 KiB block,
	// with room for the slice's growth.
	incrementBlockList = 2 * (1 << 30) / backup.IncrementBlockSize * 4
)

// fetchMemoryPlan lists what one backup-fetch holds at its peak with this
// configuration, without contacting storage: WALG_DOWNLOAD_CONCURRENCY
// workers, each streaming one tar (GET → decrypt → decompress → tar reader
// → copy buffer → file). Tars are decoded by their extension, whatever
// WALG_COMPRESSION_METHOD says, so the decoder is the largest any tar can
// need. pg_control and backup_label are restored after the data tars, by
// one worker: no more.
func (a *app) fetchMemoryPlan(cr crypt.Crypter) (*memplan.Plan, error) {
	facts, err := a.memoryFacts(a.Cfg.Compression(), cr)
	if err != nil {
		return nil, err
	}
	return memplan.BackupFetchPlan(facts, memplan.BackupFetch{
		Workers:         a.Cfg.DownloadConcurrency(),
		CopyBuffer:      restore.ExtractBufferSize,
		TarHeader:       tarHeaderBound,
		IncrementBlocks: incrementBlockList,
		IncrementMax:    backup.MaxIncrementBlocks * 4,
		Catalog:         1 << 20,
	}), nil
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tusk-pg/tusk/internal/backup"
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
or absent, or where --restore-spec FILE says (WAL-G's JSON:
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
DESTINATION.tusk-restore.json readable only by its owner), with
TUSK_FETCH_ABORT_ON_STORAGE_ERROR=true so a storage outage stops recovery
instead of ending it early; recovery.signal is created.

If the restore fails, DESTINATION keeps the files written so far but never
global/pg_control, so PostgreSQL cannot start on it; empty it (and any
tablespace directories) before trying again.

A delta backup is restored as WAL-G does: the full backup of its chain first,
then each delta in order, page increments applied onto the files restored
before. --reverse-unpack and --skip-redundant-tars are accepted; the restore
order stays the same.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.backupFetch(cmd, args, &fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.restoreSpec, "restore-spec", "", "JSON tablespace spec: where to restore each tablespace")
	f.StringVar(&fl.targetUserData, "target-user-data", "", "select the backup whose user data equals this JSON")
	f.StringVar(&fl.targetStorage, "target-storage", "", "storage to restore from (only \"default\" exists)")
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
	return cmd
}

func (a *app) backupFetch(cmd *cobra.Command, args []string, fl *backupFetchFlags) error {
	ctx := cmd.Context()
	dest := args[0]
	if err := checkTargetStorage(fl.targetStorage); err != nil {
		return err
	}
	switch {
	case fl.mask != "":
		return errors.New("backup-fetch --mask is not supported yet")
	case fl.restoreOnly != "":
		return errors.New("backup-fetch --restore-only is not supported yet")
	}

	target := backup.RecoveryTarget{
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

	store, err := a.openStorage(ctx)
	if err != nil {
		return err
	}
	userData := fl.targetUserData
	if userData == "" {
		userData = a.cfg.String("WALG_FETCH_TARGET_USER_DATA")
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
		a.log.Info("backup-fetch: LATEST backup is " + info.Name)
	}

	cr, err := a.crypter()
	if err != nil {
		return err
	}
	fetcher := &backup.Fetcher{
		Store:       store,
		Crypter:     cr,
		Concurrency: a.cfg.DownloadConcurrency(),
		Retries:     a.cfg.Int("WALG_DOWNLOAD_FILE_RETRIES"),
		NoFsync:     a.cfg.Bool("WALG_TAR_DISABLE_FSYNC"),
		Log:         a.log,
	}
	res, err := fetcher.Fetch(ctx, info.Name, dest, backup.FetchOptions{RestoreSpec: spec})
	if err != nil {
		return fmt.Errorf("backup-fetch %s into %s: %w", info.Name, dest, err)
	}
	if writeRecovery {
		if err := a.writeRecovery(dest, res, target); err != nil {
			return fmt.Errorf("backup-fetch: backup %s restored into %s, but configuring recovery failed: %w", info.Name, dest, err)
		}
	}
	a.log.Info("backup-fetch: restored", "backup", info.Name, "destination", dest,
		"tars", res.Tars, "files", res.Files, "bytes", res.Bytes)
	return nil
}

// writeRecovery configures the restored directory to recover with this
// binary as restore_command.
func (a *app) writeRecovery(dest string, res *backup.FetchResult, target backup.RecoveryTarget) error {
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
	if file := a.cfg.ConfigFileUsed(); file != "" && !a.settingsOutsideFile() {
		// Everything came from the user's file: refer to it, so later edits
		// (e.g. rotated credentials) apply to recovery too.
		if configFile, err = filepath.Abs(file); err != nil {
			return err
		}
		env = []string{abort}
	} else {
		configFile = filepath.Clean(dest) + restoreConfigSuffix
		if err := a.writeRestoreConfig(configFile, dest); err != nil {
			return err
		}
		a.log.Info("backup-fetch: wrote the configuration for restore_command", "file", configFile)
	}
	cmd := backup.RestoreCommand(exe, configFile, env)
	return backup.WriteRecoveryConfig(dest, res.Sentinel.PgVersion, cmd, target, !a.cfg.Bool("WALG_TAR_DISABLE_FSYNC"))
}

// settingsOutsideFile reports whether any setting was given by the
// environment or a flag, which a restore_command run by PostgreSQL would
// not see.
func (a *app) settingsOutsideFile() bool {
	for _, line := range a.cfg.Dump() {
		i := strings.LastIndex(line, " (")
		if i < 0 {
			continue
		}
		src := line[i+2:]
		if strings.HasPrefix(src, "env") || strings.HasPrefix(src, "flag") {
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
// any previous one atomically.
func (a *app) writeRestoreConfig(path, dest string) error {
	vals := map[string]string{}
	a.cfg.Export(func(k, v string) {
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
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil && os.Geteuid() == 0 {
		// Run as root, the file must still be readable by the cluster's
		// owner, who runs restore_command.
		if st, serr := os.Stat(dest); serr == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				err = f.Chown(int(sys.Uid), int(sys.Gid))
			}
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return backup.SyncDir(filepath.Dir(path))
}

package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tusk-pg/tusk/internal/config"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/all"
	"github.com/tusk-pg/tusk/internal/storage/multi"
)

// app is what every command gets: the resolved configuration and a logger.
type app struct {
	configFile    string
	storagePrefix string
	turbo         bool
	settingFlags  map[string]*string // setting name → hidden flag value
	// backends are the storage backends this program links.
	backends storage.Registry

	cfg *config.Config
	// ctx is the command's (cancelled on SIGTERM), for components whose
	// interfaces carry none: the KMS crypter's requests.
	ctx     context.Context
	log     *slog.Logger
	logFile *logFile // nil: logs go to stderr
	// storageSets are the failover storage sets opened, whose status
	// cache is saved when the command ends (closeStorages).
	storageSets []*multi.Set
}

func newRootCommand() *cobra.Command {
	root, _ := newApp()
	return root
}

// newApp returns the command tree and the app its commands share, which
// run reads after the command to report its error in the log format.
func newApp() (*cobra.Command, *app) {
	a := &app{settingFlags: map[string]*string{}, backends: all.Registry()}
	root := &cobra.Command{
		Use:   "tusk",
		Short: "PostgreSQL WAL archiving and backups in WAL-G's format, in bounded memory",
		Long: `tusk archives PostgreSQL WAL and base backups to file, S3, GCS, Azure or SFTP storage.
It is a drop-in replacement for WAL-G: WAL-G's commands (one it lacks yet says
so), the same WALG_* / AWS_* / PG* settings (environment, --config FILE,
WALG_CONFIG_PATH or ~/.walg.json; "tusk settings" lists them all, with what
tusk does with each), and the same objects in storage, so either tool
restores what the other archived.

In postgresql.conf:
  archive_command = 'tusk wal-push %p'
  restore_command = 'tusk wal-fetch %f %p'`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.load(cmd)
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if a.logFile != nil {
				a.logFile.Close()
			}
		},
	}
	root.SetVersionTemplate(versionTemplate)
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "path to a configuration file (JSON, YAML, TOML, ...) with WAL-G settings")
	pf.StringVar(&a.storagePrefix, "walg-storage-prefix", "", "sub-folder of the storage root (WALG_STORAGE_PREFIX)")
	pf.BoolVar(&a.turbo, "turbo", false, "ignore rate limits (WAL-G compatibility)")
	// WAL-G accepts every setting as a hidden flag --x-y-z.
	for setting, flag := range config.FlagNames() {
		if pf.Lookup(flag) != nil {
			continue
		}
		v := new(string)
		pf.StringVar(v, flag, "", "")
		_ = pf.MarkHidden(flag)
		a.settingFlags[setting] = v
	}

	root.AddCommand(
		newWalPushCommand(a),
		newWalFetchCommand(a),
		newWalPrefetchCommand(a),
		newWalShowCommand(a),
		newWalVerifyCommand(a),
		newWalReceiveCommand(a),
		newWalRestoreCommand(a),
		newBackupVerifyCommand(a),
		newRestoreWindowCommand(a),
		newBackupListCommand(a),
		newCatchupPushCommand(a),
		newCatchupFetchCommand(a),
		newCatchupListCommand(a),
		newCatchupSendCommand(a),
		newCatchupReceiveCommand(a),
		newBackupFetchCommand(a),
		newBackupPushCommand(a),
		newBackupMarkCommand(a),
		newDeleteCommand(a),
		newDaemonCommand(a),
		newDaemonClientCommand(),
		newStCommand(a),
		newCopyCommand(a),
		newVersionCommand(),
		newSettingsCommand(),
	)
	// Cobra adds its completion command at Execute; add it now so that
	// the placeholders below see it.
	root.InitDefaultCompletionCmd()
	root.AddCommand(missingWALGCommands(root)...)
	markUsageErrors(root)
	return root, a
}

// load resolves the configuration once, before any command touches
// anything, so a bad setting fails fast with one line naming it.
func (a *app) load(cmd *cobra.Command) error {
	flags := map[string]string{}
	pf := cmd.Root().PersistentFlags()
	flagNames := config.FlagNames() // builds the catalogue: once, not per setting
	for setting, v := range a.settingFlags {
		if f := pf.Lookup(flagNames[setting]); f != nil && f.Changed {
			flags[setting] = *v
		}
	}
	pf.Visit(func(f *pflag.Flag) {
		if f.Name == "walg-storage-prefix" {
			flags["WALG_STORAGE_PREFIX"] = a.storagePrefix
		}
	})
	home, _ := os.UserHomeDir()
	cfg, warnings, err := config.Load(config.LoadOptions{
		ConfigFile: a.configFile,
		Flags:      flags,
		Environ:    os.Environ(),
		Home:       home,
		Turbo:      a.turbo,
		Backends:   a.backends,
	})
	if err != nil {
		return err
	}
	a.cfg = cfg
	a.ctx = cmd.Context()
	if err := a.setupLogging(); err != nil {
		return err
	}
	for _, w := range warnings {
		a.log.Warn(w)
	}
	// WAL-G exports every setting into the environment so that libraries
	// (the AWS SDK, libpq-style PG* handling) see config-file values too.
	cfg.Export(func(k, v string) { os.Setenv(k, v) })
	if n := cfg.GoMaxProcs(); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return nil
}

func (a *app) setupLogging() error {
	var w io.Writer = os.Stderr
	if dest := a.cfg.LogDestination(); dest != "" && dest != "stderr" {
		f, err := openLogFile(dest)
		if err != nil {
			return err
		}
		a.logFile = f
		w = f
	}
	opts := &slog.HandlerOptions{Level: a.cfg.LogLevel()}
	if a.cfg.LogFormat() == "json" {
		a.log = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		a.log = slog.New(slog.NewTextHandler(w, opts))
	}
	return nil
}

// jsonLogs reports whether the configuration loaded and asks for JSON
// records (TUSK_LOG_FORMAT=json).
func (a *app) jsonLogs() bool { return a.cfg != nil && a.cfg.LogFormat() == "json" }

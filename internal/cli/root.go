package cli

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
	"github.com/tusk-pg/tusk/internal/storage/multi"
)

// App is what every command gets: the resolved configuration and a logger.
type App struct {
	ConfigFile    string
	StoragePrefix string
	Turbo         bool
	settingFlags  map[string]*string // setting name → hidden flag value
	// Backends are the storage backends this program links.
	Backends storage.Registry

	Cfg *config.Config
	// Ctx is the command's (cancelled on SIGTERM), for components whose
	// interfaces carry none: the KMS crypter's requests.
	Ctx     context.Context
	Log     *slog.Logger
	LogFile *LogFile // nil: logs go to stderr
	// StorageSets are the failover storage sets opened, whose status
	// cache is saved when the command ends (closeStorages).
	StorageSets []*multi.Set
}

// NewApp returns the program's command tree and the App its commands
// share, which Run reads after the command to report its error in the log
// format.
func NewApp(p Program) (*cobra.Command, *App) {
	a := &App{settingFlags: map[string]*string{}, Backends: p.Backends}
	root := &cobra.Command{
		Use:           p.Name,
		Short:         p.Short,
		Long:          p.Long,
		Version:       p.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.load(cmd)
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if a.LogFile != nil {
				a.LogFile.Close()
			}
		},
	}
	// --version prints "tusk version v0.1.0\t<commit>\t<date>" as WAL-G
	// prints "wal-g version ...".
	root.SetVersionTemplate(p.Name + " version {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&a.ConfigFile, "config", "", "path to a configuration file (JSON, YAML, TOML, ...) with WAL-G settings")
	pf.StringVar(&a.StoragePrefix, "walg-storage-prefix", "", "sub-folder of the storage root (WALG_STORAGE_PREFIX)")
	pf.BoolVar(&a.Turbo, "turbo", false, "ignore rate limits (WAL-G compatibility)")
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
	)
	if p.Commands != nil {
		root.AddCommand(p.Commands(a)...)
	}
	// Cobra adds its completion command at Execute; add it now so that
	// Extra sees it.
	root.InitDefaultCompletionCmd()
	if p.Extra != nil {
		root.AddCommand(p.Extra(root)...)
	}
	markUsageErrors(root)
	return root, a
}

// load resolves the configuration once, before any command touches
// anything, so a bad setting fails fast with one line naming it.
func (a *App) load(cmd *cobra.Command) error {
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
			flags["WALG_STORAGE_PREFIX"] = a.StoragePrefix
		}
	})
	home, _ := os.UserHomeDir()
	cfg, warnings, err := config.Load(config.LoadOptions{
		ConfigFile: a.ConfigFile,
		Flags:      flags,
		Environ:    os.Environ(),
		Home:       home,
		Turbo:      a.Turbo,
		Backends:   a.Backends,
	})
	if err != nil {
		return err
	}
	a.Cfg = cfg
	a.Ctx = cmd.Context()
	if err := a.setupLogging(); err != nil {
		return err
	}
	for _, w := range warnings {
		a.Log.Warn(w)
	}
	// WAL-G exports every setting into the environment so that libraries
	// (the AWS SDK, libpq-style PG* handling) see config-file values too.
	cfg.Export(func(k, v string) { os.Setenv(k, v) })
	if n := cfg.GoMaxProcs(); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return nil
}

func (a *App) setupLogging() error {
	var w io.Writer = os.Stderr
	if dest := a.Cfg.LogDestination(); dest != "" && dest != "stderr" {
		f, err := OpenLogFile(dest)
		if err != nil {
			return err
		}
		a.LogFile = f
		w = f
	}
	opts := &slog.HandlerOptions{Level: a.Cfg.LogLevel()}
	if a.Cfg.LogFormat() == "json" {
		a.Log = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		a.Log = slog.New(slog.NewTextHandler(w, opts))
	}
	return nil
}

// jsonLogs reports whether the configuration loaded and asks for JSON
// records (TUSK_LOG_FORMAT=json).
func (a *App) jsonLogs() bool { return a.Cfg != nil && a.Cfg.LogFormat() == "json" }

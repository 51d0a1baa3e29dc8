package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/daemon"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/rss"
	"github.com/tusk-pg/tusk/internal/wal"
)

func newDaemonCommand(a *app) *cobra.Command {
	var (
		showPlan    bool
		planJSON    bool
		metricsAddr string
	)
	cmd := &cobra.Command{
		Use:   "daemon SOCKET_PATH",
		Short: "Serve wal-push / wal-fetch over a Unix socket (WAL-G's daemon protocol)",
		Long: `Runs beside PostgreSQL with storage connections and upload workers kept open:
  archive_command = 'tusk daemon-client SOCKET_PATH wal-push %f'
  restore_command = 'tusk daemon-client SOCKET_PATH wal-fetch %f %p'
WAL-G's walg-daemon-client and the walg_archive extension work against it too.
Names are resolved against PGDATA, which must be set.

WALG_UPLOAD_CONCURRENCY upload workers run for the daemon's life; each push also
queues the following .ready files (at most TOTAL_BG_UPLOADED_LIMIT-1). Memory is
bounded by the configuration: --memory-plan prints the bound, and the daemon
sets GOMEMLIMIT and GOGC from it unless they are set (GOGC so that the heap
goal stays within the limit at the plan's live bound). Two seconds after the
last request it returns what a burst used to the system.

With NOTIFY_SOCKET set it sends READY=1, WATCHDOG=1 every 30 s and STOPPING=1;
with systemd socket activation (LISTEN_FDS) it serves the inherited socket.
SIGUSR1 reopens WALG_LOG_DESTINATION (for log rotation), as with WAL-G;
SIGTERM or SIGINT stops it after the uploads in flight (TUSK_DAEMON_SHUTDOWN_GRACE).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if showPlan {
				return cli.ArgCount(0, 1)(cmd, args)
			}
			return cli.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := a.daemonPlan()
			if err != nil {
				return err
			}
			if showPlan || planJSON {
				if planJSON {
					return plan.JSON(cmd.OutOrStdout())
				}
				return plan.Table(cmd.OutOrStdout())
			}
			return a.runDaemon(cmd.Context(), args[0], plan, metricsAddr)
		},
	}
	cmd.Flags().BoolVar(&showPlan, "memory-plan", false, "print the most memory the daemon can take with this configuration, and exit")
	cmd.Flags().BoolVar(&planJSON, "json", false, "with --memory-plan: print JSON")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9187)")
	return cmd
}

func (a *app) daemonPlan() (*memplan.Plan, error) {
	buffering, spool, facts, err := a.walUploaderFacts()
	if err != nil {
		return nil, err
	}
	d := memplan.Daemon{
		Workers:         a.Cfg.UploadConcurrency(),
		Buffering:       buffering,
		Spool:           spool,
		CopyBuffer:      pipe.CopyBufferSize,
		Requests:        a.Cfg.DaemonMaxConnections(),
		OpenConns:       daemon.DefaultMaxOpen,
		RequestBytes:    daemon.RequestBytes,
		ConnBytes:       daemon.ConnBytes,
		Prefetch:        a.Cfg.DownloadConcurrency(),
		PrefetchWorkers: wal.MaxPrefetchParallel,
	}
	return memplan.DaemonPlan(facts, d), nil
}

func (a *app) runDaemon(ctx context.Context, socketPath string, plan *memplan.Plan, metricsAddr string) error {
	pgdata := a.Cfg.PGData()
	if pgdata == "" {
		return errors.New("PGDATA: not set; the daemon resolves WAL file names against it")
	}
	gogc := applyMemoryPlan(plan)
	w, err := a.NewWAL(ctx, cli.UseFollow, "")
	if err != nil {
		return err
	}
	metrics := &daemon.Metrics{PlanBytes: plan.Committed()}
	w.Archiver.Uploaded = metrics.Uploaded

	l, err := listener(socketPath)
	if err != nil {
		return err
	}
	defer l.Close()

	// Uploads get a grace period after a stop request: never report
	// success for a file that is not stored, but let what is almost done
	// finish rather than make PostgreSQL send it again.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	h := &daemon.WALHandler{
		Archiver:      w.Archiver,
		Restorer:      w.Restorer,
		Workers:       a.Cfg.UploadConcurrency(),
		LookAhead:     max(a.Cfg.TotalBGUploadedLimit()-1, 0),
		UploadTimeout: a.Cfg.DaemonWALUploadTimeout(),
		PGData:        pgdata,
		MarkerDir:     wal.MarkerDir(pgdata, pgdata+"/pg_wal/x"),
		ReadyRename:   a.Cfg.PGReadyRename(),
		Prefetch:      a.Cfg.DownloadConcurrency(),
		PrefetchBase:  a.Cfg.PrefetchDir(),
		Log:           a.Log,
		Metrics:       metrics,
	}
	h.Start(work)
	srv := &daemon.Server{
		Handler:        h,
		PGData:         pgdata,
		MaxConnections: a.Cfg.DaemonMaxConnections(),
		PushTimeout:    a.Cfg.DaemonWALUploadTimeout(),
		Log:            a.Log,
		Work:           work,
		// After a burst, give back what it used: the heap to the
		// collector's floor, pages to the system, the code only the
		// burst ran out of the resident set.
		OnIdle: func() {
			debug.FreeOSMemory()
			rss.DropFilePages()
		},
		IdleAfter: 2 * time.Second,
	}
	if metricsAddr != "" {
		ms := &http.Server{Addr: metricsAddr, Handler: metrics.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := ms.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.Log.Error("daemon: metrics endpoint", "addr", metricsAddr, "error", err)
			}
		}()
		defer ms.Close()
	}
	a.Log.Info("daemon: serving", "socket", socketPath, "storage", w.Store.String(),
		"workers", h.Workers, "buffering", w.Archiver.Buffering,
		"memory_plan_committed_mib", plan.Committed()>>20, "gomemlimit_mib", plan.HeapLimit()>>20, "gogc", gogc)

	stopNotify := notifySystemd(ctx, a)
	defer stopNotify()
	stopReopen := a.reopenLogOnSIGUSR1()
	defer stopReopen()
	// Once more after the first minute: the code of a first request
	// (TLS handshake, client set-up) is then also behind us.
	trim := time.AfterFunc(time.Minute, rss.DropFilePages)
	defer trim.Stop()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, l) }()
	select {
	case err := <-serveErr:
		if err != nil {
			return err
		}
	case <-ctx.Done():
	}
	sdNotify("STOPPING=1")
	grace := a.Cfg.DaemonShutdownGrace()
	a.Log.Info("daemon: stopping; letting uploads in flight finish", "grace", grace)
	timer := time.AfterFunc(grace, stopWork)
	<-serveErr // requests in flight answered (or failed)
	stopWork()
	h.Wait()
	timer.Stop()
	return nil
}

// reopenLogOnSIGUSR1 reopens WALG_LOG_DESTINATION on SIGUSR1, as WAL-G's
// daemon re-configures its logging then (log rotation).
func (a *app) reopenLogOnSIGUSR1() (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sig:
				if a.LogFile == nil {
					a.Log.Info("daemon: SIGUSR1: logging to stderr, nothing to reopen")
					continue
				}
				if err := a.LogFile.Reopen(); err != nil {
					a.Log.Error("daemon: SIGUSR1", "error", err)
					continue
				}
				a.Log.Info("daemon: log destination reopened", "path", a.LogFile.Path())
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(sig); close(done) }
}

// listener is the socket systemd passed (LISTEN_FDS) or a new one.
func listener(socketPath string) (net.Listener, error) {
	if pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID")); pid == os.Getpid() {
		if n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); n >= 1 {
			f := os.NewFile(3, "systemd-socket") // SD_LISTEN_FDS_START
			l, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("LISTEN_FDS: inherited descriptor 3 is not a listening socket: %w", err)
			}
			os.Unsetenv("LISTEN_PID")
			os.Unsetenv("LISTEN_FDS")
			os.Unsetenv("LISTEN_FDNAMES")
			return l, nil
		}
	}
	return daemon.Listen(socketPath)
}

// notifySystemd sends READY=1 now and WATCHDOG=1 every 30 s, as WAL-G's
// daemon does, when NOTIFY_SOCKET is set.
func notifySystemd(ctx context.Context, a *app) (stop func()) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func() {}
	}
	if err := sdNotify("READY=1"); err != nil {
		a.Log.Warn("daemon: NOTIFY_SOCKET", "error", err)
	}
	t := time.NewTicker(30 * time.Second)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				sdNotify("WATCHDOG=1")
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

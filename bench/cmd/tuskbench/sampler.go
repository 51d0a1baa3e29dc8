//go:build linux

package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tusk-pg/tusk/bench/procfs"
	"github.com/tusk-pg/tusk/bench/report"
)

type procKey struct {
	pid   int
	start uint64
}

// sampler observes one archiver at 1 Hz. Samples go to memory (for the
// summary) and, per process, to a CSV writer.
type sampler struct {
	h       *harness
	tgt     target
	fs      procfs.FS
	self    int
	t0      time.Time
	cl      *cluster // nil for the idle measurement
	conn    *pgx.Conn
	invLog  string // GNU time records of archive_command runs
	procOut *csv.Writer

	baseArchived, baseFailed, baseLSN int64
	lastArchived, lastFailed, lastLSN int64

	mu      sync.Mutex
	phase   string
	samples []report.Sample
	// cpu holds the latest CPU ticks, reaped children included, of every
	// top resident process seen (one whose parent is not resident); ticks
	// only grow, so the last reading (a zombie's included) is its total.
	cpu map[procKey]uint64
	// nestedTicks is the CPU of the resident processes alive under another
	// resident process at the last sample, not yet in their parent's.
	nestedTicks uint64
	// foreign tracks processes outside the harness's tree: their last CPU
	// ticks, and the sum of their increases.
	foreign      map[procKey]uint64
	foreignTicks uint64
	// reaped sums the detached workers the harness reaped (wait4 rusage).
	reaped report.InvocationStats

	stop chan struct{}
	done chan struct{}
}

func (h *harness) newSampler(ctx context.Context, tgt target, cl *cluster, invLog string, procOut io.Writer) (*sampler, error) {
	s := &sampler{
		h: h, tgt: tgt, fs: procfs.FS{Root: "/proc"}, self: os.Getpid(), t0: time.Now(),
		cl: cl, invLog: invLog, procOut: csv.NewWriter(procOut),
		phase: report.PhaseBurst, cpu: map[procKey]uint64{}, foreign: map[procKey]uint64{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if cl != nil {
		conn, err := cl.Connect(ctx)
		if err != nil {
			return nil, err
		}
		s.conn = conn
		a, f, l, err := s.pgStats(ctx)
		if err != nil {
			conn.Close(context.Background())
			return nil, err
		}
		s.baseArchived, s.baseFailed, s.baseLSN = a, f, l
		s.lastArchived, s.lastFailed, s.lastLSN = a, f, l
	}
	return s, nil
}

var procHeader = []string{"archiver", "t_s", "pid", "comm", "role", "state", "rss_bytes", "rss_anon_bytes", "rss_file_bytes", "hwm_bytes",
	"vmpeak_bytes", "vmsize_bytes", "committed_bytes", "threads", "cpu_s"}

// run samples once a second until close. The first sample is taken at once.
func (s *sampler) run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s.sample(ctx)
		select {
		case <-tick.C:
		case <-s.stop:
			s.sample(ctx)
			return
		case <-ctx.Done():
			return
		}
	}
}

// close takes a last sample and stops; it returns the samples.
func (s *sampler) close() []report.Sample {
	close(s.stop)
	<-s.done
	s.procOut.Flush()
	if s.conn != nil {
		s.conn.Close(context.Background())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *sampler) last() report.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return report.Sample{}
	}
	return s.samples[len(s.samples)-1]
}

// foreignCPU is the CPU seconds other processes used while sampling.
func (s *sampler) foreignCPU() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.foreignTicks) / procfs.ClockTicks
}

func (s *sampler) reapedStats() report.InvocationStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reaped
}

// residentCPU is the CPU seconds of all resident processes seen so far.
func (s *sampler) residentCPU() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ticks := s.nestedTicks
	for _, t := range s.cpu {
		ticks += t
	}
	return float64(ticks) / procfs.ClockTicks
}

func (s *sampler) pgStats(ctx context.Context) (archived, failed, lsn int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = s.conn.QueryRow(ctx, `SELECT archived_count, failed_count,
		pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint FROM pg_stat_archiver`).Scan(&archived, &failed, &lsn)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("querying pg_stat_archiver: %w", err)
	}
	return archived, failed, lsn, nil
}

// readyCount counts archive_status/*.ready.
func readyCount(dataDir string) int {
	ents, err := os.ReadDir(dataDir + "/pg_wal/archive_status")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ready") {
			n++
		}
	}
	return n
}

func (s *sampler) sample(ctx context.Context) {
	now := time.Now()
	s.mu.Lock()
	phase := s.phase
	s.mu.Unlock()
	out := report.Sample{Archiver: s.tgt.archiver, T: now.Sub(s.t0).Seconds(), Phase: phase}

	stats, err := s.fs.Scan()
	if err != nil {
		s.h.log.Warn("sampling processes", "error", err)
	}
	tree := procfs.NewTree(stats)
	ts := strconv.FormatFloat(out.T, 'f', 2, 64)
	roles := classify(tree, stats, s.self, s.tgt)
	foreign := make(map[procKey]uint64, len(s.foreign))
	var foreignDelta uint64
	for _, p := range stats {
		if p.PID == s.self || tree.Descends(p.PID, s.self) {
			continue
		}
		k := procKey{p.PID, p.StartTime}
		if prev, ok := s.foreign[k]; ok && p.CPUTicks() > prev {
			foreignDelta += p.CPUTicks() - prev
		}
		foreign[k] = p.CPUTicks()
	}
	var nestedTicks uint64
	for _, p := range stats {
		resident, ok := roles[p.PID]
		if !ok {
			continue
		}
		st, err := s.fs.Status(p.PID)
		if err != nil {
			continue // exited since the scan
		}
		committed, err := s.fs.Committed(p.PID)
		if err != nil && p.State != 'Z' {
			continue
		}
		if p.State != 'Z' {
			out.Procs++
		}
		out.RSS += st.RSS
		out.Committed += committed
		out.Size += st.Size
		out.Threads += st.Threads
		out.MaxProcRSS = max(out.MaxProcRSS, st.RSS)
		out.MaxProcCommitted = max(out.MaxProcCommitted, committed)
		out.MaxProcHWM = max(out.MaxProcHWM, st.HWM)
		out.MaxProcPeak = max(out.MaxProcPeak, st.Peak)
		role := "command"
		if resident {
			role = "resident"
			out.ResidentRSS += st.RSS
			out.ResidentRSSAnon += st.RSSAnon
			out.ResidentCommitted += committed
			out.ResidentHWM = max(out.ResidentHWM, st.HWM)
			if roles[p.PPID] {
				// Its parent reaps it and then counts its CPU as its
				// children's; until then it is counted alive.
				nestedTicks += p.CPUTicks()
			} else {
				k := procKey{p.PID, p.StartTime}
				s.mu.Lock()
				s.cpu[k] = max(s.cpu[k], p.TreeCPUTicks())
				s.mu.Unlock()
			}
		}
		_ = s.procOut.Write([]string{s.tgt.archiver, ts, strconv.Itoa(p.PID), p.Comm, role, string(p.State),
			u64(st.RSS), u64(st.RSSAnon), u64(st.RSSFile), u64(st.HWM), u64(st.Peak), u64(st.Size), u64(committed), strconv.Itoa(st.Threads),
			strconv.FormatFloat(float64(p.CPUTicks())/procfs.ClockTicks, 'f', 2, 64)})
		// A detached worker whose parent exited was handed to the harness
		// (a child subreaper); its final CPU time was read above, so reap it.
		if p.State == 'Z' && p.PPID == s.self && !s.h.managed.has(p.PID) {
			var ws syscall.WaitStatus
			var ru syscall.Rusage
			if pid, err := syscall.Wait4(p.PID, &ws, syscall.WNOHANG, &ru); err == nil && pid == p.PID {
				s.mu.Lock()
				s.reaped.Count++
				if ws.ExitStatus() != 0 {
					s.reaped.Failed++
				}
				// ru_maxrss is KiB: the worker's peak, however short its life.
				s.reaped.MaxRSS = max(s.reaped.MaxRSS, uint64(ru.Maxrss)<<10)
				s.reaped.CPU += time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
				s.mu.Unlock()
			}
		}
	}
	s.mu.Lock()
	s.nestedTicks = nestedTicks
	s.foreign = foreign
	s.foreignTicks += foreignDelta
	s.mu.Unlock()

	if s.cl != nil {
		out.Ready = readyCount(s.cl.DataDir())
		if a, f, l, err := s.pgStats(ctx); err == nil {
			s.lastArchived, s.lastFailed, s.lastLSN = a, f, l
		}
		out.Archived = s.lastArchived - s.baseArchived
		out.Failed = s.lastFailed - s.baseFailed
		out.WALBytes = s.lastLSN - s.baseLSN
	}
	out.CPU = s.residentCPU() + s.invocationCPU()

	s.mu.Lock()
	s.samples = append(s.samples, out)
	s.mu.Unlock()
}

func (s *sampler) invocationCPU() float64 {
	if s.invLog == "" {
		return 0
	}
	f, err := os.Open(s.invLog)
	if err != nil {
		return 0
	}
	defer f.Close()
	inv, _ := report.ParseTimeLog(f)
	return report.Invocations(inv).CPU
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// Package report holds the benchmark's results: the 1 Hz samples, the
// per-invocation accounting of archive_command, the summary computed from
// them, and their outputs (CSV, JSON, plots, the Markdown section of
// docs/benchmarks.md).
package report

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// MiB is 2^20 bytes.
const MiB = 1 << 20

// Phases of a run, in order.
const (
	PhaseBurst  = "burst"  // the workload runs
	PhaseDrain  = "drain"  // workload stopped, .ready files remain
	PhaseSettle = "settle" // drained; the archiver idles
	PhaseIdle   = "idle"   // idle-daemon measurement, no PostgreSQL load
)

// Sample is one 1 Hz observation of an archiver and its cluster. Memory
// figures are bytes; sums and maxima are over the archiver's processes alive
// at that instant.
type Sample struct {
	Archiver string
	T        float64 // seconds since the burst started
	Phase    string
	Procs    int // archiver processes alive

	RSS       uint64 // sum of VmRSS
	Committed uint64 // sum of private writable mappings
	Size      uint64 // sum of VmSize
	Threads   int

	MaxProcRSS       uint64 // largest VmRSS of one process
	MaxProcCommitted uint64
	MaxProcHWM       uint64 // largest VmHWM of one process
	MaxProcPeak      uint64 // largest VmPeak of one process

	// Resident* cover only the long-lived archiver processes (a daemon, an
	// asynchronous worker), not the archive_command invocations.
	ResidentRSS       uint64
	ResidentRSSAnon   uint64 // the anonymous part of ResidentRSS
	ResidentCommitted uint64
	ResidentHWM       uint64

	CPU      float64 // cumulative CPU seconds so far (invocations + resident)
	Ready    int     // archive_status/*.ready files
	Archived int64   // pg_stat_archiver.archived_count since the burst started
	Failed   int64   // pg_stat_archiver.failed_count since the burst started
	WALBytes int64   // WAL written since the burst started
}

var sampleHeader = []string{
	"archiver", "t_s", "phase", "procs",
	"rss_bytes", "committed_bytes", "vmsize_bytes", "threads",
	"max_proc_rss_bytes", "max_proc_committed_bytes", "max_proc_hwm_bytes", "max_proc_vmpeak_bytes",
	"resident_rss_bytes", "resident_rss_anon_bytes", "resident_committed_bytes", "resident_hwm_bytes",
	"cpu_s", "ready", "archived", "failed", "wal_bytes",
}

// WriteCSV writes samples with a header row.
func WriteCSV(w io.Writer, samples []Sample) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(sampleHeader); err != nil {
		return fmt.Errorf("writing CSV header: %w", err)
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, s := range samples {
		rec := []string{
			s.Archiver, strconv.FormatFloat(s.T, 'f', 2, 64), s.Phase, strconv.Itoa(s.Procs),
			u(s.RSS), u(s.Committed), u(s.Size), strconv.Itoa(s.Threads),
			u(s.MaxProcRSS), u(s.MaxProcCommitted), u(s.MaxProcHWM), u(s.MaxProcPeak),
			u(s.ResidentRSS), u(s.ResidentRSSAnon), u(s.ResidentCommitted), u(s.ResidentHWM),
			strconv.FormatFloat(s.CPU, 'f', 2, 64), strconv.Itoa(s.Ready),
			strconv.FormatInt(s.Archived, 10), strconv.FormatInt(s.Failed, 10), strconv.FormatInt(s.WALBytes, 10),
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("writing CSV row: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing CSV: %w", err)
	}
	return nil
}

// Invocation is one archive_command run, as GNU time recorded it.
type Invocation struct {
	Elapsed, User, Sys float64 // seconds
	MaxRSS             uint64  // bytes (ru_maxrss)
	Exit               int
}

// TimeFormat is the -f argument for /usr/bin/time that ParseTimeLog reads:
// a tag, elapsed, user and system seconds, max RSS in KiB, exit status.
const TimeFormat = "inv %e %U %S %M %x"

// timeStep is the resolution of GNU time's %U and %S, in seconds: it
// truncates each to hundredths.
const timeStep = 0.01

// ParseTimeLog reads a file that /usr/bin/time -a -f TimeFormat appended to.
// GNU time writes extra lines ("Command exited with non-zero status 1",
// "Command terminated by signal 9") before the record; they are skipped, as
// is a record cut short by a crash.
func ParseTimeLog(r io.Reader) ([]Invocation, error) {
	var out []Invocation
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[0] != "inv" {
			continue
		}
		var inv Invocation
		var ok bool
		if inv.Elapsed, ok = seconds(f[1]); !ok {
			continue
		}
		if inv.User, ok = seconds(f[2]); !ok {
			continue
		}
		if inv.Sys, ok = seconds(f[3]); !ok {
			continue
		}
		kb, err := strconv.ParseUint(f[4], 10, 64)
		if err != nil || kb > math.MaxUint64>>10 {
			continue
		}
		inv.MaxRSS = kb << 10
		if inv.Exit, err = strconv.Atoi(f[5]); err != nil {
			continue
		}
		out = append(out, inv)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("reading time log: %w", err)
	}
	return out, nil
}

func seconds(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// InvocationStats summarises archive_command runs.
type InvocationStats struct {
	Count      int     `json:"count"`
	Failed     int     `json:"failed"` // non-zero exit
	CPU        float64 `json:"cpu_s"`
	MaxRSS     uint64  `json:"max_rss_bytes"`
	MeanRSS    uint64  `json:"mean_rss_bytes"`
	MaxElapsed float64 `json:"max_elapsed_s"`
	SumElapsed float64 `json:"sum_elapsed_s"`
}

// Invocations summarises inv.
func Invocations(inv []Invocation) InvocationStats {
	var st InvocationStats
	var rssSum float64
	for _, i := range inv {
		st.Count++
		if i.Exit != 0 {
			st.Failed++
		}
		st.CPU += i.User + i.Sys
		st.MaxRSS = max(st.MaxRSS, i.MaxRSS)
		rssSum += float64(i.MaxRSS)
		st.MaxElapsed = max(st.MaxElapsed, i.Elapsed)
		st.SumElapsed += i.Elapsed
	}
	if st.Count > 0 {
		st.MeanRSS = uint64(rssSum / float64(st.Count))
	}
	return st
}

// Peaks are the maxima of an archiver's samples over one or more phases.
type Peaks struct {
	Committed     uint64 `json:"committed_bytes"`      // sum over processes
	RSS           uint64 `json:"rss_bytes"`            // sum over processes
	ProcCommitted uint64 `json:"proc_committed_bytes"` // one process
	ProcRSS       uint64 `json:"proc_rss_bytes"`       // one process, sampled VmRSS
	// ProcHWM is the peak RSS of one process: VmHWM sampled, and for a
	// run's result also GNU time's and wait4's max RSS of processes that
	// may have lived between two samples.
	ProcHWM           uint64 `json:"proc_hwm_bytes"`
	ProcVmPeak        uint64 `json:"proc_vmpeak_bytes"` // one process
	VmSize            uint64 `json:"vmsize_bytes"`      // sum over processes
	Threads           int    `json:"threads"`
	Procs             int    `json:"procs"`
	ResidentCommitted uint64 `json:"resident_committed_bytes"`
	ResidentRSS       uint64 `json:"resident_rss_bytes"`
	ResidentHWM       uint64 `json:"resident_hwm_bytes"`
	ResidentRSSAnon   uint64 `json:"resident_rss_anon_bytes"`
	Ready             int    `json:"ready"`
}

// PeaksOf returns the maxima over the samples whose phase is one of phases
// (all samples when phases is empty).
func PeaksOf(samples []Sample, phases ...string) Peaks {
	var p Peaks
	for _, s := range samples {
		if len(phases) > 0 && !contains(phases, s.Phase) {
			continue
		}
		p.Committed = max(p.Committed, s.Committed)
		p.RSS = max(p.RSS, s.RSS)
		p.ProcCommitted = max(p.ProcCommitted, s.MaxProcCommitted)
		p.ProcRSS = max(p.ProcRSS, s.MaxProcRSS)
		p.ProcHWM = max(p.ProcHWM, s.MaxProcHWM)
		p.ProcVmPeak = max(p.ProcVmPeak, s.MaxProcPeak)
		p.VmSize = max(p.VmSize, s.Size)
		p.Threads = max(p.Threads, s.Threads)
		p.Procs = max(p.Procs, s.Procs)
		p.ResidentCommitted = max(p.ResidentCommitted, s.ResidentCommitted)
		p.ResidentRSS = max(p.ResidentRSS, s.ResidentRSS)
		p.ResidentHWM = max(p.ResidentHWM, s.ResidentHWM)
		p.ResidentRSSAnon = max(p.ResidentRSSAnon, s.ResidentRSSAnon)
		p.Ready = max(p.Ready, s.Ready)
	}
	return p
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Machine describes where a run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	MemTotal   uint64 `json:"mem_total_bytes"`
	Kernel     string `json:"kernel"`
	LoadAvg    string `json:"loadavg_at_start"`
	OtherPG    int    `json:"other_postgres_processes_at_start"`
	Postgres   string `json:"postgres"`
	PgBackRest string `json:"pgbackrest,omitempty"`
	Versitygw  string `json:"versitygw"`
	Tusk       string `json:"tusk"`
	GoVersion  string `json:"go"`
}

// Settings are the workload and archiver parameters of a run.
type Settings struct {
	Duration          float64  `json:"duration_s"`
	Scale             int      `json:"pgbench_scale"`
	Clients           int      `json:"pgbench_clients"`
	Jobs              int      `json:"pgbench_jobs"`
	PgbenchMode       string   `json:"pgbench_mode"`
	WideRows          int      `json:"wide_rows"`
	WideRowBytes      int      `json:"wide_row_bytes"`
	WideBatch         int      `json:"wide_rows_per_update"`
	UploadConcurrency int      `json:"upload_concurrency"`
	Compression       string   `json:"compression"`
	SegmentMiB        int      `json:"wal_segment_mib"`
	PostgresConf      []string `json:"postgres_conf"`
	// Storage is the backend archived to ("" in older runs: s3) and
	// StorageDesc what served it.
	Storage     string `json:"storage,omitempty"`
	StorageDesc string `json:"storage_desc,omitempty"`
}

// ArchiverResult is everything measured for one archiver in one run.
type ArchiverResult struct {
	Name           string `json:"name"`
	Kind           string `json:"kind"` // tusk-daemon, tusk-walpush, pgbackrest, generic
	ArchiveCommand string `json:"archive_command"`
	Skipped        string `json:"skipped,omitempty"`
	Error          string `json:"error,omitempty"`

	// ForeignCPU is the CPU time other processes on the machine (not the
	// harness's) used while this archiver was sampled, from 1 Hz deltas:
	// anything else running skews the comparison.
	ForeignCPU float64 `json:"foreign_cpu_s"`

	BurstSeconds float64 `json:"burst_s"`
	Drained      bool    `json:"drained"`
	DrainSeconds float64 `json:"drain_s"` // after the burst until no .ready remained

	WALBytes         int64   `json:"wal_bytes"` // WAL generated, burst start to drain end
	ArchivedSegments int64   `json:"archived_segments"`
	ArchivedBytes    int64   `json:"archived_bytes"`
	Failures         int64   `json:"archive_failures"` // pg_stat_archiver.failed_count delta
	TPS              float64 `json:"pgbench_tps"`
	WideTPS          float64 `json:"wide_tps"`
	StoredObjects    int64   `json:"stored_objects"`
	StoredBytes      int64   `json:"stored_bytes"`

	Burst Peaks `json:"burst_peaks"` // burst and drain
	// After is the last sample of the settle phase: what the archiver keeps
	// once the burst is over.
	After Sample `json:"after"`

	CPUInvocations float64 `json:"cpu_invocations_s"`
	CPUResident    float64 `json:"cpu_resident_s"`
	CPUTotal       float64 `json:"cpu_total_s"`
	CPUPerGB       float64 `json:"cpu_s_per_gib"` // per GiB archived

	Invocations InvocationStats `json:"invocations"`
	// Reaped are detached workers (re-parented to the harness) it reaped;
	// their CPU is already in CPUResident.
	Reaped InvocationStats `json:"reaped_workers"`
}

// IdleResult is the idle-daemon measurement.
type IdleResult struct {
	Name      string  `json:"name"`
	Seconds   float64 `json:"seconds"`
	RSS       uint64  `json:"rss_bytes"` // at the end
	RSSAnon   uint64  `json:"rss_anon_bytes"`
	MaxRSS    uint64  `json:"max_rss_bytes"`
	Committed uint64  `json:"committed_bytes"` // at the end
	HWM       uint64  `json:"hwm_bytes"`
	Threads   int     `json:"threads"`
	Error     string  `json:"error,omitempty"`
}

// Summary is the JSON document of one run.
type Summary struct {
	Started   time.Time        `json:"started"`
	OutDir    string           `json:"out_dir"`
	Machine   Machine          `json:"machine"`
	Settings  Settings         `json:"settings"`
	Archivers []ArchiverResult `json:"archivers"`
	Idle      []IdleResult     `json:"idle,omitempty"`
	// Baseline is the summary of a 180 s run the long-burst peaks are
	// compared with (its path), when one was found.
	Baseline string `json:"baseline,omitempty"`
}

// Archiver returns the result named name, or nil.
func (s *Summary) Archiver(name string) *ArchiverResult {
	for i := range s.Archivers {
		if s.Archivers[i].Name == name {
			return &s.Archivers[i]
		}
	}
	return nil
}

//go:build linux

// Command daemonload measures the tusk daemon with every upload worker
// busy: a backlog of segments is marked .ready at once and pushed one by
// one, as PostgreSQL's archiver does, so the daemon's look-ahead keeps
// WALG_UPLOAD_CONCURRENCY uploads in flight from the first push to the
// last. The WAL burst of tuskbench depends on how fast PostgreSQL writes
// WAL, which on a loaded machine may never fill more than one worker; this
// measures the daemon's peak whatever the machine is doing. It samples the
// daemon's committed memory (private writable mappings) and RSS every
// 50 ms, its RSS 3 s after the last request, and its CPU per GiB.
//
// From bench/ (its own module), with binaries built from the module root:
//
//	go build -o /tmp/tusk ./cmd/tusk   # in the repository root
//	go run ./cmd/daemonload -tusk /tmp/tusk [-storage file|s3|sftp|azure]
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tusk-pg/tusk/bench/procfs"
	"github.com/tusk-pg/tusk/bench/storages"
	"github.com/tusk-pg/tusk/internal/daemon/wire"
)

const segSize = 16 << 20

func main() {
	tusk := flag.String("tusk", "", "tusk binary to measure (required)")
	segments := flag.Int("segments", 48, "segments in the backlog")
	workers := flag.Int("upload-concurrency", 4, "WALG_UPLOAD_CONCURRENCY")
	method := flag.String("compression", "lz4", "WALG_COMPRESSION_METHOD")
	oneShot := flag.Bool("one-shot", false, "measure one-shot `tusk wal-push %p` runs (with their look-ahead) instead of the daemon")
	kind := flag.String("storage", "s3", "storage to archive to: "+strings.Join(storages.Kinds, ", "))
	flag.Parse()
	if *tusk == "" {
		fmt.Fprintln(os.Stderr, "daemonload: -tusk is required")
		os.Exit(2)
	}
	if err := run(*tusk, *kind, *segments, *workers, *method, *oneShot); err != nil {
		fmt.Fprintln(os.Stderr, "daemonload:", err)
		os.Exit(1)
	}
}

func run(tusk, kind string, segments, workers int, method string, oneShot bool) error {
	work, err := os.MkdirTemp("", "tusk-daemonload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	store, err := storages.Start(kind, filepath.Join(work, "storage"), "bench", -1, -1)
	if err != nil {
		return err
	}
	defer store.Close()

	pgdata := filepath.Join(work, "pgdata")
	walDir := filepath.Join(pgdata, "pg_wal")
	status := filepath.Join(walDir, "archive_status")
	if err := os.MkdirAll(status, 0o700); err != nil {
		return err
	}
	// WAL-like content: a third random (full-page images of random data),
	// the rest repetitive, so lz4 shrinks a segment to about 40%.
	seg := make([]byte, segSize)
	rand.Read(seg[:segSize/3])
	for i := segSize / 3; i < segSize; i++ {
		seg[i] = byte(i / 97 % 251)
	}
	names := make([]string, segments)
	for i := range names {
		names[i] = fmt.Sprintf("0000000100000000000000%02X", i+1)
		seg[segSize/2] = byte(i)
		if err := os.WriteFile(filepath.Join(walDir, names[i]), seg, 0o600); err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(status, n+".ready"), nil, 0o600); err != nil {
			return err
		}
	}

	env := append(os.Environ(), store.Env("load")...)
	env = append(env, "PGDATA="+pgdata, fmt.Sprintf("WALG_UPLOAD_CONCURRENCY=%d", workers),
		"WALG_COMPRESSION_METHOD="+method)
	if oneShot {
		return runOneShot(tusk, env, pgdata, names, workers, method, store.Desc)
	}
	sock := filepath.Join(work, "d.sock")
	cmd := exec.Command(tusk, "daemon", sock)
	cmd.Env = env
	logf, err := os.Create(filepath.Join(work, "daemon.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 300 {
			return fmt.Errorf("the daemon did not create %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // start-up settles (the daemon trims after it)
	proc := procfs.FS{Root: "/proc"}
	startCommitted, _ := proc.Committed(pid)
	startStat, _ := proc.Stat(pid)

	var mu sync.Mutex
	var peakCommitted, peakRSS uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			c, err1 := proc.Committed(pid)
			st, err2 := proc.Status(pid)
			if err1 == nil && err2 == nil {
				mu.Lock()
				peakCommitted = max(peakCommitted, c)
				peakRSS = max(peakRSS, st.RSS)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	start := time.Now()
	ctx := context.Background()
	for _, n := range names {
		reply, err := wire.Request(ctx, sock, wire.TypeWalPush, []string{n}, 5*time.Second, 5*time.Minute)
		if err != nil {
			return fmt.Errorf("push %s: %w", n, err)
		}
		if reply != wire.ReplyOK {
			return fmt.Errorf("push %s: reply %q (see %s)", n, reply, logf.Name())
		}
		// PostgreSQL's archiver marks the segment done after each success.
		if err := os.Rename(filepath.Join(status, n+".ready"), filepath.Join(status, n+".done")); err != nil {
			return err
		}
	}
	elapsed := time.Since(start)
	endStat, _ := proc.Stat(pid)
	time.Sleep(3 * time.Second)
	idle, _ := proc.Status(pid)
	idleCommitted, _ := proc.Committed(pid)
	close(stop)
	<-sampled
	hwm, _ := proc.Status(pid)

	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	gib := float64(segments) * segSize / (1 << 30)
	cpu := float64(endStat.CPUTicks()-startStat.CPUTicks()) / procfs.ClockTicks
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("segments %d (%.2f GiB) in %.1f s, upload concurrency %d, %s, %s\n",
		segments, gib, elapsed.Seconds(), workers, method, store.Desc)
	fmt.Printf("daemon committed: %.1f MiB after start-up, peak %.1f MiB, %.1f MiB 3 s after the last request\n",
		mib(startCommitted), mib(peakCommitted), mib(idleCommitted))
	fmt.Printf("daemon RSS: peak %.1f MiB sampled (VmHWM %.1f MiB), %.1f MiB 3 s after the last request\n",
		mib(peakRSS), mib(hwm.HWM), mib(idle.RSS))
	fmt.Printf("daemon CPU: %.2f s, %.2f s per GiB; load average %s", cpu, cpu/gib, load)
	return nil
}

// runOneShot runs `tusk wal-push pg_wal/NAME` for each segment in order, as
// archive_command would, and reports each run's maximum RSS and the CPU of
// all runs. The first runs upload the following segments in the background
// (WAL-G's look-ahead); later runs of those only find their marker. Each
// run goes through GNU time: the rusage of a child this process starts
// directly would count this process's own resident set, which the child
// shares until it execs (Go starts children with CLONE_VM).
func runOneShot(tusk string, env []string, pgdata string, names []string, workers int, method, desc string) error {
	status := filepath.Join(pgdata, "pg_wal", "archive_status")
	rec := filepath.Join(pgdata, "..", "time.out")
	var maxRSS, sumRSS int64
	var cpu float64
	start := time.Now()
	for _, n := range names {
		cmd := exec.Command("/usr/bin/time", "-o", rec, "-f", "%M %U %S", tusk, "wal-push", "pg_wal/"+n)
		cmd.Dir, cmd.Env = pgdata, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("wal-push %s: %w\n%s", n, err, out)
		}
		b, err := os.ReadFile(rec)
		if err != nil {
			return err
		}
		var kib int64
		var user, sys float64
		if _, err := fmt.Sscanf(string(b), "%d %f %f", &kib, &user, &sys); err != nil {
			return fmt.Errorf("GNU time's record %q: %w", b, err)
		}
		maxRSS = max(maxRSS, kib)
		sumRSS += kib
		cpu += user + sys
		if err := os.Rename(filepath.Join(status, n+".ready"), filepath.Join(status, n+".done")); err != nil {
			return err
		}
	}
	gib := float64(len(names)) * segSize / (1 << 30)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("one-shot wal-push: %d runs (%.2f GiB) in %.1f s, upload concurrency %d, %s, %s\n",
		len(names), gib, time.Since(start).Seconds(), workers, method, desc)
	fmt.Printf("max RSS per run: %.1f MiB (mean %.1f MiB)\n", float64(maxRSS)/1024, float64(sumRSS)/1024/float64(len(names)))
	fmt.Printf("CPU: %.2f s, %.2f s per GiB, %.0f ms per run; load average %s", cpu, cpu/gib,
		1000*cpu/float64(len(names)), load)
	return nil
}

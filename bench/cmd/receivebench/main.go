//go:build linux

// Command receivebench measures tusk wal-receive's memory over a WAL burst:
// a PostgreSQL 15 cluster (archive_mode off) under pgbench, wal-receive
// streaming its WAL into versitygw (S3), and /proc/PID/status and
// /proc/PID/maps of the receiver sampled every 100 ms: peak RSS (VmHWM),
// peak committed memory (private writable mappings, as tuskbench counts it),
// CPU time, and the time from the burst's end until the last segment is
// stored. Results go to stdout as one table; docs/wal-receive.md keeps them.
//
//	CGO_ENABLED=0 go build -o /tmp/tusk ./cmd/tusk && cd bench && go run ./cmd/receivebench -tusk /tmp/tusk
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tusk-pg/tusk/bench/procfs"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

const pgBin = "/usr/lib/postgresql/15/bin"

func main() {
	tusk := flag.String("tusk", "", "tusk binary to measure (required)")
	secs := flag.Int("seconds", 60, "length of the pgbench burst")
	env := flag.String("env", "", "extra settings for wal-receive, space-separated K=V")
	tls := flag.Bool("tls", false, "serve S3 over HTTPS")
	debug := flag.Bool("debug", false, "print the receiver's private writable mappings and log tail at the end")
	flag.Parse()
	if *tusk == "" {
		fmt.Fprintln(os.Stderr, "receivebench: -tusk is required")
		os.Exit(2)
	}
	if err := run(*tusk, *secs, strings.Fields(*env), *tls, *debug); err != nil {
		fmt.Fprintln(os.Stderr, "receivebench:", err)
		os.Exit(1)
	}
}

func run(tusk string, secs int, extra []string, tls, debug bool) error {
	ctx := context.Background()
	s3, err := s3server.Run(s3server.Options{Prefix: "receive", TLS: tls})
	if err != nil {
		return err
	}
	defer s3.Close()
	pg, err := pgcluster.Create(pgcluster.Options{BinDir: pgBin, Conf: []string{
		"wal_level = replica", "max_wal_senders = 4", "max_replication_slots = 4",
		"shared_buffers = 128MB", "max_wal_size = 256MB", "checkpoint_timeout = 30s", "archive_mode = off",
	}})
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.Start(ctx); err != nil {
		return err
	}
	bench := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(pgBin, "pgbench"), args...)
		cmd.Env = append(os.Environ(), pg.ConnEnv()...)
		pg.Owner().Apply(cmd)
		return cmd
	}
	if out, err := bench("-i", "-q", "-s", "10").CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}

	rcv := exec.Command(tusk, "wal-receive")
	rcv.Env = append(append(append([]string{"PATH=/usr/bin:/bin", "HOME=" + pg.BaseDir()}, s3.Env()...), pg.ConnEnv()...), extra...)
	logPath := filepath.Join(pg.BaseDir(), "wal-receive.log")
	logF, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logF.Close()
	rcv.Stdout, rcv.Stderr = logF, logF
	rcv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pg.Owner().Apply(rcv)
	if err := rcv.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- rcv.Wait() }()
	defer rcv.Process.Kill()

	fs := procfs.FS{Root: "/proc"}
	var peakRSS, peakCommitted, lastRSS uint64
	var status procfs.Status
	sample := func() {
		if st, err := fs.Status(rcv.Process.Pid); err == nil {
			status = st
			peakRSS = max(peakRSS, st.RSS)
			lastRSS = st.RSS
		}
		if c, err := fs.Committed(rcv.Process.Pid); err == nil {
			peakCommitted = max(peakCommitted, c)
		}
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				sample()
			}
		}
	}()

	var startLSN string
	if err := pg.QueryRow(ctx, "select pg_current_wal_lsn()::text").Scan(&startLSN); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // the slot is created, streaming runs
	burstStart := time.Now()
	if out, err := bench("-n", "-c", "4", "-j", "2", "-T", strconv.Itoa(secs)).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	burst := time.Since(burstStart)
	var walBytes int64
	var last string
	if err := pg.QueryRow(ctx, "select pg_current_wal_lsn() - $1::pg_lsn, pg_walfile_name(pg_switch_wal())", startLSN).Scan(&walBytes, &last); err != nil {
		return err
	}
	burstEnd := time.Now()
	var objects map[string]int64
	for {
		objects, err = s3.Objects(ctx, "receive/wal_005/")
		if err != nil {
			return err
		}
		if _, ok := objects["receive/wal_005/"+last+".lz4"]; ok {
			break
		}
		if _, ok := objects["receive/wal_005/"+last+".zst"]; ok {
			break
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("wal-receive exited: %v\n%s", err, b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(burstEnd) > 5*time.Minute {
			return fmt.Errorf("%s not stored 5 min after the burst", last)
		}
	}
	drain := time.Since(burstEnd)
	time.Sleep(3 * time.Second)
	close(stopSampling)
	<-sampled
	sample()
	stat, _ := fs.Stat(rcv.Process.Pid)
	if debug {
		maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", rcv.Process.Pid))
		for _, l := range strings.Split(string(maps), "\n") {
			if strings.Contains(l, " rw-p ") {
				fmt.Fprintln(os.Stderr, l)
			}
		}
		b, _ := os.ReadFile(logPath)
		fmt.Fprintln(os.Stderr, string(b[max(0, len(b)-3000):]))
	}
	rcv.Process.Signal(syscall.SIGTERM)
	termErr := <-exited

	var stored int64
	for _, n := range objects {
		stored += n
	}
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Printf("| date | %s |\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	settings := []string{"S3 (versitygw, HTTP)"}
	if tls {
		settings[0] = "S3 (versitygw, HTTPS)"
	}
	for _, kv := range extra {
		// Never print a key.
		if k, _, _ := strings.Cut(kv, "="); strings.Contains(k, "KEY") || strings.Contains(k, "SECRET") {
			kv = k + "=…"
		}
		settings = append(settings, kv)
	}
	fmt.Printf("| settings | %s |\n", strings.Join(settings, " "))
	fmt.Printf("| burst | pgbench -c 4 -j 2, %.0f s, %.0f MiB of WAL (%.1f MiB/s) |\n", burst.Seconds(), float64(walBytes)/(1<<20), float64(walBytes)/(1<<20)/burst.Seconds())
	fmt.Printf("| objects stored | %d, %.1f MiB |\n", len(objects), float64(stored)/(1<<20))
	fmt.Printf("| last segment stored after the burst | %.1f s |\n", drain.Seconds())
	fmt.Printf("| peak RSS (VmHWM) | %s (sampled peak VmRSS %s) |\n", mib(status.HWM), mib(peakRSS))
	fmt.Printf("| peak committed | %s |\n", mib(peakCommitted))
	fmt.Printf("| RSS 3 s after the burst | %s |\n", mib(lastRSS))
	fmt.Printf("| CPU | %.2f s (%.2f s per GiB of WAL) |\n", float64(stat.CPUTicks())/procfs.ClockTicks,
		float64(stat.CPUTicks())/procfs.ClockTicks/(float64(walBytes)/(1<<30)))
	fmt.Printf("| exit after SIGTERM | %v |\n", termErr)
	return nil
}

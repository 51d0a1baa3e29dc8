//go:build linux

// Command spawncpu measures the CPU a short-lived program costs per run:
// the cost the daemon client pays once per WAL segment. Each program is
// started with a vfork-style clone and exec (what posix_spawn does) and
// reaped with wait4, whose rusage gives the child's user and system CPU,
// minor faults and context switches. The programs are alternated run by
// run, so load from other processes falls on all of them alike; compare
// their ratios to a reference (an empty Go program, /bin/true) rather
// than absolute figures across runs.
//
// A Unix socket that answers every request with 'O' at once stands in for
// the daemon; the word {socket} in a program's arguments is replaced by
// its path.
//
//	spawncpu -runs 200 \
//	  -p 'true=/bin/true' \
//	  -p 'empty=/tmp/empty' \
//	  -p 'client=bin/tusk-daemon-client {socket} wal-push 000000010000000000000001'
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

type program struct {
	label  string
	argv   []string
	cpu    []time.Duration // user + system
	user   []time.Duration
	sys    []time.Duration
	wall   []time.Duration
	minflt []int64
	nvcsw  []int64
	nivcsw []int64
}

type progFlags []string

func (p *progFlags) String() string     { return strings.Join(*p, ", ") }
func (p *progFlags) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var progs progFlags
	runs := flag.Int("runs", 200, "runs of each program")
	warmup := flag.Int("warmup", 5, "unmeasured runs of each program first")
	flag.Var(&progs, "p", "LABEL=PATH ARGS... (repeat; {socket} is the stand-in daemon's socket)")
	flag.Parse()
	if len(progs) == 0 {
		fmt.Fprintln(os.Stderr, "spawncpu: no program (-p LABEL=PATH ARGS...)")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "spawncpu")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	go answer(ln)

	var ps []*program
	for _, p := range progs {
		label, cmd, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(cmd) == "" {
			fail(fmt.Errorf("-p %q: want LABEL=PATH ARGS...", p))
		}
		argv := strings.Fields(strings.ReplaceAll(cmd, "{socket}", sock))
		ps = append(ps, &program{label: label, argv: argv})
	}
	for i := 0; i < *warmup; i++ {
		for _, p := range ps {
			if _, err := p.run(false); err != nil {
				fail(err)
			}
		}
	}
	for i := 0; i < *runs; i++ {
		for _, p := range ps {
			if _, err := p.run(true); err != nil {
				fail(err)
			}
		}
	}
	var load string
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Printf("%s, %d runs each, alternated; load average at the end %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *runs, load)
	fmt.Printf("%-12s %8s %8s %8s %8s %8s %8s %8s %6s %6s \n", "program", "cpu p50", "p10", "p90", "user", "sys", "wall", "ratio", "minflt", "csw")
	base := median(ps[0].cpu)
	for _, p := range ps {
		m := median(p.cpu)
		fmt.Printf("%-12s %8s %8s %8s %8s %8s %8s %8.2f %6d %6d \n", p.label,
			ms(m), ms(pct(p.cpu, 10)), ms(pct(p.cpu, 90)), ms(median(p.user)), ms(median(p.sys)), ms(median(p.wall)),
			float64(m)/float64(base), median(p.minflt), median(p.nvcsw)+median(p.nivcsw))
	}
	fmt.Printf("ratio: median CPU over %s's\n", ps[0].label)
}

// run starts the program once and records what wait4 reports.
func (p *program) run(record bool) (syscall.WaitStatus, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	fd := devnull.Fd()
	start := time.Now()
	pid, err := syscall.ForkExec(p.argv[0], p.argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{fd, fd, 2},
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.label, err)
	}
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err = syscall.Wait4(pid, &ws, 0, &ru)
		if err != syscall.EINTR {
			break
		}
	}
	wall := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s: wait4: %w", p.label, err)
	}
	if ws.ExitStatus() != 0 {
		return ws, fmt.Errorf("%s: exit status %d", p.label, ws.ExitStatus())
	}
	if record {
		u, s := time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
		p.cpu = append(p.cpu, u+s)
		p.user = append(p.user, u)
		p.sys = append(p.sys, s)
		p.wall = append(p.wall, wall)
		p.minflt = append(p.minflt, ru.Minflt)
		p.nvcsw = append(p.nvcsw, ru.Nvcsw)
		p.nivcsw = append(p.nivcsw, ru.Nivcsw)
	}
	return ws, nil
}

// answer is the stand-in daemon: read the request, reply 'O'.
func answer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var b [4096]byte
			if _, err := c.Read(b[:]); err != nil {
				return
			}
			c.Write([]byte{'O'})
		}()
	}
}

func median[T int64 | time.Duration](v []T) T { return pct(v, 50) }

func pct[T int64 | time.Duration](v []T, p int) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "spawncpu:", err)
	os.Exit(1)
}

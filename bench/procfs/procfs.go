// Package procfs reads the few /proc files the benchmark samples: a
// process's memory figures (status), its CPU time and parent (stat), and its
// committed memory (the private writable mappings in maps).
//
// Every reader takes the proc root as a parameter so tests can point it at a
// directory of fixture files.
package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports (the kernel converts to it
// whatever its internal HZ is).
const ClockTicks = 100

// Status holds the memory lines of /proc/PID/status, in bytes.
type Status struct {
	RSS     uint64 // VmRSS: resident now
	HWM     uint64 // VmHWM: highest resident so far
	Peak    uint64 // VmPeak: highest address-space size so far
	Size    uint64 // VmSize: address-space size now
	RSSAnon uint64 // RssAnon: the anonymous part of VmRSS (heap, stacks)
	RSSFile uint64 // RssFile: the file-backed part (the executable's pages)
	Threads int
}

// ParseStatus reads the fields of Status from the text of /proc/PID/status.
// A zombie has no Vm* lines; its figures stay zero.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	sawThreads := false
	for line := range bytes.Lines(b) {
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var dst *uint64
		switch string(key) {
		case "VmRSS":
			dst = &s.RSS
		case "VmHWM":
			dst = &s.HWM
		case "VmPeak":
			dst = &s.Peak
		case "VmSize":
			dst = &s.Size
		case "RssAnon":
			dst = &s.RSSAnon
		case "RssFile":
			dst = &s.RSSFile
		case "Threads":
			n, err := strconv.Atoi(string(bytes.TrimSpace(val)))
			if err != nil {
				return s, fmt.Errorf("status Threads %q: %w", bytes.TrimSpace(val), err)
			}
			s.Threads, sawThreads = n, true
			continue
		default:
			continue
		}
		v, err := parseKB(val)
		if err != nil {
			return s, fmt.Errorf("status %s: %w", key, err)
		}
		*dst = v
	}
	if !sawThreads {
		return s, errors.New("status: no Threads line")
	}
	return s, nil
}

// parseKB reads "   1234 kB" into bytes.
func parseKB(val []byte) (uint64, error) {
	f := strings.Fields(string(val))
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("want \"N kB\", got %q", bytes.TrimSpace(val))
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", f[0], err)
	}
	return n << 10, nil
}

// Stat holds the fields of /proc/PID/stat the benchmark uses.
type Stat struct {
	PID   int
	Comm  string // command name, at most 15 bytes, may contain spaces and ')'
	State byte   // R, S, D, Z, ...
	PPID  int
	// Session is the session id: a process that detached with setsid (an
	// asynchronous worker) leaves its parent's session.
	Session int
	UTime   uint64 // user CPU, clock ticks
	STime   uint64 // system CPU, clock ticks
	// CUTime and CSTime are the CPU of waited-for children, once reaped.
	CUTime uint64
	CSTime uint64
	// StartTime (clock ticks after boot) tells a reused pid from the process
	// that had it before.
	StartTime uint64
}

// CPUTicks is user plus system CPU time.
func (s Stat) CPUTicks() uint64 { return s.UTime + s.STime }

// TreeCPUTicks adds the CPU of the children the process has reaped.
func (s Stat) TreeCPUTicks() uint64 { return s.UTime + s.STime + s.CUTime + s.CSTime }

// ParseStat reads /proc/PID/stat. The command name sits in parentheses and may
// itself contain ") ", so the fields after it are found from the last ')'.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return s, fmt.Errorf("stat: no (comm) in %q", truncate(b))
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return s, fmt.Errorf("stat pid: %w", err)
	}
	s.PID = pid
	s.Comm = string(b[open+1 : closing])
	// Fields after comm, numbered from 3 as in proc(5): state(3) ppid(4)
	// pgrp(5) session(6) ...
	// utime(14) stime(15) ... starttime(22).
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 20 {
		return s, fmt.Errorf("stat of pid %d: %d fields after comm, want at least 20", pid, len(f))
	}
	if len(f[0]) != 1 {
		return s, fmt.Errorf("stat of pid %d: state %q", pid, f[0])
	}
	s.State = f[0][0]
	field := func(n int) (uint64, error) {
		v, err := strconv.ParseUint(f[n-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat of pid %d field %d: %w", pid, n, err)
		}
		return v, nil
	}
	ppid, err := field(4)
	if err != nil {
		return s, err
	}
	s.PPID = int(ppid)
	sid, err := field(6)
	if err != nil {
		return s, err
	}
	s.Session = int(sid)
	if s.UTime, err = field(14); err != nil {
		return s, err
	}
	if s.STime, err = field(15); err != nil {
		return s, err
	}
	if s.CUTime, err = field(16); err != nil {
		return s, err
	}
	if s.CSTime, err = field(17); err != nil {
		return s, err
	}
	if s.StartTime, err = field(22); err != nil {
		return s, err
	}
	return s, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// Committed sums the sizes of the private writable mappings listed in the
// text of /proc/PID/maps: what the kernel charges against the commit limit
// under strict overcommit. PROT_NONE reservations ("---p"), read-only and
// shared mappings are not charged.
func Committed(r io.Reader) (uint64, error) {
	var total uint64
	sc := bufio.NewScanner(r)
	// A line is short, but the pathname may be long; allow 64 KiB.
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		rng, rest, ok := bytes.Cut(line, []byte{' '})
		if !ok || len(rest) < 4 {
			return 0, fmt.Errorf("maps line %q: no permissions", truncate(line))
		}
		perms := rest[:4]
		if perms[1] != 'w' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := bytes.Cut(rng, []byte{'-'})
		if !ok {
			return 0, fmt.Errorf("maps line %q: bad address range", truncate(line))
		}
		start, err := strconv.ParseUint(string(lo), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("maps line %q: %w", truncate(line), err)
		}
		end, err := strconv.ParseUint(string(hi), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("maps line %q: %w", truncate(line), err)
		}
		if end < start {
			return 0, fmt.Errorf("maps line %q: range ends before it starts", truncate(line))
		}
		total += end - start
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading maps: %w", err)
	}
	return total, nil
}

// FS reads processes under one proc root ("/proc" on a live system).
type FS struct{ Root string }

func (fs FS) path(pid int, name string) string {
	return filepath.Join(fs.Root, strconv.Itoa(pid), name)
}

// Stat reads one process's stat file.
func (fs FS) Stat(pid int) (Stat, error) {
	b, err := os.ReadFile(fs.path(pid, "stat"))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

// Status reads one process's status file.
func (fs FS) Status(pid int) (Status, error) {
	b, err := os.ReadFile(fs.path(pid, "status"))
	if err != nil {
		return Status{}, err
	}
	s, err := ParseStatus(b)
	if err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	return s, nil
}

// Committed reads one process's maps and sums its private writable mappings.
func (fs FS) Committed(pid int) (uint64, error) {
	f, err := os.Open(fs.path(pid, "maps"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := Committed(f)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return n, nil
}

// Exe is the target of /proc/PID/exe ("" when unreadable, e.g. a zombie or
// another user's process without privilege).
func (fs FS) Exe(pid int) string {
	p, err := os.Readlink(fs.path(pid, "exe"))
	if err != nil {
		return ""
	}
	return p
}

// Scan returns the stat of every process under the root. Processes that exit
// while it reads are skipped.
func (fs FS) Scan() ([]Stat, error) {
	ents, err := os.ReadDir(fs.Root)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", fs.Root, err)
	}
	out := make([]Stat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile(fs.path(pid, "stat"))
		if err != nil {
			// The process exited between ReadDir and ReadFile.
			continue
		}
		s, err := ParseStat(b)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Tree indexes a Scan by pid and answers ancestry questions.
type Tree map[int]Stat

// NewTree indexes stats by pid.
func NewTree(stats []Stat) Tree {
	t := make(Tree, len(stats))
	for _, s := range stats {
		t[s.PID] = s
	}
	return t
}

// Descends reports whether pid is ancestor or a descendant of it. The walk is
// bounded so a pid cycle in a racy snapshot cannot loop forever.
func (t Tree) Descends(pid, ancestor int) bool {
	for range 4096 {
		if pid == ancestor {
			return true
		}
		s, ok := t[pid]
		if !ok || s.PPID == 0 || s.PPID == pid {
			return false
		}
		pid = s.PPID
	}
	return false
}

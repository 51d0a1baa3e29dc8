package procfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const goStatus = `Name:	tusk
Umask:	0077
State:	S (sleeping)
Tgid:	4242
Pid:	4242
PPid:	4200
VmPeak:	 1252340 kB
VmSize:	 1251000 kB
VmLck:	       0 kB
VmHWM:	   30112 kB
VmRSS:	   21504 kB
RssAnon:	   15000 kB
RssFile:	    6504 kB
VmData:	   60000 kB
Threads:	9
SigQ:	0/96365
`

func TestParseStatus(t *testing.T) {
	s, err := ParseStatus([]byte(goStatus))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{RSS: 21504 << 10, HWM: 30112 << 10, Peak: 1252340 << 10, Size: 1251000 << 10, RSSAnon: 15000 << 10, RSSFile: 6504 << 10, Threads: 9}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
}

func TestParseStatusZombie(t *testing.T) {
	// A zombie keeps its status file but loses every Vm line.
	s, err := ParseStatus([]byte("Name:\tpgbackrest\nState:\tZ (zombie)\nThreads:\t1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s != (Status{Threads: 1}) {
		t.Fatalf("got %+v", s)
	}
}

func TestParseStatusErrors(t *testing.T) {
	for name, text := range map[string]string{
		"no threads": "VmRSS:\t1 kB\n",
		"bad unit":   "VmRSS:\t1 MB\nThreads:\t1\n",
		"bad number": "VmHWM:\tx kB\nThreads:\t1\n",
		"bad thread": "Threads:\tmany\n",
	} {
		if _, err := ParseStatus([]byte(text)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseStat(t *testing.T) {
	// comm may hold spaces and parentheses; only the last ')' ends it.
	line := "4242 (we(ird) n) ame) S 4200 4242 4200 0 -1 4194304 99 0 0 0 1234 567 89 10 20 0 9 0 987654 3133440 389 18446744073709551615 0\n"
	s, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4242, Comm: "we(ird) n) ame", State: 'S', PPID: 4200, Session: 4200, UTime: 1234, STime: 567, CUTime: 89, CSTime: 10, StartTime: 987654}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if s.CPUTicks() != 1801 || s.TreeCPUTicks() != 1900 {
		t.Fatalf("CPUTicks = %d, TreeCPUTicks = %d", s.CPUTicks(), s.TreeCPUTicks())
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, line := range []string{
		"",
		"12 no parens S 1",
		"x (a) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0 0",
		"12 (a) S 1 1",
		"12 (a) SS 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0 0",
		"12 (a) S 1 1 1 0 -1 0 0 0 0 0 u 1 0 0 20 0 1 0 5 0 0",
	} {
		if _, err := ParseStat([]byte(line)); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}

const goMaps = `00400000-00c00000 r-xp 00000000 fe:00 1234    /usr/local/bin/tusk
00c00000-00d00000 r--p 00800000 fe:00 1234    /usr/local/bin/tusk
00d00000-00d40000 rw-p 00900000 fe:00 1234    /usr/local/bin/tusk
00d40000-00d80000 rw-p 00000000 00:00 0
c000000000-c004000000 rw-p 00000000 00:00 0
c004000000-c008000000 ---p 00000000 00:00 0
7f0000000000-7f0002000000 rw-p 00000000 00:00 0
7f0002000000-7f0040000000 ---p 00000000 00:00 0
7f0040000000-7f0040001000 rw-s 00000000 00:05 77   /dev/shm/x
7f0040001000-7f0040002000 rwxp 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0   [stack]
7ffc00100000-7ffc00102000 r-xp 00000000 00:00 0   [vdso]
`

func TestCommitted(t *testing.T) {
	got, err := Committed(strings.NewReader(goMaps))
	if err != nil {
		t.Fatal(err)
	}
	// Private writable only: data 0x40000 + bss 0x40000 + heap 64 MiB +
	// 32 MiB + rwxp page 0x1000 + stack 0x21000; not ---p, rw-s, r-xp.
	want := uint64(0x40000 + 0x40000 + 0x4000000 + 0x2000000 + 0x1000 + 0x21000)
	if got != want {
		t.Fatalf("Committed = %#x, want %#x", got, want)
	}
}

func TestCommittedErrors(t *testing.T) {
	for _, text := range []string{
		"00400000 rw-p\n",
		"zz-00400000 rw-p 0 0 0\n",
		"00500000-00400000 rw-p 0 0 0\n",
		"00400000-00500000\n",
	} {
		if _, err := Committed(strings.NewReader(text)); err == nil {
			t.Errorf("%q: no error", text)
		}
	}
}

func writeProc(t *testing.T, root string, pid int, stat string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestScanAndTree(t *testing.T) {
	root := t.TempDir()
	tail := " 0 0 0 -1 0 0 0 0 0 5 7 0 0 20 0 1 0 100 0 0 0\n"
	writeProc(t, root, 1, "1 (init) S 0"+tail)
	writeProc(t, root, 10, "10 (harness) S 1"+tail)
	writeProc(t, root, 20, "20 (postgres) S 10"+tail)
	writeProc(t, root, 30, "30 (sh) S 20"+tail)
	writeProc(t, root, 40, "40 (tusk) R 30"+tail)
	writeProc(t, root, 50, "50 (other) S 1"+tail)
	// Not processes: non-numeric names and a dir whose stat vanished.
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "60"), 0o755); err != nil {
		t.Fatal(err)
	}
	stats, err := FS{Root: root}.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 6 {
		t.Fatalf("Scan found %d processes, want 6: %+v", len(stats), stats)
	}
	tree := NewTree(stats)
	if tree[40].Comm != "tusk" || tree[40].CPUTicks() != 12 {
		t.Fatalf("pid 40 = %+v", tree[40])
	}
	for _, c := range []struct {
		pid, anc int
		want     bool
	}{
		{40, 20, true}, {40, 10, true}, {40, 40, true}, {50, 10, false}, {20, 30, false}, {99, 10, false},
	} {
		if got := tree.Descends(c.pid, c.anc); got != c.want {
			t.Errorf("Descends(%d, %d) = %v", c.pid, c.anc, got)
		}
	}
	// A corrupt stat is an error, not a silent skip.
	writeProc(t, root, 70, "70 broken")
	if _, err := (FS{Root: root}).Scan(); err == nil {
		t.Fatal("Scan accepted a corrupt stat")
	}
}

func TestTreeCycle(t *testing.T) {
	tree := Tree{1: {PID: 1, PPID: 2}, 2: {PID: 2, PPID: 1}}
	if tree.Descends(1, 3) {
		t.Fatal("cycle reported as descent")
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (a) S 4200 4242 4200 0 -1 4194304 99 0 0 0 1234 567 0 0 20 0 9 0 987654 3133440 389\n"))
	f.Add([]byte("1 ()) Z 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err == nil && !bytes.Contains(b, []byte(s.Comm)) {
			t.Fatalf("comm %q not in input", s.Comm)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(goStatus))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseStatus(b)
	})
}

func FuzzCommitted(f *testing.F) {
	f.Add([]byte(goMaps))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Committed(bytes.NewReader(b))
	})
}

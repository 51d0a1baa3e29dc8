//go:build linux

// Package rss keeps the resident set honest about code: a large static Go
// binary faults in far more of its own text than it keeps using (package
// initialisers run once; the kernel maps neighbouring pages around each
// fault), and those clean file pages stay counted in VmRSS for the life of
// the process although nothing touches them again.
package rss

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DropFilePages removes the executable's read-only, file-backed pages
// (code and constant data) from this process's page tables with
// madvise(MADV_DONTNEED). They are clean copies of the binary on disk:
// whatever is used again faults straight back in from the page cache, so
// nothing is lost and afterwards RssFile counts only the code in use.
// Writable mappings are never touched. Errors are ignored: this is an
// optimisation of the accounting, not of correctness.
func DropFilePages() {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	type span struct{ start, end uintptr }
	var spans []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-01104000 r-xp 00000000 fe:00 10013663 /path/to/tusk
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe {
			continue
		}
		perms := fields[1]
		if perms != "r-xp" && perms != "r--p" {
			continue
		}
		bounds := strings.SplitN(fields[0], "-", 2)
		lo, err1 := strconv.ParseUint(bounds[0], 16, 64)
		hi, err2 := strconv.ParseUint(bounds[1], 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		spans = append(spans, span{uintptr(lo), uintptr(hi)})
	}
	for _, s := range spans {
		// The raw call takes the address as a number: these are mappings of
		// our own executable, never Go memory.
		unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_DONTNEED)
	}
}

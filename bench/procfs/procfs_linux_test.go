package procfs

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLiveSelf reads this test process's own files: committed memory must
// grow by at least an allocation that is held, and RSS by what is touched.
func TestLiveSelf(t *testing.T) {
	fs := FS{Root: "/proc"}
	pid := os.Getpid()
	before, err := fs.Committed(pid)
	if err != nil {
		t.Fatal(err)
	}
	st0, err := fs.Status(pid)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh anonymous mapping, not Go heap that an earlier test run may
	// already have mapped and freed.
	const size = 96 << 20
	buf, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(buf)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	after, err := fs.Committed(pid)
	if err != nil {
		t.Fatal(err)
	}
	st1, err := fs.Status(pid)
	if err != nil {
		t.Fatal(err)
	}
	if after < before+size {
		t.Errorf("committed %d → %d after touching %d bytes", before, after, size)
	}
	if st1.RSS < st0.RSS+size/2 || st1.HWM < st1.RSS || st1.Peak < st1.Size || st1.Threads < 1 {
		t.Errorf("status before %+v after %+v", st0, st1)
	}
	s, err := fs.Stat(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The session ID reads 0 when the session leader lives in another PID
	// namespace (containers), so compare it with the kernel's own answer.
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != pid || s.PPID != os.Getppid() || s.Session != sid || (s.State != 'R' && s.State != 'S') {
		t.Errorf("stat %+v (ppid want %d, session want %d)", s, os.Getppid(), sid)
	}
	if exe, _ := os.Executable(); fs.Exe(pid) != exe {
		t.Errorf("Exe = %q, want %q", fs.Exe(pid), exe)
	}
}

package clientcmd

import (
	"bytes"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/tusk-pg/tusk/internal/daemon/wire"
	"github.com/tusk-pg/tusk/internal/daemon/wire/wiretest"
)

// cArgv is args as the kernel hands them to a process: NUL-terminated
// strings behind a pointer array.
func cArgv(args ...string) (int, **byte) {
	ptrs := make([]*byte, len(args)+1)
	for i, a := range args {
		b := append([]byte(a), 0)
		ptrs[i] = &b[0]
	}
	return len(args), (**byte)(unsafe.Pointer(&ptrs[0]))
}

// Prestart settles an OK reply itself, hands any other reply to Resume
// (which reports it as Run would), and leaves flags, other commands and a
// socket it cannot reach to Run.
func TestPrestart(t *testing.T) {
	const name = "000000010000000000000001"
	t.Cleanup(func() { prestarted.done = false })

	got := make(chan []byte, 4)
	sock := wiretest.Listen(t, "s", wiretest.Replier(wire.ReplyOK, got))
	if s := Prestart(cArgv("client", sock, "WAL-push", name)); s != 0 {
		t.Fatalf("OK reply: status %d, want 0", s)
	}
	if m := <-got; string(m) != "F"+name {
		t.Fatalf("push frame %q", m)
	}
	if s := Prestart(cArgv("client", sock, "wal-fetch", name, "pg_wal/RECOVERYXLOG")); s != 0 {
		t.Fatalf("fetch: status %d, want 0", s)
	}
	want, _ := wire.EncodeMessage(wire.TypeWalFetch, name, "pg_wal/RECOVERYXLOG")
	if m := <-got; m[0] != wire.TypeWalFetch || !bytes.Equal(m[1:], want[wire.HeaderSize:]) {
		t.Fatalf("fetch frame %q", m)
	}
	if _, ok := Resume(nil, nil); ok {
		t.Fatal("Resume after OK replies")
	}

	for _, args := range [][]string{
		{"client", sock, "wal-push", name, "-timeout", "1s"},
		{"client", sock, "wal-push", name, "extra"},
		{"client", "--version"},
		{"client", sock, "backup-push", name},
		{"client", filepath.Join(t.TempDir(), "missing"), "wal-push", name},
	} {
		if s := Prestart(cArgv(args...)); s != -1 {
			t.Errorf("%q: status %d, want -1", args, s)
		}
		if _, ok := Resume(nil, nil); ok {
			t.Errorf("%q: Resume has something to report", args)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("the daemon got %q from a command line left to Run", m)
	default:
	}

	missing := wiretest.Listen(t, "s", wiretest.Replier(wire.ReplyNotFound, got))
	if s := Prestart(cArgv("client", missing, "wal-fetch", name, "pg_wal/RECOVERYXLOG")); s != -1 {
		t.Fatalf("not-found reply: status %d, want -1", s)
	}
	var stdout, stderr bytes.Buffer
	s, ok := Resume(&stdout, &stderr)
	if !ok || s != ExitNotFound || stdout.String() != "WAL file "+name+" is not archived\n" ||
		stderr.String() != "ERROR: wal-fetch: "+name+" not found in storage\n" {
		t.Fatalf("Resume: %d %v, stdout %q, stderr %q", s, ok, stdout.String(), stderr.String())
	}
}

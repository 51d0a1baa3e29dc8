package clientcmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/daemon"
)

type stubHandler struct{ pushed, fetched []string }

func (h *stubHandler) Push(_ context.Context, p string) error {
	h.pushed = append(h.pushed, p)
	return nil
}

func (h *stubHandler) Fetch(_ context.Context, name, dest string) error {
	h.fetched = append(h.fetched, name+" "+dest)
	if name == "000000010000000000000009" {
		return errNotArchivedStub
	}
	return nil
}

var errNotArchivedStub = errors.New("not archived")

func (h *stubHandler) NotFound(err error) bool { return errors.Is(err, errNotArchivedStub) }

// The client takes WAL-G's command line: arguments first, then Go-style
// single-dash flags, and maps replies to WAL-G's exit statuses.
func TestDaemonClientCommandLine(t *testing.T) {
	dir, _ := os.MkdirTemp("", "tusk-cli-")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	l, err := daemon.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	h := &stubHandler{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&daemon.Server{Handler: h, PGData: "/pg"}).Serve(ctx, l)

	var out bytes.Buffer
	if err := Exec(ctx, []string{sock, "wal-push", "000000010000000000000001", "-timeout", "10s", "-connection-timeout", "1s"}, &out, "v"); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := Exec(ctx, []string{sock, "WAL-FETCH", "000000010000000000000002", "pg_wal/RECOVERYXLOG"}, &out, "v"); err != nil {
		t.Fatalf("fetch (command name is case-insensitive): %v", err)
	}
	err = Exec(ctx, []string{sock, "wal-fetch", "000000010000000000000009", "pg_wal/RECOVERYXLOG"}, &out, "v")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 74 {
		t.Fatalf("missing file: %v, want exit 74", err)
	}
	for _, bad := range [][]string{
		{sock},
		{sock, "wal-push"},
		{sock, "wal-fetch", "x"},
		{sock, "backup-push", "x"},
		{sock, "wal-push", "x", "-timeout", "soon"},
		{filepath.Join(dir, "missing.sock"), "wal-push", "000000010000000000000001"},
	} {
		err := Exec(ctx, bad, &out, "v")
		if err == nil || errors.As(err, &ee) && ee.Code == 74 {
			t.Errorf("%q: got %v, want a usage or connection error", bad, err)
		}
	}
	if len(h.pushed) != 1 || h.pushed[0] != "/pg/pg_wal/000000010000000000000001" {
		t.Fatalf("pushed %q", h.pushed)
	}
	out.Reset()
	Exec(ctx, []string{"--version"}, &out, "v")
	if !strings.HasPrefix(out.String(), "walg-daemon-client\t") {
		t.Fatalf("version line %q", out.String())
	}
}

package clientcmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/daemon"
	"github.com/tusk-pg/tusk/internal/daemon/wire"
	"github.com/tusk-pg/tusk/internal/daemon/wire/wiretest"
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

// The two flags take package flag's syntax and errors, which the client
// parses by hand to stay small.
func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		args          []string
		timeout, conn time.Duration
		err           string
	}{
		{nil, 60 * time.Second, 5 * time.Second, ""},
		{[]string{"-timeout", "10s"}, 10 * time.Second, 5 * time.Second, ""},
		{[]string{"--timeout=2m", "-connection-timeout=1s"}, 2 * time.Minute, time.Second, ""},
		{[]string{"-connection-timeout", "250ms", "--"}, 60 * time.Second, 250 * time.Millisecond, ""},
		{[]string{"-timeout", "soon"}, 0, 0, `invalid value "soon" for flag -timeout: parse error`},
		{[]string{"-timeout"}, 0, 0, "flag needs an argument: -timeout"},
		{[]string{"-retries", "3"}, 0, 0, "flag provided but not defined: -retries"},
		{[]string{"---timeout", "1s"}, 0, 0, "bad flag syntax: ---timeout"},
		{[]string{"-timeout", "1s", "extra", "x"}, 0, 0, `unexpected arguments after flags: ["extra" "x"]`},
		{[]string{"--", "-timeout"}, 0, 0, `unexpected arguments after flags: ["-timeout"]`},
	} {
		timeout, conn, err := parseFlags(c.args)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%q: error %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || timeout != c.timeout || conn != c.conn {
			t.Errorf("%q: %v %v %v, want %v %v", c.args, timeout, conn, err, c.timeout, c.conn)
		}
	}
}

// A reply other than OK or not-found names the command, the file and the
// reply byte.
func TestDaemonErrorReply(t *testing.T) {
	sock := wiretest.Listen(t, "s", wiretest.Replier(wire.ReplyError, make(chan []byte, 1)))
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{sock, "wal-push", "000000010000000000000001"}, &stdout, &stderr, "v")
	want := `ERROR: wal-push 000000010000000000000001 failed in the daemon (reply 'E'); see the daemon's log` + "\n"
	if code != 1 || stderr.String() != want {
		t.Fatalf("exit %d, stderr %q, want 1 and %q", code, stderr.String(), want)
	}
}

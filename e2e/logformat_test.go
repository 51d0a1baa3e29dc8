package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// The daemon's records follow TUSK_LOG_FORMAT too: with json, every line
// it writes from start to a SIGTERM stop is a JSON record.
func TestDaemonLogsJSON(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	dir := pgcluster.TempDir(t)
	pgdata := filepath.Join(dir, "pgdata")
	store := filepath.Join(dir, "store")
	su, err := pgcluster.LookupServerUser()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{pgdata, filepath.Join(pgdata, "pg_wal"), store} {
		if err := su.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, tusk, filepath.Join(dir, "d.sock"), pgdata,
		[]string{"WALG_FILE_PREFIX=" + store, "TUSK_LOG_FORMAT=json", "WALG_LOG_LEVEL=DEVEL"})
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop on SIGTERM")
	}
	b, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var msgs []string
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] == nil || rec["msg"] == nil {
			t.Errorf("not a JSON record: %q", line)
			continue
		}
		msgs = append(msgs, rec["msg"].(string))
	}
	if len(msgs) < 2 || !strings.HasPrefix(msgs[0], "daemon: serving") {
		t.Errorf("records %q; want the daemon's start and stop", msgs)
	}
}

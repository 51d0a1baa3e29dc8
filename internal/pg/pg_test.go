package pg

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

func TestParseLSN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LSN
	}{
		{"0/0", 0},
		{"0/2000028", 0x2000028},
		{"16/B374D848", 0x16B374D848},
		{"FFFFFFFF/FFFFFFFF", ^LSN(0)},
	} {
		got, err := ParseLSN(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("LSN(%#x).String() = %q, want %q", uint64(got), got.String(), tc.in)
		}
	}
	for _, bad := range []string{"", "0", "/1", "1/", "x/1", "1/1/1", "100000000/0", "-1/0", " 0/1"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
	if got := LSN(0x3000000).Segment(16 << 20); got != 3 {
		t.Errorf("segment of 0/3000000 = %d, want 3", got)
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/2000028", "FFFFFFFF/FFFFFFFF", "1/", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("%q → %v → %q does not round-trip: %v", s, l, l.String(), err)
		}
	})
}

// setConnEnv points this process's PG* variables at c (pgx reads them).
func setConnEnv(t *testing.T, c *pgcluster.Cluster) {
	for _, kv := range c.ConnEnv() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func TestBackupSession(t *testing.T) {
	c := pgcluster.New(t, pgcluster.Options{DataChecksums: true, Conf: []string{"wal_level = replica"}})
	c.Start()
	setConnEnv(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn, err := Connect(ctx, ConnectOptions{AppName: "tusk-test", NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if v := conn.Version(); v < 150000 || v >= 160000 {
		t.Errorf("version %d, want 15xxxx", v)
	}
	var app string
	if app, err = conn.Setting(ctx, "application_name"); err != nil || app != "tusk-test" {
		t.Errorf("application_name = %q, %v", app, err)
	}

	info, err := conn.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(c.DataDir())
	if info.DataDirectory != want {
		t.Errorf("data directory %q, want %q", info.DataDirectory, want)
	}
	if info.WalSegmentSize != 16<<20 || info.BlockSize != 8192 || info.RelSegmentBlocks != 131072 {
		t.Errorf("sizes: wal %d block %d relseg %d", info.WalSegmentSize, info.BlockSize, info.RelSegmentBlocks)
	}
	if !info.DataChecksums || info.InRecovery || !info.HasSystemIdentifier || info.SystemIdentifier == 0 {
		t.Errorf("info %+v", info)
	}
	tli, seg, err := conn.Timeline(ctx)
	if err != nil || tli != 1 || seg != 16<<20 {
		t.Errorf("timeline %d seg %d err %v", tli, seg, err)
	}

	// A user tablespace shows up with its location.
	loc := pgcluster.TempDir(t)
	c.Exec("CREATE TABLESPACE tbs LOCATION '" + loc + "'")
	ts, err := conn.Tablespaces(ctx)
	if err != nil || len(ts) != 1 || ts[0].Name != "tbs" || ts[0].Location != loc {
		t.Errorf("tablespaces %+v, %v", ts, err)
	}

	start, err := conn.StartBackup(ctx, "tusk test")
	if err != nil {
		t.Fatal(err)
	}
	if start.InRecovery || len(start.WalFileName) != 24 || start.LSN == 0 {
		t.Errorf("start %+v", start)
	}
	// The name is that of the start LSN's segment on timeline 1.
	if wantName := "00000001" + strings.Repeat("0", 8) + strings.ToUpper(hex8(uint64(start.LSN.Segment(16<<20)))); start.WalFileName != wantName {
		t.Errorf("wal file name %s, want %s", start.WalFileName, wantName)
	}
	// Liveness from another goroutine while the session is otherwise idle.
	done := make(chan error)
	go func() { done <- conn.Ping(ctx) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := conn.SwitchWAL(ctx); err != nil {
		t.Fatal(err)
	}
	stop, err := conn.StopBackup(ctx, false, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if stop.LSN <= start.LSN {
		t.Errorf("stop LSN %v not after start %v", stop.LSN, start.LSN)
	}
	if !strings.Contains(stop.Label, "START WAL LOCATION: "+start.LSN.String()) || !strings.Contains(stop.Label, "LABEL: tusk test") {
		t.Errorf("label:\n%s", stop.Label)
	}
	if !strings.Contains(stop.TablespaceMap, loc) {
		t.Errorf("tablespace map %q lacks %s", stop.TablespaceMap, loc)
	}
	// A second stop fails: the backup belongs to the session and is over.
	if _, err := conn.StopBackup(ctx, false, 0); err == nil {
		t.Error("second stop succeeded")
	}

	// Closing the session aborts a running backup: a new session can start
	// one again right away, and the server is not left in backup mode.
	if _, err := conn.StartBackup(ctx, "aborted"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("ping on a closed session succeeded")
	}
	var running int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tusk-test'").Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), "backup_label")); err == nil {
		t.Error("a non-exclusive backup wrote backup_label into the data directory")
	}
}

func TestConnectFailure(t *testing.T) {
	t.Setenv("PGHOST", t.TempDir())
	t.Setenv("PGPORT", "1")
	t.Setenv("PGCONNECT_TIMEOUT", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Connect(ctx, ConnectOptions{NoFallback: true})
	if err == nil || !strings.Contains(err.Error(), "connect to postgres") {
		t.Fatalf("err = %v", err)
	}
}

func hex8(n uint64) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[n&15]
		n >>= 4
	}
	return string(b)
}

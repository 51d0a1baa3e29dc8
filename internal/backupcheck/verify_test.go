package backupcheck

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"math"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pgdata"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/wal"
)

// 1 MiB segments keep the synthetic WAL small.
const seg1 = 1 << 20

const name = "base_000000010000000000000002"

type fixture struct {
	t  *testing.T
	st storage.Storage
}

func (f fixture) put(key string, b []byte) {
	f.t.Helper()
	if err := f.st.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		f.t.Fatal(err)
	}
}

func tarOf(t *testing.T, members ...string) []byte {
	var files []tarFile
	for _, m := range members {
		files = append(files, tarFile{m, []byte("content of " + m)})
	}
	return tarFiles(t, files...)
}

type tarFile struct {
	name string
	body []byte
}

func tarFiles(t *testing.T, files ...tarFile) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o600, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// segment is an uncompressed WAL segment whose first page header names
// the segment at address addr.
func segment(addr uint64, size int) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint16(b[0:], 0xD110) // PostgreSQL 15's magic
	binary.LittleEndian.PutUint64(b[8:], addr)
	return b
}

// newBackup stores an uncompressed full backup starting in segment 2 and
// ending in segment 3, with its WAL.
func newBackup(t *testing.T) fixture {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{t, st}
	s := &backup.Sentinel{LSN: pg.LSN(2*seg1 + 0x28), FinishLSN: pg.LSN(3*seg1 + 0x100), PgVersion: 150000, Version: 2}
	sb, err := backup.EncodeSentinel(s)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := backup.EncodeMetadata(backup.MetadataFromSentinel(s))
	if err != nil {
		t.Fatal(err)
	}
	var fm bytes.Buffer
	err = backup.EncodeFilesMetadata(&fm, &backup.FilesMetadata{
		Files: map[string]backup.FileDescription{
			"/base/5/1259": {}, "/PG_VERSION": {}, "/base/5/1249": {IsSkipped: true},
		},
		TarFileSets: map[string][]string{
			"part_001.tar":     {"/base/5/1259", "/PG_VERSION"},
			"backup_label.tar": {"backup_label"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.put(backup.MetadataKey(name), mb)
	f.put(backup.FilesMetadataKey(name), fm.Bytes())
	f.put(backup.TarKey(name, "part_001.tar"), tarOf(t, "/base/5/1259", "/PG_VERSION"))
	f.put(backup.TarKey(name, "backup_label.tar"), tarOf(t, "backup_label"))
	f.put(backup.TarKey(name, "pg_control.tar"), tarFiles(t, tarFile{"/global/pg_control", controlFile(true)}))
	for no := uint64(2); no <= 3; no++ {
		f.put(wal.Folder+wal.Segment{Timeline: 1, No: no}.Name(seg1), segment(no*seg1, seg1))
	}
	f.put(backup.SentinelKey(name), sb)
	return f
}

func (f fixture) verify() *Report {
	f.t.Helper()
	v := &Verifier{Store: f.st, WAL: &wal.Restorer{Store: f.st, SegmentSize: seg1}, SegmentSize: seg1}
	r, err := v.Verify(context.Background(), backup.LatestName)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func faults(r *Report) string {
	var b strings.Builder
	for _, f := range r.Faults {
		b.WriteString(f.Object + ": " + f.Problem + "\n")
	}
	return b.String()
}

func TestVerifyClean(t *testing.T) {
	r := newBackup(t).verify()
	if r.Status != "OK" || len(r.Faults) != 0 || r.Tars != 3 || r.Files != 4 || r.WALSegments != 2 {
		t.Fatalf("%+v\n%s", r, faults(r))
	}
}

func TestVerifyFaults(t *testing.T) {
	tarKey := backup.TarKey(name, "part_001.tar")
	seg3 := wal.Folder + wal.Segment{Timeline: 1, No: 3}.Name(seg1)
	for _, c := range []struct {
		what   string
		damage func(f fixture)
		want   []string // lines (object: problem prefix) expected in the faults
	}{
		{"a member files_metadata does not list", func(f fixture) {
			f.put(tarKey, tarOf(t, "/base/5/1259", "/PG_VERSION", "/base/5/9999"))
		}, []string{tarKey + ": holds base/5/9999, which files_metadata.json does not list"}},
		{"a listed member missing", func(f fixture) {
			f.put(tarKey, tarOf(t, "/base/5/1259"))
		}, []string{tarKey + ": lacks PG_VERSION, which files_metadata.json lists"}},
		{"not a tar", func(f fixture) {
			f.put(tarKey, bytes.Repeat([]byte("x"), 1024))
		}, []string{tarKey + ": not a well-formed tar"}},
		{"pg_control tar without pg_control", func(f fixture) {
			f.put(backup.TarKey(name, "pg_control.tar"), tarOf(t, "global/other"))
		}, []string{backup.TarKey(name, "pg_control.tar") + ": does not hold global/pg_control"}},
		{"WAL segment of another address", func(f fixture) {
			f.put(seg3, segment(7*seg1, seg1))
		}, []string{seg3 + ": first page header is not this segment's"}},
		{"short WAL segment", func(f fixture) {
			f.put(seg3, segment(3*seg1, seg1/2))
		}, []string{seg3 + ": cannot be read: "}},
		{"missing WAL segment", func(f fixture) {
			f.st.Delete(context.Background(), seg3)
		}, []string{seg3 + ": missing"}},
		{"missing metadata.json", func(f fixture) {
			f.st.Delete(context.Background(), backup.MetadataKey(name))
		}, []string{backup.MetadataKey(name) + ": missing\n"}},
	} {
		t.Run(c.what, func(t *testing.T) {
			f := newBackup(t)
			c.damage(f)
			r := f.verify()
			got := faults(r)
			t.Logf("faults:\n%s", got)
			if r.Status != "FAILURE" {
				t.Errorf("status %s", r.Status)
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("no fault %q in\n%s", w, got)
				}
			}
			if strings.Count(got, "\n") != len(r.Faults) {
				t.Errorf("a fault spans lines:\n%s", got)
			}
		})
	}
}

// controlFile is a pg_control of PostgreSQL 13-16's layout: 8 KiB pages,
// 1 GiB segments, data checksums as asked.
func controlFile(checksums bool) []byte {
	b := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint32(b[8:], 1300)
	le.PutUint64(b[208:], math.Float64bits(1234567.0))
	le.PutUint32(b[216:], 8192)
	le.PutUint32(b[220:], 131072)
	if checksums {
		le.PutUint32(b[252:], 1)
	}
	le.PutUint32(b[288:], crc32.Checksum(b[:288], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// relation is n initialised pages of relation file segment seg, each with
// its checksum, LSN lsn and distinct contents.
func relation(n int, seg uint32, lsn uint64) []byte {
	const bs = 8192
	var out []byte
	for i := range n {
		p := make([]byte, bs)
		for j := range p {
			p[j] = byte(i*31 + j*7)
		}
		binary.LittleEndian.PutUint32(p[0:], uint32(lsn>>32))
		binary.LittleEndian.PutUint32(p[4:], uint32(lsn))
		binary.LittleEndian.PutUint16(p[pgdata.PageUpperOffset:], 0x1000)
		binary.LittleEndian.PutUint16(p[pgdata.PageChecksumOffset:], pgdata.PageChecksum(p, seg*131072+uint32(i)))
		out = append(out, p...)
	}
	return out
}

// TestVerifyPages: a page whose bytes changed after its checksum was set
// is named with its file and block; nothing is judged in a cluster
// without data checksums, nor a page changed after the backup started.
func TestVerifyPages(t *testing.T) {
	tarKey := backup.TarKey(name, "part_001.tar")
	ctlKey := backup.TarKey(name, "pg_control.tar")
	const start = 2*seg1 + 0x28
	pages := 3
	setup := func(checksums bool, lsn uint64, damage func(p []byte)) fixture {
		f := newBackup(t)
		rel := relation(pages, 0, lsn)
		damage(rel)
		f.put(tarKey, tarFiles(t, tarFile{"/base/5/1259", rel}, tarFile{"/PG_VERSION", []byte("15\n")}))
		f.put(ctlKey, tarFiles(t, tarFile{"/global/pg_control", controlFile(checksums)}))
		return f
	}
	flip := func(p []byte) { p[8192+300] ^= 1 }
	r := setup(true, 0x100, func([]byte) {}).verify()
	if r.Status != "OK" || r.Pages != 3 {
		t.Errorf("clean: %+v\n%s", r, faults(r))
	}
	r = setup(true, 0x100, flip).verify()
	if got, want := faults(r), tarKey+": base/5/1259 block 1: page checksum does not match\n"; got != want {
		t.Errorf("one bad page: faults\n%s want\n%s", got, want)
	}
	r = setup(false, 0x100, flip).verify()
	if r.Status != "OK" || r.Pages != 0 {
		t.Errorf("checksums off: %+v\n%s", r, faults(r))
	}
	r = setup(true, start, flip).verify()
	if r.Status != "OK" {
		t.Errorf("page changed during the backup judged: %s", faults(r))
	}
	// Every page bad: ten lines, then one counting the rest.
	pages = 12
	r = setup(true, 0x100, func(p []byte) {
		for i := 0; i < len(p); i += 8192 {
			p[i+300] ^= 1
		}
	}).verify()
	if len(r.Faults) != 11 || !strings.HasSuffix(faults(r), "base/5/1259: 2 more pages whose checksum does not match\n") {
		t.Errorf("all bad: %s", faults(r))
	}
	// A pg_control that does not parse is named.
	f := setup(true, 0x100, func([]byte) {})
	bad := controlFile(true)
	bad[100] ^= 1
	f.put(ctlKey, tarFiles(t, tarFile{"/global/pg_control", bad}))
	if got := faults(f.verify()); !strings.Contains(got, ctlKey+": pg_control: CRC") {
		t.Errorf("damaged pg_control: %s", got)
	}
}

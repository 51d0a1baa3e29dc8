package backupcheck

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
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
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		body := []byte("content of " + m)
		if err := tw.WriteHeader(&tar.Header{Name: m, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
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
	f.put(backup.TarKey(name, "pg_control.tar"), tarOf(t, "/global/pg_control"))
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

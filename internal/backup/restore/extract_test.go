package restore

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/wal"
)

// entry is one tar member for tests.
type entry struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o600
			if typ == tar.TypeDir {
				mode = 0o700
			}
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: mode, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sandbox is a restore destination, a tablespace location and a directory
// that must stay untouched, side by side.
type sandbox struct {
	base, dest, ts, outside string
}

func newSandbox(t testing.TB) sandbox {
	base := t.TempDir()
	s := sandbox{base, filepath.Join(base, "dest"), filepath.Join(base, "ts"), filepath.Join(base, "outside")}
	if err := os.Mkdir(s.outside, 0o700); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s sandbox) spec() *backup.TablespaceSpec {
	return &backup.TablespaceSpec{BasePrefix: s.dest, Tablespaces: []backup.Tablespace{{Name: "16384", Location: s.ts, Link: "pg_tblspc/16384"}}}
}

func (s sandbox) extractor(t testing.TB) *Extractor {
	t.Helper()
	e, err := NewExtractor(s.dest, ExtractorOptions{Tablespaces: s.spec(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// checkConfined fails if anything exists outside dest and ts, or if a
// symlink other than the tablespace link or a file with special mode bits
// appeared.
func (s sandbox) checkConfined(t testing.TB) {
	t.Helper()
	err := filepath.WalkDir(s.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case p == s.base || p == s.outside:
			return nil
		case strings.HasPrefix(p, s.outside+"/"):
			t.Errorf("written outside the restore: %s", p)
		case p != s.dest && p != s.ts && !strings.HasPrefix(p, s.dest+"/") && !strings.HasPrefix(p, s.ts+"/"):
			t.Errorf("unexpected path %s", p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 && p != filepath.Join(s.dest, "pg_tblspc", "16384") {
			t.Errorf("unexpected symlink %s", p)
		}
		if info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky|fs.ModeDevice|fs.ModeNamedPipe|fs.ModeCharDevice) != 0 {
			t.Errorf("special file or mode bits on %s: %v", p, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	cases := map[string][]entry{
		"dot-dot":              {{name: "../../etc/x", body: "x"}},
		"dot-dot-inside":       {{name: "base/../../x", body: "x"}},
		"absolute-escaping":    {{name: "/../../outside/x", body: "x"}},
		"symlink-out":          {{name: "evil", typ: tar.TypeSymlink, link: "/etc"}},
		"symlink-relative-out": {{name: "base/evil", typ: tar.TypeSymlink, link: "../../outside"}},
		"symlink-inside":       {{name: "evil", typ: tar.TypeSymlink, link: "base"}},
		"symlink-then-write": {
			{name: "evil", typ: tar.TypeSymlink, link: "../outside"},
			{name: "evil/x", body: "x"},
		},
		"unknown-tablespace-link": {{name: "pg_tblspc/999", typ: tar.TypeSymlink, link: "../outside"}},
		"hard-link":               {{name: "x", typ: tar.TypeLink, link: "/etc/passwd"}},
		"char-device":             {{name: "null", typ: tar.TypeChar}},
		"fifo":                    {{name: "fifo", typ: tar.TypeFifo}},
		"file-over-root":          {{name: ".", body: "x"}},
		"file-over-tablespace":    {{name: "/pg_tblspc/16384", body: "x"}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			e := s.extractor(t)
			data := makeTar(t, entries...)
			if err := e.Extract(bytes.NewReader(data), make([]byte, 512)); err == nil {
				t.Errorf("hostile tar %q extracted without error", name)
			}
			s.checkConfined(t)
		})
	}
}

func TestExtractRefusesWritingThroughSymlink(t *testing.T) {
	s := newSandbox(t)
	e := s.extractor(t)
	// A symlink that got into the destination by other means: writes
	// through it must not leave the destination.
	if err := os.MkdirAll(filepath.Join(s.dest, "base"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.outside, filepath.Join(s.dest, "base", "1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(s.outside, "f"), filepath.Join(s.dest, "file")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"/base/1/2619", "/file", "/base/1/sub/x"} {
		err := e.Extract(bytes.NewReader(makeTar(t, entry{name: n, body: "data"})), make([]byte, 512))
		if err == nil {
			t.Errorf("wrote %s through a symlink leaving the destination", n)
		}
	}
	if ents, _ := os.ReadDir(s.outside); len(ents) != 0 {
		t.Errorf("outside dir got %d entries", len(ents))
	}
}

func TestExtractLayout(t *testing.T) {
	s := newSandbox(t)
	e := s.extractor(t)
	part := makeTar(t,
		entry{name: "/", typ: tar.TypeDir, mode: 0o700},
		entry{name: "/PG_VERSION", body: "15\n"},
		entry{name: "/base/5", typ: tar.TypeDir, mode: 0o750},
		entry{name: "/base/5/16384", body: strings.Repeat("x", 10000), mode: 0o640},
		entry{name: "/base/5/suid", body: "s", mode: 0o4755},
		entry{name: "/pg_tblspc/16384/PG_15_202209061/5", typ: tar.TypeDir},
		entry{name: "/pg_tblspc/16384/PG_15_202209061/5/16399", body: "tablespace data"},
		// PostgreSQL's own tars carry the link itself; it is made from the
		// spec instead.
		entry{name: "pg_tblspc/16384", typ: tar.TypeSymlink, link: "/elsewhere"},
		entry{name: "/pg_tblspc", typ: tar.TypeDir},
		entry{name: "/pg_wal", typ: tar.TypeDir},
	)
	control := makeTar(t, entry{name: "/global/pg_control", body: "control"})
	label := makeTar(t, entry{name: "backup_label", body: "label"}, entry{name: "tablespace_map", body: "16384 /x\n"})
	buf := make([]byte, 100) // smaller than a file: the copy loops
	for _, data := range [][]byte{part, control} {
		if err := e.Extract(bytes.NewReader(data), buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.dest, "global", "pg_control")); err == nil {
		t.Error("pg_control in place before the restore finished")
	}
	if err := e.Extract(bytes.NewReader(label), buf); err != nil {
		t.Fatal(err)
	}
	if err := e.Finish(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"dest/PG_VERSION":                              "15\n",
		"dest/base/5/16384":                            strings.Repeat("x", 10000),
		"dest/global/pg_control":                       "control",
		"dest/backup_label":                            "label",
		"dest/tablespace_map":                          "16384 /x\n",
		"ts/PG_15_202209061/5/16399":                   "tablespace data",
		"dest/pg_tblspc/16384/PG_15_202209061/5/16399": "tablespace data",
	}
	for p, body := range want {
		got, err := os.ReadFile(filepath.Join(s.base, p))
		if err != nil || string(got) != body {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
	modes := map[string]fs.FileMode{
		"dest/base/5/16384": 0o640, "dest/base/5/suid": 0o755, "dest/base/5": fs.ModeDir | 0o750, "dest": fs.ModeDir | 0o700,
	}
	for p, m := range modes {
		fi, err := os.Stat(filepath.Join(s.base, p))
		if err != nil || fi.Mode() != m {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, m)
		}
	}
	if l, err := os.Readlink(filepath.Join(s.dest, "pg_tblspc", "16384")); err != nil || l != s.ts {
		t.Errorf("tablespace link -> %q, %v", l, err)
	}
	if files, bytes := e.Stats(); files != 7 || bytes != int64(3+10000+1+15+7+5+9) {
		t.Errorf("stats %d files %d bytes", files, bytes)
	}
	s.checkConfined(t)
}

func TestExtractSkipAndFinishWithoutPgControl(t *testing.T) {
	s := newSandbox(t)
	e, err := NewExtractor(s.dest, ExtractorOptions{Skip: []string{"tablespace_map"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Extract(bytes.NewReader(makeTar(t, entry{name: "tablespace_map", body: "x"}, entry{name: "backup_label", body: "y"})), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dest, "tablespace_map")); err == nil {
		t.Error("skipped member restored")
	}
	if err := e.Finish(); err == nil || !strings.Contains(err.Error(), "pg_control") {
		t.Errorf("Finish without pg_control: %v", err)
	}
}

func TestExtractTruncatedTar(t *testing.T) {
	s := newSandbox(t)
	e := s.extractor(t)
	data := makeTar(t, entry{name: "/base/1/1", body: strings.Repeat("y", 5000)})
	if err := e.Extract(bytes.NewReader(data[:2048]), nil); err == nil {
		t.Error("truncated tar extracted without error")
	}
}

func TestNewExtractorRefusesNonEmpty(t *testing.T) {
	s := newSandbox(t)
	if err := os.MkdirAll(filepath.Join(s.dest, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExtractor(s.dest, ExtractorOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty destination: %v", err)
	}
	file := filepath.Join(s.base, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := NewExtractor(file, ExtractorOptions{}); err == nil {
		t.Error("a file accepted as destination")
	}
	// A tablespace location that holds data is refused too.
	if err := os.MkdirAll(filepath.Join(s.ts, "PG_15"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExtractor(filepath.Join(s.base, "dest2"), ExtractorOptions{Tablespaces: s.spec()}); err == nil || !strings.Contains(err.Error(), "--restore-spec") {
		t.Errorf("non-empty tablespace location: %v", err)
	}
}

func TestCleanMemberName(t *testing.T) {
	good := map[string]string{"/base/1/2": "base/1/2", "backup_label": "backup_label", "/": ".", "//x//y/": "x/y", "a/../b": "b"}
	for in, want := range good {
		if got, err := CleanMemberName(in); err != nil || got != want {
			t.Errorf("CleanMemberName(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "..", "/..", "../x", "/a/../../x", "x\x00"} {
		if got, err := CleanMemberName(in); err == nil {
			t.Errorf("CleanMemberName(%q) = %q, accepted", in, got)
		}
	}
}

// FuzzExtract feeds arbitrary bytes as a tar stream: whatever they hold,
// nothing may be written outside the destination and the tablespace.
// Each run touches the file system, so minimizing is slow: run it with
// -fuzzminimizetime=1s.
func FuzzExtract(f *testing.F) {
	f.Add(makeTar(f, entry{name: "/base/1/1", body: "x"}, entry{name: "/pg_tblspc/16384/PG/1", body: "y"}))
	f.Add(makeTar(f, entry{name: "evil", typ: tar.TypeSymlink, link: "../outside"}, entry{name: "evil/x", body: "x"}))
	f.Add(makeTar(f, entry{name: "../outside/x", body: "x"}))
	f.Add(makeTar(f, entry{name: "/pg_tblspc/16384/../../outside/x", body: "x"}))
	f.Add(makeTar(f, entry{name: "pg_tblspc/16384", typ: tar.TypeDir}, entry{name: "/global/pg_control", body: "c", mode: 0o6777}))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		e, err := NewExtractor(s.dest, ExtractorOptions{Tablespaces: s.spec(), NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		_ = e.Extract(bytes.NewReader(data), make([]byte, 256))
		_ = e.Finish()
		s.checkConfined(t)
	})
}

// A symlink planted at a member's name during the restore, even one that
// stays inside the destination, is refused, not written through.
func TestExtractRefusesPlantedSymlinkInside(t *testing.T) {
	s := newSandbox(t)
	e := s.extractor(t)
	buf := make([]byte, 4096)
	if err := e.Extract(strings.NewReader(string(makeTar(t, entry{name: "/victim", body: "keep"}))), buf); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("victim", filepath.Join(s.dest, "PG_VERSION")); err != nil {
		t.Fatal(err)
	}
	err := e.Extract(strings.NewReader(string(makeTar(t, entry{name: "/PG_VERSION", body: "15\n"}))), buf)
	if err == nil || !strings.Contains(err.Error(), "PG_VERSION") {
		t.Errorf("error %v, want one naming PG_VERSION", err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.dest, "victim")); string(b) != "keep" {
		t.Errorf("written through a planted symlink: victim is %q", b)
	}
}

// A catch-up goes into an existing, stopped data directory only.
func TestExistingExtractorChecks(t *testing.T) {
	dest := t.TempDir()
	if _, err := NewExtractor(dest, ExtractorOptions{Existing: true}); err == nil || !strings.Contains(err.Error(), "not a PostgreSQL data directory") {
		t.Fatalf("empty directory: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dest, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "global", "pg_control"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "postmaster.pid"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExtractor(dest, ExtractorOptions{Existing: true}); err == nil || !strings.Contains(err.Error(), "postmaster.pid") {
		t.Fatalf("running server: %v", err)
	}
	if err := os.Remove(filepath.Join(dest, "postmaster.pid")); err != nil {
		t.Fatal(err)
	}
	e, err := NewExtractor(dest, ExtractorOptions{Existing: true})
	if err != nil {
		t.Fatalf("stopped data directory: %v", err)
	}
	e.Close()
}

// A catch-up removes from the standby's pg_wal, through a pg_wal symlink
// too, the WAL segments before the one its backup_label starts in (unless
// still to be archived) and the WAL summaries (PostgreSQL 17+), and
// nothing else: the standby never reads them again, and its WAL summarizer
// would otherwise wait forever for the WAL between them and the catch-up.
func TestCatchupFinishDropsStaleWAL(t *testing.T) {
	dest, wal := t.TempDir(), t.TempDir()
	for _, d := range []string{filepath.Join(dest, "global"), filepath.Join(wal, "summaries"), filepath.Join(wal, "archive_status")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(wal, filepath.Join(dest, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{ // path under wal: kept
		"summaries/00000001000000000100002800000000022A3F10.summary": false,
		"summaries/00000001000000000022A3F100000000030000D8.summary": false,
		"summaries/notes.txt":                           true,
		"000000010000000000000002":                      false,
		"000000010000000000000003":                      false,
		"000000010000000000000004":                      true, // not archived yet
		"archive_status/000000010000000000000004.ready": true,
		"archive_status/000000010000000000000003.done":  true,
		"00000001000000000000000B":                      true, // the catch-up starts here
		"00000001000000000000000C":                      true,
		"00000002.history":                              true,
		"000000010000000000000001.partial":              true,
	}
	for rel := range files {
		if err := os.WriteFile(filepath.Join(wal, rel), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dest, "global", "pg_control"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := NewExtractor(dest, ExtractorOptions{Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	label := "START WAL LOCATION: 0/B000028 (file 00000001000000000000000B)\nCHECKPOINT LOCATION: 0/B000080\n"
	if err := e.Extract(bytes.NewReader(makeTar(t, entry{name: "/global/pg_control", body: "new"}, entry{name: "/backup_label", body: label})), make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if err := e.Finish(); err != nil {
		t.Fatal(err)
	}
	for rel, kept := range files {
		if _, err := os.Stat(filepath.Join(wal, rel)); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v (%v)", rel, err == nil, kept, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "global", "pg_control")); string(b) != "new" {
		t.Errorf("pg_control %q", b)
	}
}

func TestLabelStartSegment(t *testing.T) {
	for label, want := range map[string]string{
		"START WAL LOCATION: 0/B000028 (file 00000001000000000000000B)\nCHECKPOINT LOCATION: 0/B000080\n": "00000001000000000000000B",
		"START WAL LOCATION: 0/B000028\n":                         "",
		"START WAL LOCATION: 0/B000028 (file ../../etc/passwd)\n": "",
		"CHECKPOINT LOCATION: 0/B000080\n":                        "",
	} {
		got, ok := labelStartSegment([]byte(label))
		if got != want && ok || ok != (want != "") {
			t.Errorf("%q: %q %v, want %q", label, got, ok, want)
		}
	}
}

// labelStartSegment reads a backup_label from the sender: whatever it
// returns as found is a plain segment name, never a path.
func FuzzLabelStartSegment(f *testing.F) {
	f.Add([]byte("START WAL LOCATION: 0/B000028 (file 00000001000000000000000B)\nCHECKPOINT LOCATION: 0/B000080\n"))
	f.Add([]byte("START WAL LOCATION: 0/B000028 (file ../00000001000000000000000B)\n"))
	f.Add([]byte("START WAL LOCATION: (file )\n"))
	f.Fuzz(func(t *testing.T, label []byte) {
		if name, ok := labelStartSegment(label); ok && !wal.IsSegmentName(name) {
			t.Fatalf("%q taken as a segment name", name)
		}
	})
}

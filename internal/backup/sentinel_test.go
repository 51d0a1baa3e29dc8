package backup

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixturesDir locates WAL-G's fixture archives or skips the test.
func fixturesDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TUSK_FIXTURES")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "fixtures", "walg")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Skipf("WAL-G fixtures not found at %s (set TUSK_FIXTURES): skipping fixture test", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// fixtureFiles returns every file under the fixtures named like suffix.
func fixtureFiles(t *testing.T, suffix string) []string {
	t.Helper()
	root := fixturesDir(t)
	var out []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() && strings.HasSuffix(p, suffix) && strings.Contains(p, "/storage/") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no %s in fixtures %s", suffix, root)
	}
	return out
}

// jsonEqual compares documents as generic JSON values, with numbers kept
// exact (system identifiers exceed float64 precision).
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	dec := func(x []byte) any {
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode %s: %v", x, err)
		}
		return v
	}
	return reflect.DeepEqual(dec(a), dec(b))
}

func TestSentinelFixturesRoundTrip(t *testing.T) {
	for _, p := range fixtureFiles(t, SentinelSuffix) {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSentinel(raw)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if s.Version != 2 || s.LSN == 0 || s.FinishLSN <= s.LSN || s.SystemIdentifier == nil || s.DateFmt != DateFmt {
			t.Errorf("%s: implausible sentinel %+v", p, s)
		}
		if *s.SystemIdentifier < 1<<53 {
			t.Errorf("%s: system identifier %d lost precision?", p, *s.SystemIdentifier)
		}
		enc, err := EncodeSentinel(s)
		if err != nil {
			t.Fatal(err)
		}
		// WAL-G's field order is ours, so the bytes are identical.
		if !bytes.Equal(bytes.TrimSpace(raw), enc) {
			t.Errorf("%s: re-encoded sentinel differs\n got %s\nwant %s", p, enc, raw)
		}
		name, _ := NameFromSentinelKey(Prefix + filepath.Base(p))
		n, err := ParseName(name)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if n.IsDelta() != s.IsDelta() {
			t.Errorf("%s: name delta %v, sentinel delta %v", p, n.IsDelta(), s.IsDelta())
		}
	}
}

func TestMetadataFixturesRoundTrip(t *testing.T) {
	for _, p := range fixtureFiles(t, "/"+MetadataFileName) {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseMetadata(raw)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		enc, err := EncodeMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bytes.TrimSpace(raw), enc) {
			t.Errorf("%s: re-encoded metadata differs\n got %s\nwant %s", p, enc, raw)
		}
		// The sentinel next to it carries the same facts.
		dir := filepath.Dir(p)
		sraw, err := os.ReadFile(dir + SentinelSuffix)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSentinel(sraw)
		if err != nil {
			t.Fatal(err)
		}
		fromS, _ := EncodeMetadata(MetadataFromSentinel(s))
		if !bytes.Equal(fromS, enc) {
			t.Errorf("%s: metadata built from sentinel differs\n got %s\nwant %s", p, fromS, enc)
		}
	}
}

func TestFilesMetadataFixturesRoundTrip(t *testing.T) {
	for _, p := range fixtureFiles(t, "/"+FilesMetadataFileName) {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fm, err := ParseFilesMetadata(raw)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(fm.Files) < 900 || len(fm.TarFileSets) == 0 || len(fm.DatabasesByNames) == 0 {
			t.Errorf("%s: %d files, %d tar sets, %d databases", p, len(fm.Files), len(fm.TarFileSets), len(fm.DatabasesByNames))
		}
		var buf bytes.Buffer
		if err := EncodeFilesMetadata(&buf, fm); err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, raw, buf.Bytes()) {
			t.Errorf("%s: re-encoded files metadata is not equivalent", p)
		}
	}
}

func TestSentinelTablespaceSpec(t *testing.T) {
	raw := []byte(`{"LSN":1,"PgVersion":150018,"FinishLSN":2,"UncompressedSize":0,"CompressedSize":0,` +
		`"Spec":{"16384":{"loc":"/tmp/t","link":"pg_tblspc/16384"},"base_prefix":"/data/","tablespaces":["16384"]},` +
		`"ChkpNum":null,"Version":2,"StartTime":"2026-11-25T16:43:07.784119Z","FinishTime":"2026-11-25T16:43:09.481829Z",` +
		`"DateFmt":"%Y-%m-%dT%H:%M:%S.%fZ","Hostname":"h","DataDir":"/data","IsPermanent":true}`)
	s, err := ParseSentinel(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := &TablespaceSpec{BasePrefix: "/data", Tablespaces: []Tablespace{{Name: "16384", Location: "/tmp/t", Link: "pg_tblspc/16384"}}}
	if !reflect.DeepEqual(s.Spec, want) {
		t.Fatalf("spec %+v, want %+v", s.Spec, want)
	}
	enc, _ := EncodeSentinel(s)
	if !strings.Contains(string(enc), `"Spec":{"16384":{"loc":"/tmp/t","link":"pg_tblspc/16384"},"base_prefix":"/data","tablespaces":["16384"]}`) {
		t.Errorf("spec encoding: %s", enc)
	}
}

func TestSentinelLegacy(t *testing.T) {
	// WAL-E style lowercase spec, old DeltaFromLSN, embedded files metadata,
	// null LSN and null user data.
	raw := []byte(`{"LSN":null,"DeltaFromLSN":33554472,"DeltaFrom":"base_000000010000000000000002",` +
		`"DeltaFullName":"base_000000010000000000000002","DeltaCount":1,"FinishLSN":5,` +
		`"spec":{"base_prefix":"/d","tablespaces":[]},"UserData":null,` +
		`"Files":{"/base/1/1":{"IsIncremented":true,"IsSkipped":false,"MTime":"2020-01-01T00:00:00Z"}},` +
		`"TarFileSets":{"part_001.tar.lz4":["/base/1/1"]}}`)
	s, err := ParseSentinel(raw)
	if err != nil {
		t.Fatal(err)
	}
	if s.LSN != 0 || s.DeltaLSN != 33554472 || !s.IsDelta() || s.Spec == nil || s.Spec.BasePrefix != "/d" || s.UserData != nil {
		t.Errorf("legacy sentinel read as %+v", s)
	}
	if s.Legacy == nil || !s.Legacy.Files["/base/1/1"].IsIncremented || len(s.Legacy.TarFileSets["part_001.tar.lz4"]) != 1 {
		t.Errorf("legacy files metadata: %+v", s.Legacy)
	}
	enc, _ := EncodeSentinel(s)
	if strings.Contains(string(enc), "Files") || strings.Contains(string(enc), "UserData") {
		t.Errorf("legacy fields written back: %s", enc)
	}
}

func TestSentinelInvalid(t *testing.T) {
	for _, raw := range []string{
		`{"DeltaFrom":"base_000000010000000000000002"}`,
		`{"Spec":{"tablespaces":[]}}`,
		`{"Spec":{"base_prefix":"/d","tablespaces":["1"]}}`,
		`{"Spec":{"base_prefix":"/d","tablespaces":["../x"],"../x":{"loc":"/a","link":"pg_tblspc/../x"}}}`,
		`{"Spec":{"base_prefix":"/d","tablespaces":["1"],"1":{"loc":"rel","link":"pg_tblspc/1"}}}`,
		`{"LSN":"12"}`,
		`{"LSN":12,"DeltaFrom":""}`,
		`[]`,
	} {
		if _, err := ParseSentinel([]byte(raw)); err == nil {
			t.Errorf("ParseSentinel(%s) accepted", raw)
		}
	}
}

func TestUserDataEqual(t *testing.T) {
	cases := []struct {
		a, b string
		eq   bool
	}{
		{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1.0}`, true},
		{`{"a":1}`, `{"a":2}`, false},
		{`"x"`, `"x"`, true},
		{``, `null`, true},
		{``, `{}`, false},
	}
	for _, c := range cases {
		eq, err := UserDataEqual(json.RawMessage(c.a), json.RawMessage(c.b))
		if err != nil || eq != c.eq {
			t.Errorf("UserDataEqual(%s, %s) = %v, %v", c.a, c.b, eq, err)
		}
	}
}

func FuzzParseSentinel(f *testing.F) {
	f.Add([]byte(`{"LSN":33554472,"PgVersion":150018,"FinishLSN":33554688,"SystemIdentifier":7712150543797742289,"ChkpNum":null,"Version":2}`))
	f.Add([]byte(`{"LSN":null,"DeltaFromLSN":1,"DeltaFrom":"b","DeltaFullName":"b","DeltaCount":1,"spec":{"base_prefix":"/d","tablespaces":["1"],"1":{"loc":"/x","link":"pg_tblspc/1"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSentinel(data)
		if err != nil {
			return
		}
		enc, err := EncodeSentinel(s)
		if err != nil {
			t.Fatalf("encode parsed sentinel: %v", err)
		}
		s2, err := ParseSentinel(enc)
		if err != nil {
			t.Fatalf("re-parse %s: %v", enc, err)
		}
		enc2, _ := EncodeSentinel(s2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(`{"start_time":"2026-11-25T16:42:56.418425Z","pg_version":150018,"start_lsn":33554472,"system_identifier":7712150543797742289,"user_data":{"a":1}}`))
	f.Add([]byte(`{"user_data":null,"system_identifier":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMetadata(data)
		if err != nil {
			return
		}
		enc, err := EncodeMetadata(m)
		if err != nil {
			// Only a time outside what JSON can express may fail.
			if !strings.Contains(err.Error(), "Time.MarshalJSON") {
				t.Fatalf("encode parsed metadata: %v", err)
			}
			return
		}
		m2, err := ParseMetadata(enc)
		if err != nil {
			t.Fatalf("re-parse %s: %v", enc, err)
		}
		if enc2, _ := EncodeMetadata(m2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzParseTablespaceSpec(f *testing.F) {
	f.Add([]byte(`{"16384":{"loc":"/tmp/t","link":"pg_tblspc/16384"},"base_prefix":"/d","tablespaces":["16384"]}`))
	f.Add([]byte(`{"base_prefix":"/d/","tablespaces":["1","1"],"1":{"loc":"/a","link":"pg_tblspc/1"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseTablespaceSpec(data)
		if err != nil {
			return
		}
		// A valid spec never names a link or location that could leave
		// the data directory's pg_tblspc or be relative.
		for _, ts := range s.Tablespaces {
			if ts.Link != "pg_tblspc/"+ts.Name || strings.Contains(ts.Name, "/") || ts.Name == ".." || !strings.HasPrefix(ts.Location, "/") {
				t.Fatalf("unsafe tablespace accepted: %+v", ts)
			}
		}
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ParseTablespaceSpec(enc)
		if err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip %s: %+v, %v", enc, s2, err)
		}
	})
}

func FuzzParseFilesMetadata(f *testing.F) {
	f.Add([]byte(`{"Files":{"/base/1/1":{"IsIncremented":false,"IsSkipped":true,"MTime":"2026-11-25T16:43:07.140797357Z","UpdatesCount":0}},"TarFileSets":{"part_001.tar.lz4":["/base/1/1"]},"DatabasesByNames":{"postgres":{"oid":5,"tables_new":{"public.t":{"oid":1,"relfilenode":2,"subtables":{"public.p":{"oid":3,"relfilenode":4}}}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fm, err := ParseFilesMetadata(data)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := EncodeFilesMetadata(&b, fm); err != nil {
			if strings.Contains(err.Error(), "Time.MarshalJSON") {
				return
			}
			t.Fatalf("encode parsed files metadata: %v", err)
		}
		if _, err := ParseFilesMetadata(b.Bytes()); err != nil {
			t.Fatalf("re-parse %s: %v", b.Bytes(), err)
		}
	})
}

// walgCatchupSentinel is a sentinel WAL-G v3.0.9's catchup-push wrote in
// catchup_005/ (host name and data directory replaced): its base is the
// standby, which has no name, so DeltaFrom and DeltaFullName are present
// and empty. WAL-G's catchup-fetch applies
// page increments only when DeltaFrom is present.
const walgCatchupSentinel = `{"LSN":318767144,"DeltaLSN":301989984,"DeltaFrom":"","DeltaFullName":"","DeltaCount":1,"PgVersion":150018,"FinishLSN":318767416,"SystemIdentifier":7716589983213013434,"UncompressedSize":182874521,"CompressedSize":22164175,"DataCatalogSize":183023638,"ChkpNum":null,"Version":2,"StartTime":"2026-12-07T16:32:14.670427Z","FinishTime":"2026-12-07T16:32:16.978008Z","DateFmt":"%Y-%m-%dT%H:%M:%S.%fZ","Hostname":"db1","DataDir":"/var/lib/postgresql/15/main","IsPermanent":false}`

func TestSentinelUnnamedBase(t *testing.T) {
	s, err := ParseSentinel([]byte(walgCatchupSentinel))
	if err != nil {
		t.Fatal(err)
	}
	if !s.UnnamedBase || s.IsDelta() || s.DeltaLSN != 301989984 || s.DeltaCount != 1 {
		t.Errorf("WAL-G's catch-up sentinel read as %+v", s)
	}
	enc, err := EncodeSentinel(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(enc) != walgCatchupSentinel {
		t.Errorf("re-encoded catch-up sentinel differs\n got %s\nwant %s", enc, walgCatchupSentinel)
	}

	// A user data string that looks like the keys does not move them.
	s.UserData = json.RawMessage(`",\"DeltaCount\":"`)
	enc, err = EncodeSentinel(s)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(enc), `"DeltaFrom":""`); n != 1 || !strings.Contains(string(enc), `"DeltaFullName":"","DeltaCount":1,`) {
		t.Errorf("catch-up sentinel with user data: %s", enc)
	}

	// Without the flag, an empty base name is left out (a full backup).
	full := &Sentinel{LSN: 1, Version: SentinelVersion}
	if enc, _ := EncodeSentinel(full); strings.Contains(string(enc), "DeltaFrom") {
		t.Errorf("full backup sentinel names a base: %s", enc)
	}
	for _, bad := range []*Sentinel{
		{LSN: 2, UnnamedBase: true, DeltaCount: 1},                                                          // no DeltaLSN
		{LSN: 2, UnnamedBase: true, DeltaLSN: 1},                                                            // no DeltaCount
		{LSN: 2, UnnamedBase: true, DeltaLSN: 1, DeltaCount: 1, DeltaFrom: "base_000000010000000000000002"}, // named
	} {
		if _, err := EncodeSentinel(bad); err == nil {
			t.Errorf("EncodeSentinel(%+v) accepted", bad)
		}
	}
}

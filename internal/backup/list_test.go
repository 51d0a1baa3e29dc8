package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

// mtimeStore reports chosen modification times for some keys, standing in
// for the storage state WAL-G listed when the fixtures were made (a copied
// fixture carries the copy's mtimes).
type mtimeStore struct {
	storage.Storage
	mtimes map[string]time.Time
}

func (s mtimeStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return s.Storage.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if t, ok := s.mtimes[o.Key]; ok {
			o.ModTime = t
		}
		return fn(o)
	})
}

func (s mtimeStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	o, err := s.Storage.Stat(ctx, key)
	if t, ok := s.mtimes[key]; ok && err == nil {
		o.ModTime = t
	}
	return o, err
}

// fixtureStore opens a fixture's storage read-only, with its sentinels'
// times taken from expected/backup-list-detail.json.
func fixtureStore(t *testing.T, fixDir string) (storage.Storage, []map[string]any) {
	t.Helper()
	st, err := file.New(filepath.Join(fixDir, "storage"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(fixDir, "expected", "backup-list-detail.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp []map[string]any
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	mt := map[string]time.Time{}
	for _, e := range exp {
		tm, err := time.Parse(time.RFC3339Nano, e["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		mt[SentinelKey(e["backup_name"].(string))] = tm
	}
	return mtimeStore{st, mt}, exp
}

// backupFixtures lists fixture dirs that hold base backups.
func backupFixtures(t *testing.T) []string {
	root := fixturesDir(t)
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(root, e.Name(), "expected", "backup-list.txt")); err == nil {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	if len(out) < 4 {
		t.Fatalf("expected at least 4 fixtures with backups in %s, found %d", root, len(out))
	}
	return out
}

// normalise replaces the generator's work dir as the fixtures' expected
// files do: after rendering, so column widths stay those of the real path.
func normalise(s string, details []Detail) string {
	for _, d := range details {
		if wd, ok := strings.CutSuffix(d.Meta.DataDir, "/pgdata"); ok && wd != "" {
			s = strings.ReplaceAll(s, wd, "<generator-workdir>")
		}
	}
	return s
}

func TestBackupListFixtures(t *testing.T) {
	ctx := context.Background()
	for _, dir := range backupFixtures(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			st, exp := fixtureStore(t, dir)
			infos, err := List(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			ds, err := Details(ctx, st, infos)
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != len(exp) {
				t.Fatalf("%d backups, expected %d", len(infos), len(exp))
			}
			check := func(file string, got string) {
				want, err := os.ReadFile(filepath.Join(dir, "expected", file))
				if err != nil {
					t.Fatal(err)
				}
				if got = normalise(got, ds); got != string(want) {
					t.Errorf("%s differs\n got:\n%s\nwant:\n%s", file, got, want)
				}
			}
			var b bytes.Buffer
			if err := WriteList(&b, infos, ListFormat{}); err != nil {
				t.Fatal(err)
			}
			check("backup-list.txt", b.String())
			b.Reset()
			if err := WriteDetails(&b, ds, ListFormat{}); err != nil {
				t.Fatal(err)
			}
			check("backup-list-detail.txt", b.String())
			b.Reset()
			if err := WriteDetails(&b, ds, ListFormat{JSON: true}); err != nil {
				t.Fatal(err)
			}
			check("backup-list-detail.json", b.String())

			latest, err := Latest(ctx, st)
			if err != nil || latest.Name != infos[len(infos)-1].Name {
				t.Errorf("Latest = %+v, %v", latest, err)
			}
		})
	}
}

func TestBackupListPrettyAndEmpty(t *testing.T) {
	mod := time.Date(2022, 12, 12, 12, 12, 58, 0, time.UTC)
	infos := []Info{
		{Name: "base_000000010000000000000002", ModTime: mod, WalFileName: "000000010000000000000002", StorageName: "default"},
		{Name: "base_000000010000000000000004_D_000000010000000000000002", ModTime: mod.Add(10 * time.Hour), WalFileName: "000000010000000000000004", StorageName: "default"},
	}
	var b bytes.Buffer
	if err := WriteList(&b, infos, ListFormat{Pretty: true}); err != nil {
		t.Fatal(err)
	}
	want := `+---+----------------------------------------------------------+--------------------------------+--------------------------+--------------+
| # | BACKUP NAME                                              | MODIFIED                       | WAL FILE NAME            | STORAGE NAME |
+---+----------------------------------------------------------+--------------------------------+--------------------------+--------------+
| 0 | base_000000010000000000000002                            | Monday, 12-Dec-22 12:12:58 UTC | 000000010000000000000002 | default      |
| 1 | base_000000010000000000000004_D_000000010000000000000002 | Monday, 12-Dec-22 22:12:58 UTC | 000000010000000000000004 | default      |
+---+----------------------------------------------------------+--------------------------------+--------------------------+--------------+
`
	if b.String() != want {
		t.Errorf("pretty list:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := WriteList(&b, infos[:1], ListFormat{JSON: true, Pretty: true}); err != nil {
		t.Fatal(err)
	}
	wantJSON := "[\n    {\n        \"backup_name\": \"base_000000010000000000000002\",\n        \"time\": \"2022-12-12T12:12:58Z\",\n" +
		"        \"wal_file_name\": \"000000010000000000000002\",\n        \"storage_name\": \"default\"\n    }\n]\n"
	if b.String() != wantJSON {
		t.Errorf("pretty json:\n%s\nwant:\n%s", b.String(), wantJSON)
	}
	for _, f := range []ListFormat{{}, {Pretty: true}, {JSON: true}, {JSON: true, Pretty: true}} {
		b.Reset()
		if err := WriteList(&b, nil, f); err != nil {
			t.Fatal(err)
		}
		want := ""
		if f.JSON {
			want = "[]\n"
		}
		if b.String() != want {
			t.Errorf("empty list %+v: %q, want %q", f, b.String(), want)
		}
	}
	// Unknown times print as "-"; metadata without start times sorts by
	// sentinel time; user data is printed with sorted keys.
	ds := []Detail{
		{Info: infos[1], Meta: Metadata{UserData: json.RawMessage(`{"b":1,"a":[true]}`)}},
		{Info: infos[0]},
	}
	SortDetails(ds)
	if ds[0].Name != infos[0].Name {
		t.Errorf("details without start time not sorted by modification time: %v", ds)
	}
	b.Reset()
	if err := WriteDetails(&b, ds, ListFormat{JSON: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"user_data":{"a":[true],"b":1}`) || strings.Count(b.String(), "user_data") != 1 {
		t.Errorf("detail json user_data: %s", b.String())
	}
	b.Reset()
	if err := WriteDetails(&b, ds, ListFormat{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "default      -          -  ") {
		t.Errorf("zero times not shown as '-':\n%s", b.String())
	}
}

func TestCatalogSelection(t *testing.T) {
	ctx := context.Background()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Latest(ctx, st); !errors.Is(err, ErrNoBackups) {
		t.Fatalf("Latest on empty storage: %v", err)
	}
	put := func(key, body string) {
		if err := st.Put(ctx, key, strings.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	// Names sort the other way round from their sentinel times: LATEST
	// must follow the times.
	backups := []struct {
		name, userData string
		mtime          time.Time
	}{
		{"base_000000010000000000000009", `{"k":"old"}`, base},
		{"base_000000010000000000000003", `{"k":"new","n":1}`, base.Add(time.Hour)},
		{"base_000000010000000000000005", `{"k":"dup"}`, base.Add(2 * time.Hour)},
		{"base_000000010000000000000006", `{"k":"dup"}`, base.Add(30 * time.Minute)},
	}
	for _, b := range backups {
		put(MetadataKey(b.name), `{"start_time":"2024-05-01T10:00:00Z","user_data":`+b.userData+`}`)
		put(SentinelKey(b.name), `{"LSN":1,"FinishLSN":2,"Version":2}`)
		p := filepath.Join(st.Root(), filepath.FromSlash(SentinelKey(b.name)))
		if err := os.Chtimes(p, b.mtime, b.mtime); err != nil {
			t.Fatal(err)
		}
	}
	// Not sentinels: a nested one and a tar.
	put(Prefix+"base_000000010000000000000009/x"+SentinelSuffix, "{}")
	put(TarKey("base_000000010000000000000009", "part_001.tar.lz4"), "x")

	all, err := List(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range all {
		names = append(names, b.Name)
	}
	if got := strings.Join(names, " "); got != "base_000000010000000000000009 base_000000010000000000000006 base_000000010000000000000003 base_000000010000000000000005" {
		t.Errorf("List order: %s", got)
	}
	if b, err := Find(ctx, st, LatestName); err != nil || b.Name != "base_000000010000000000000005" {
		t.Errorf("LATEST = %v, %v", b.Name, err)
	}
	if b, err := Find(ctx, st, "base_000000010000000000000003"); err != nil || !b.ModTime.Equal(base.Add(time.Hour)) {
		t.Errorf("Find by name = %+v, %v", b, err)
	}
	if _, err := Find(ctx, st, "base_000000010000000000000004"); !errors.Is(err, ErrBackupNotFound) {
		t.Errorf("Find of a missing backup: %v", err)
	}
	if _, err := Find(ctx, st, "../x"); err == nil {
		t.Error("Find accepted a path as a name")
	}
	if b, err := FindByUserData(ctx, st, json.RawMessage(`{"n":1.0,"k":"new"}`)); err != nil || b.Name != "base_000000010000000000000003" {
		t.Errorf("FindByUserData = %v, %v", b.Name, err)
	}
	if _, err := FindByUserData(ctx, st, json.RawMessage(`{"k":"dup"}`)); err == nil || !strings.Contains(err.Error(), "2 backups") {
		t.Errorf("ambiguous user data: %v", err)
	}
	if _, err := FindByUserData(ctx, st, json.RawMessage(`{"k":"none"}`)); !errors.Is(err, ErrBackupNotFound) {
		t.Errorf("unmatched user data: %v", err)
	}
	if _, err := FindByUserData(ctx, st, json.RawMessage(`{bad`)); err == nil {
		t.Error("invalid user data accepted")
	}
}

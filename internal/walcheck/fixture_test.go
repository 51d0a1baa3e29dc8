package walcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

const seg16 = 16 << 20

// mtimeStore reports the sentinel times WAL-G saw when it wrote the
// expected outputs (a fixture checkout carries other mtimes), as the
// backup-list tests do.
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

// fixtureStore opens dir/storage read-only with the sentinel times of
// dir/expected/backup-list-detail.json (when there is one), and returns the
// generator work dirs to normalise.
func fixtureStore(t *testing.T, dir, storageDir string) (storage.Storage, []string) {
	t.Helper()
	st, err := file.New(storageDir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected", "backup-list-detail.json"))
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var exp []struct {
		Name string    `json:"backup_name"`
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	mt := map[string]time.Time{}
	var workdirs []string
	for _, e := range exp {
		mt[backup.SentinelKey(e.Name)] = e.Time
		m, err := backup.FetchMetadata(context.Background(), st, e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if wd, ok := strings.CutSuffix(m.DataDir, "/pgdata"); ok && wd != "" {
			workdirs = append(workdirs, wd)
		}
	}
	return mtimeStore{st, mt}, workdirs
}

// showOutputs renders wal-show's table and JSON for a storage.
func showOutputs(t *testing.T, st storage.Storage, withBackups bool) (tbl, js string) {
	t.Helper()
	ctx := context.Background()
	ix, err := walindex.Build(ctx, st, seg16)
	if err != nil {
		t.Fatal(err)
	}
	var backups []backup.Detail
	if withBackups {
		if backups, err = LoadBackups(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	tls, err := Show(ctx, ix, &wal.Restorer{Store: st, SegmentSize: seg16}, backups)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := WriteShowTable(&a, tls, seg16, withBackups); err != nil {
		t.Fatal(err)
	}
	if err := WriteShowJSON(&b, tls, seg16); err != nil {
		t.Fatal(err)
	}
	return a.String(), b.String()
}

func normalise(s string, workdirs []string) string {
	for _, wd := range workdirs {
		s = strings.ReplaceAll(s, wd, "<generator-workdir>")
	}
	return s
}

func checkFile(t *testing.T, dir, name, got string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(dir, "expected", name))
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs from WAL-G's\n got:\n%s\nwant:\n%s", name, got, want)
	}
}

// nextSegment is the segment after the last one WAL-G's integrity check
// scanned: the cluster's current segment when WAL-G ran.
func nextSegment(t *testing.T, dir string) wal.Segment {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "expected", "wal-verify.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows struct {
		Integrity struct {
			Details []struct {
				End string `json:"end_segment"`
			} `json:"details"`
		} `json:"integrity"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	d := rows.Integrity.Details
	last, err := wal.ParseSegment(d[len(d)-1].End, seg16)
	if err != nil {
		t.Fatal(err)
	}
	return last.Next()
}

// TestFixturesWalShowVerify compares wal-show (table, --detailed-json) and
// wal-verify (table, --json) with what WAL-G printed for each fixture.
func TestFixturesWalShowVerify(t *testing.T) {
	root := testenv.Fixtures(t)
	ctx := context.Background()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "expected", "wal-show.json")); err != nil {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			st, workdirs := fixtureStore(t, dir, filepath.Join(dir, "storage"))
			tbl, js := showOutputs(t, st, true)
			checkFile(t, dir, "wal-show.txt", normalise(tbl, workdirs))
			checkFile(t, dir, "wal-show.json", normalise(js, workdirs))

			ix, err := walindex.Build(ctx, st, seg16)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(ctx, st, ix, &wal.Restorer{Store: st, SegmentSize: seg16}, VerifyOptions{
				Checks:         []Check{CheckIntegrity, CheckTimeline},
				Current:        nextSegment(t, dir),
				UploadingRange: 16,
			})
			if err != nil {
				t.Fatal(err)
			}
			var a, b bytes.Buffer
			if err := WriteVerify(&a, rep); err != nil {
				t.Fatal(err)
			}
			if err := WriteVerifyJSON(&b, rep); err != nil {
				t.Fatal(err)
			}
			checkFile(t, dir, "wal-verify.txt", a.String())
			checkFile(t, dir, "wal-verify.json", b.String())
		})
		compared++
	}
	if compared < 4 {
		t.Fatalf("only %d fixtures with wal-show.json under %s", compared, root)
	}
	// WAL only, no backups, every compression method.
	dir := filepath.Join(root, "wal-only-codecs")
	for _, m := range []string{"lz4", "lzma", "zstd", "brotli", "none"} {
		t.Run("wal-only-codecs/"+m, func(t *testing.T) {
			st, _ := fixtureStore(t, dir, filepath.Join(dir, "storage", m))
			_, js := showOutputs(t, st, true)
			checkFile(t, dir, "wal-show-"+m+".json", js)
		})
	}
	// The retention fixture: eight backups, one permanent.
	dir = filepath.Join(root, "..", "walg-retention")
	if _, err := os.Stat(dir); err == nil {
		t.Run("walg-retention", func(t *testing.T) {
			st, _ := fixtureStore(t, dir, filepath.Join(dir, "storage"))
			_, js := showOutputs(t, st, true)
			checkFile(t, dir, "wal-show.json", js)
		})
	}
}

package retention

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/wal"
)

func retentionFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(testenv.Fixtures(t)), "walg-retention")
	if _, err := os.Stat(filepath.Join(dir, "expected", "objects-before.txt")); err != nil {
		t.Skipf("retention fixture not found at %s", dir)
	}
	return dir
}

func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func keys(t *testing.T, st storage.Storage) []string {
	t.Helper()
	var out []string
	if err := st.List(context.Background(), "", func(o storage.ObjectInfo) error {
		out = append(out, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

var errCrash = errors.New("killed")

// crashingStore deletes one key at a time and stops for good after a
// number of deletions, as a process killed at that point would.
type crashingStore struct {
	storage.Storage
	left int
}

func (c *crashingStore) Delete(ctx context.Context, ks ...string) error {
	for _, k := range ks {
		if c.left == 0 {
			return errCrash
		}
		c.left--
		if err := c.Storage.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// fixtureForms are the fixture's delete cases that delete something.
var fixtureForms = map[string]func(context.Context, *Repo) (*Plan, error){
	"retain-2":      func(_ context.Context, r *Repo) (*Plan, error) { return r.Retain(NoModifier, 2, "") },
	"retain-full-2": func(_ context.Context, r *Repo) (*Plan, error) { return r.Retain(Full, 2, "") },
	"before-full": func(_ context.Context, r *Repo) (*Plan, error) {
		return r.Before(NoModifier, "base_000000010000000000000007")
	},
	"before-find-full-delta": func(_ context.Context, r *Repo) (*Plan, error) {
		return r.Before(FindFull, "base_00000001000000000000000B_D_000000010000000000000009")
	},
	"target-delta": func(ctx context.Context, r *Repo) (*Plan, error) {
		return r.Target(ctx, TargetSpec{Name: "base_000000010000000000000009_D_000000010000000000000007"})
	},
	"target-find-full": func(ctx context.Context, r *Repo) (*Plan, error) {
		return r.Target(ctx, TargetSpec{Name: "base_00000001000000000000000B_D_000000010000000000000009", FindFull: true})
	},
	"everything-force": func(_ context.Context, r *Repo) (*Plan, error) { return r.Everything(true) },
	"garbage":          func(_ context.Context, r *Repo) (*Plan, error) { return r.Garbage(ScopeAll, false) },
}

func runForm(ctx context.Context, st storage.Storage, form func(context.Context, *Repo) (*Plan, error)) error {
	r, err := Load(ctx, st, Options{Confirm: true})
	if err != nil {
		return err
	}
	p, err := form(ctx, r)
	if err != nil {
		return err
	}
	_, err = r.Sweep(ctx, p)
	return err
}

// checkListedIntact fails when a listed backup lacks an object it had, its
// delta base, or a WAL segment between its start and finish.
func checkListedIntact(t *testing.T, st storage.Storage, before []string) {
	t.Helper()
	ctx := context.Background()
	have := map[string]bool{}
	for _, k := range keys(t, st) {
		have[k] = true
	}
	infos, err := backup.List(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, in := range infos {
		listed[in.Name] = true
	}
	for _, in := range infos {
		for _, k := range before {
			if strings.HasPrefix(k, backup.FolderKey(in.Name)) && !have[k] {
				t.Fatalf("backup %s is listed but %s is gone", in.Name, k)
			}
		}
		s, err := backup.FetchSentinel(ctx, st, in.Name)
		if err != nil {
			t.Fatal(err)
		}
		if s.DeltaFrom != "" && !listed[s.DeltaFrom] {
			t.Fatalf("delta %s is listed but its base %s is not", in.Name, s.DeltaFrom)
		}
		seg := uint64(16 << 20)
		for no := uint64(s.LSN) / seg; no <= uint64(s.FinishLSN)/seg; no++ {
			k := wal.Folder + wal.Segment{Timeline: 1, No: no}.Name(16<<20) + ".lz4"
			if slices.Contains(before, k) && !have[k] {
				t.Fatalf("backup %s is listed but its WAL %s is gone", in.Name, k)
			}
		}
	}
}

// A delete killed after any number of deletions leaves every listed backup
// whole, and running it again leaves exactly what an uninterrupted delete
// (WAL-G's) leaves.
func TestDeleteKilledAtEveryPoint(t *testing.T) {
	fixture := retentionFixture(t)
	before := lines(t, filepath.Join(fixture, "expected", "objects-before.txt"))
	ctx := context.Background()
	for name, form := range fixtureForms {
		t.Run(name, func(t *testing.T) {
			after := lines(t, filepath.Join(fixture, "expected", "delete-"+name+".objects-after.txt"))
			total := len(before) - len(after)
			step := 1
			if testing.Short() {
				step = 5
			}
			for n := 0; n < total; n += step {
				st, err := file.New(copyTree(t, filepath.Join(fixture, "storage")))
				if err != nil {
					t.Fatal(err)
				}
				if err := runForm(ctx, &crashingStore{Storage: st, left: n}, form); !errors.Is(err, errCrash) {
					t.Fatalf("killed after %d of %d deletions: err %v", n, total, err)
				}
				checkListedIntact(t, st, before)
				if err := runForm(ctx, st, form); err != nil {
					t.Fatalf("run again after %d deletions: %v", n, err)
				}
				if got := keys(t, st); !slices.Equal(got, after) {
					t.Fatalf("run again after %d deletions left\n%s\nwant\n%s", n, strings.Join(got, "\n"), strings.Join(after, "\n"))
				}
			}
		})
	}
}

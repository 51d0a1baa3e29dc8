package main

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// retentionFixture is WAL-G's retention fixture next to the WAL-G
// fixtures: a repository and WAL-G's decision for every delete form.
func retentionFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(testenv.Fixtures(t)), "walg-retention")
	if _, err := os.Stat(filepath.Join(dir, "expected", "delete-cases.tsv")); err != nil {
		t.Skipf("retention fixture not found at %s", dir)
	}
	return dir
}

type deleteCase struct {
	name                  string
	args                  []string
	dryRunOK, confirmedOK bool
}

func deleteCases(t *testing.T, fixture string) []deleteCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixture, "expected", "delete-cases.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []deleteCase
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if i == 0 {
			continue // header
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("delete-cases.tsv line %d: %d fields", i+1, len(f))
		}
		cases = append(cases, deleteCase{name: f[0], args: strings.Fields(f[1]), dryRunOK: f[2] == "0", confirmedOK: f[3] == "0"})
	}
	return cases
}

// copyTree copies a storage directory to a fresh temp dir.
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

// objectList is every file under root, relative and sorted, with its
// contents (to see that nothing was rewritten either).
func objectList(t *testing.T, root string) (names []string, contents map[string][]byte) {
	t.Helper()
	contents = map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		contents[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names, contents
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func diffLists(want, got []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			b.WriteString("  missing " + w + "\n")
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			b.WriteString("  extra   " + g + "\n")
		}
	}
	return b.String()
}

// Every delete form on WAL-G's own repository: the dry run changes nothing,
// --confirm leaves exactly the objects WAL-G left, a refusal deletes
// nothing, and running the same delete again deletes nothing more.
func TestDeleteMatchesWALG(t *testing.T) {
	fixture := retentionFixture(t)
	before := readLines(t, filepath.Join(fixture, "expected", "objects-before.txt"))
	for _, c := range deleteCases(t, fixture) {
		t.Run(c.name, func(t *testing.T) {
			dir := copyTree(t, filepath.Join(fixture, "storage"))
			env := map[string]string{"WALG_FILE_PREFIX": dir}
			_, origContents := objectList(t, dir)

			_, stderr, err := runTusk(t, env, append([]string{"delete"}, c.args...)...)
			if (err == nil) != c.dryRunOK {
				t.Fatalf("dry run: error %v, WAL-G's exit ok=%v\n%s", err, c.dryRunOK, stderr)
			}
			names, contents := objectList(t, dir)
			if d := diffLists(before, names); d != "" {
				t.Fatalf("dry run changed storage:\n%s", d)
			}
			for k, v := range contents {
				if !bytes.Equal(v, origContents[k]) {
					t.Fatalf("dry run rewrote %s", k)
				}
			}

			_, stderr, err = runTusk(t, env, append(append([]string{"delete"}, c.args...), "--confirm")...)
			if (err == nil) != c.confirmedOK {
				t.Fatalf("--confirm: error %v, WAL-G's exit ok=%v\n%s", err, c.confirmedOK, stderr)
			}
			want := readLines(t, filepath.Join(fixture, "expected", "delete-"+c.name+".objects-after.txt"))
			names, _ = objectList(t, dir)
			if d := diffLists(want, names); d != "" {
				t.Fatalf("objects after delete %v --confirm differ from WAL-G's:\n%s\n%s", c.args, d, stderr)
			}
			if !c.confirmedOK {
				if !strings.Contains(stderr, "ERROR") && err == nil {
					t.Fatalf("refusal not reported")
				}
				return
			}
			if c.args[0] == "target" {
				return // the target is gone: naming it again is an error, as in WAL-G
			}
			if _, stderr, err = runTusk(t, env, append(append([]string{"delete"}, c.args...), "--confirm")...); err != nil {
				t.Fatalf("second run: %v\n%s", err, stderr)
			}
			names, _ = objectList(t, dir)
			if d := diffLists(want, names); d != "" {
				t.Fatalf("second run deleted more:\n%s", d)
			}
		})
	}
}

// backup-mark and backup-mark -i change exactly the files WAL-G changed,
// to the same bytes.
func TestBackupMarkMatchesWALG(t *testing.T) {
	fixture := retentionFixture(t)
	for _, c := range []struct {
		dir  string
		args []string
	}{
		{"backup-mark-base_000000010000000000000003", []string{"backup-mark", "base_000000010000000000000003"}},
		{"backup-unmark-base_00000001000000000000000D", []string{"backup-mark", "-i", "base_00000001000000000000000D"}},
	} {
		t.Run(c.dir, func(t *testing.T) {
			dir := copyTree(t, filepath.Join(fixture, "storage"))
			_, orig := objectList(t, dir)
			if _, stderr, err := runTusk(t, map[string]string{"WALG_FILE_PREFIX": dir}, c.args...); err != nil {
				t.Fatalf("%v: %v\n%s", c.args, err, stderr)
			}
			changedDir := filepath.Join(fixture, "expected", c.dir, "changed")
			_, changed := objectList(t, changedDir)
			names, got := objectList(t, dir)
			if len(names) != len(orig) {
				t.Fatalf("%d objects after, %d before", len(names), len(orig))
			}
			for _, k := range names {
				want, ok := changed[k]
				if !ok {
					want = orig[k]
				}
				if !bytes.Equal(got[k], want) {
					t.Errorf("%s:\n got %s\nwant %s", k, got[k], want)
				}
			}
		})
	}
}

package push

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

// tarMember is one member read back from a stored tar.
type tarMember struct {
	tar  string // tar object name
	hdr  tar.Header
	data []byte
}

// readTars decodes every object under prefix (tar objects) and returns
// their members in order, grouped by object name.
func readTars(t *testing.T, store storage.Storage, prefix string, cr crypt.Crypter) map[string][]tarMember {
	t.Helper()
	ctx := context.Background()
	var keys []string
	if err := store.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	out := map[string][]tarMember{}
	for _, k := range keys {
		m, err := codec.ByExt(codec.ExtOf(k))
		if err != nil || strings.HasSuffix(k, ".tar") {
			m, _ = codec.ByExt("")
		}
		rc, err := store.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		dr, err := pipe.Decode(rc, m, cr)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(dr)
		name := k[strings.LastIndexByte(k, '/')+1:]
		out[name] = []tarMember{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("%s: %s: %v", k, h.Name, err)
			}
			out[name] = append(out[name], tarMember{tar: name, hdr: *h, data: data})
		}
		if err := dr.Close(); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		rc.Close()
	}
	return out
}

func newTestPacker(t *testing.T, store storage.Storage, threshold int64) *packer {
	t.Helper()
	return &packer{store: store, backupName: "base_000000010000000000000002", ext: "lz4",
		threshold: threshold, blockSize: 8192, relSegBlocks: 131072, log: slog.New(slog.DiscardHandler)}
}

func lz4Method(t *testing.T) codec.Method {
	m, err := codec.ByName("lz4")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>9)
	}
	return b
}

// TestPartitioning packs files of various sizes with a small threshold,
// with one and with three builders: every file lands whole in exactly one
// tar, a tar stays within the threshold unless it holds a single larger
// file, and files metadata lists every member under its tar.
func TestPartitioning(t *testing.T) {
	for _, builders := range []int{1, 3} {
		t.Run(fmt.Sprint(builders), func(t *testing.T) {
			root := t.TempDir()
			sizes := map[string]int{
				"base/1/1": 3000, "base/1/2": 3000, "base/1/3": 9000, // 9000 > threshold: a tar of its own
				"base/1/4": 100, "base/1/5": 0, "base/1/6": 4000, "base/1/7": 2500,
				"global/pg_control": 8192, "PG_VERSION": 3,
			}
			want := map[string][]byte{}
			seed := byte(1)
			for rel, n := range sizes {
				data := pattern(n, seed)
				seed++
				writeFile(t, filepath.Join(root, rel), data)
				want["/"+rel] = data
			}
			store, err := file.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			const threshold = 5000
			p := newTestPacker(t, store, threshold)
			var bs []*builder
			var recs []*fileRecorder
			for range builders {
				rec, err := newFileRecorder(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				defer rec.close()
				recs = append(recs, rec)
				bs = append(bs, p.newBuilder(pipe.NewEncoder(lz4Method(t), nil), rec))
			}
			w := &walker{root: root, log: p.log}
			if err := p.packAll(context.Background(), w, bs); err != nil {
				t.Fatal(err)
			}
			if err := p.storeFile(context.Background(), bs[0].enc, bs[0].buf, backup.PgControlTarName("lz4"), *w.pgControl); err != nil {
				t.Fatal(err)
			}
			tars := readTars(t, store, backup.TarPartitionsKey(p.backupName), nil)
			seen := map[string]string{}
			var total int64
			for name, members := range tars {
				var size int64
				files := 0
				for _, m := range members {
					if m.hdr.Typeflag != tar.TypeReg {
						continue
					}
					if prev, dup := seen[m.hdr.Name]; dup {
						t.Errorf("%s in %s and %s", m.hdr.Name, prev, name)
					}
					seen[m.hdr.Name] = name
					if !bytes.Equal(m.data, want[m.hdr.Name]) {
						t.Errorf("%s: content differs", m.hdr.Name)
					}
					size += m.hdr.Size
					files++
				}
				total += size
				if size > threshold && files > 1 {
					t.Errorf("%s holds %d bytes in %d files, threshold %d", name, size, files, threshold)
				}
				if name == "pg_control.tar.lz4" {
					if len(members) != 1 || members[0].hdr.Name != "/global/pg_control" {
						t.Errorf("pg_control tar: %+v", members)
					}
				} else if !strings.HasPrefix(name, "part_") || !strings.HasSuffix(name, ".tar.lz4") {
					t.Errorf("unexpected object %s", name)
				}
			}
			if len(seen) != len(want) {
				t.Errorf("stored %d files, want %d: %v", len(seen), len(want), seen)
			}
			if got := p.uncompressed.Load(); got != total {
				t.Errorf("uncompressed %d, members %d", got, total)
			}
			if tars["pg_control.tar.lz4"] == nil {
				t.Fatal("no pg_control tar")
			}
			// Every data tar is a contiguous, numbered part.
			for i := 1; i < len(tars); i++ {
				if _, ok := tars[backup.PartTarName(i, "lz4")]; !ok {
					t.Errorf("part %d missing in %v", i, keysOf(tars))
				}
			}

			// files_metadata.json lists every member, and its tar.
			var buf bytes.Buffer
			if err := writeFilesMetadata(context.Background(), &buf, recs,
				[]extraTarSet{{tar: "backup_label.tar.lz4", members: labelMembers()}}, nil); err != nil {
				t.Fatal(err)
			}
			fm, err := backup.ParseFilesMetadata(buf.Bytes())
			if err != nil {
				t.Fatalf("%v\n%s", err, buf.String())
			}
			for name, tarName := range seen {
				if name == "/global/pg_control" {
					if _, ok := fm.Files[name]; ok {
						t.Errorf("pg_control in Files")
					}
					continue
				}
				if _, ok := fm.Files[name]; !ok {
					t.Errorf("%s missing from Files", name)
				}
				if !containsString(fm.TarFileSets[tarName], name) {
					t.Errorf("%s not listed under %s: %v", name, tarName, fm.TarFileSets[tarName])
				}
			}
			if _, ok := fm.Files["/base/1"]; !ok {
				t.Errorf("directories are listed in Files as WAL-G does: %v", keysOf(fm.Files))
			}
			if got := fm.TarFileSets["backup_label.tar.lz4"]; len(got) != 2 {
				t.Errorf("label tar set %v", got)
			}
		})
	}
}

func keysOf[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCopyMemberChangingFiles covers files that change between the size
// recorded in the tar header and the end of reading.
func TestCopyMemberChangingFiles(t *testing.T) {
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name     string
		src      []byte
		size     int64
		want     []byte
		fromFile int64
	}{
		{"same", pattern(10000, 1), 10000, pattern(10000, 1), 10000},
		{"grown", pattern(12000, 2), 10000, pattern(12000, 2)[:10000], 10000},
		{"shrunk", pattern(5000, 3), 10000, append(pattern(5000, 3), make([]byte, 5000)...), 5000},
		{"emptied", nil, 8192, make([]byte, 8192), 0},
		{"empty", nil, 0, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			var offs []int64
			n, err := copyMember(&out, bytes.NewReader(tc.src), tc.size, buf, func(off int64, p []byte) { offs = append(offs, off) })
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.fromFile || !bytes.Equal(out.Bytes(), tc.want) {
				t.Errorf("read %d (want %d), wrote %d bytes, equal %v", n, tc.fromFile, out.Len(), bytes.Equal(out.Bytes(), tc.want))
			}
			for i, off := range offs {
				if off != int64(i*len(buf)) {
					t.Errorf("chunk %d at %d", i, off)
				}
			}
		})
	}
	// A read error is not mistaken for a short file.
	_, err := copyMember(io.Discard, io.MultiReader(bytes.NewReader(pattern(100, 1)), errReader{}), 1000, buf, nil)
	if !errors.Is(err, errBoom) {
		t.Errorf("err = %v", err)
	}
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }

// TestBuilderChangingFiles runs a builder over files that vanish, grow or
// shrink between the walk and the copy, and checks what the tar holds.
func TestBuilderChangingFiles(t *testing.T) {
	root := t.TempDir()
	orig := map[string][]byte{"gone": pattern(100, 1), "grows": pattern(3000, 2), "shrinks": pattern(3000, 3), "same": pattern(20000, 4)}
	for n, d := range orig {
		writeFile(t, filepath.Join(root, n), d)
	}
	store, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPacker(t, store, 1<<20)
	// Between measuring (fstat after open) and reading: one file grows,
	// one is truncated.
	p.beforeCopy = func(path string) {
		switch filepath.Base(path) {
		case "grows":
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			f.Write(pattern(5000, 9))
			f.Close()
		case "shrinks":
			if err := os.Truncate(path, 1000); err != nil {
				t.Error(err)
			}
		}
	}
	rec, err := newFileRecorder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.close()
	b := p.newBuilder(pipe.NewEncoder(lz4Method(t), nil), rec)
	ctx := context.Background()
	var entries []walkEntry
	for _, n := range []string{"gone", "grows", "same", "shrinks"} {
		fi, err := os.Lstat(filepath.Join(root, n))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, walkEntry{path: filepath.Join(root, n), name: "/" + n, info: fi, kind: entryFile})
	}
	os.Remove(entries[0].path) // vanished after the walk
	for _, e := range entries {
		if err := b.add(ctx, e); err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
	}
	if err := b.closeTar(); err != nil {
		t.Fatal(err)
	}
	if got := p.changedFiles.Load(); got != 1 {
		t.Errorf("changed files %d, want 1 (the shrunk one)", got)
	}
	tars := readTars(t, store, backup.TarPartitionsKey(p.backupName), nil)
	got := map[string][]byte{}
	for _, m := range tars["part_001.tar.lz4"] {
		got[strings.TrimPrefix(m.hdr.Name, "/")] = m.data
		if m.hdr.Size != int64(len(m.data)) {
			t.Errorf("%s: header size %d, data %d", m.hdr.Name, m.hdr.Size, len(m.data))
		}
	}
	want := map[string][]byte{
		"grows":   orig["grows"],                                              // only the size seen at open
		"shrinks": append(orig["shrinks"][:1000:1000], make([]byte, 2000)...), // zero-padded to it
		"same":    orig["same"],
	}
	if len(got) != len(want) {
		t.Errorf("tar holds %v", keysOf(got))
	}
	for n, w := range want {
		if !bytes.Equal(got[n], w) {
			t.Errorf("%s: stored %d bytes (sha %s), want %d (sha %s)", n, len(got[n]), sha(got[n]), len(w), sha(w))
		}
	}
	var meta bytes.Buffer
	if err := writeFilesMetadata(ctx, &meta, []*fileRecorder{rec}, nil, nil); err != nil {
		t.Fatal(err)
	}
	fm, err := backup.ParseFilesMetadata(meta.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fm.Files["/gone"]; ok {
		t.Error("a vanished file is recorded")
	}
	for _, n := range []string{"/grows", "/shrinks", "/same"} {
		if _, ok := fm.Files[n]; !ok {
			t.Errorf("%s not recorded", n)
		}
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

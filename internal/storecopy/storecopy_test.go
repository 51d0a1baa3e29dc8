package storecopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/storage/s3"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

const segSize = 16 << 20

const (
	full  = "base_000000010000000000000003"
	delta = "base_000000010000000000000006_D_000000010000000000000003"
)

func fileStore(t *testing.T) storage.Storage {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var prefixSeq atomic.Int64

func s3Store(t *testing.T, srv *s3server.Server) storage.Storage {
	t.Helper()
	o, err := s3.OptionsFromSettings(srv.Setting)
	if err != nil {
		t.Fatal(err)
	}
	o.Prefix = fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), prefixSeq.Add(1))
	s, err := s3.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t *testing.T, s storage.Storage, key string, body []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func walKey(tli uint32, no uint64) string {
	return fmt.Sprintf("wal_005/%08X%08X%08X.lz4", tli, no/0x100, no%0x100)
}

// repo writes a WAL-G layout: a full backup (WAL segments 3-4), a delta on
// it (6-7), WAL segments 1-9 on timeline 1, a backup history sidecar and a
// timeline history file. It returns every object written.
func repo(t *testing.T, s storage.Storage) map[string][]byte {
	t.Helper()
	objs := map[string][]byte{}
	add := func(key string, body []byte) {
		objs[key] = body
		put(t, s, key, body)
	}
	sysid := uint64(7000)
	sentinels := map[string]*backup.Sentinel{
		full:  {LSN: 0x3000028, FinishLSN: 0x4000100, PgVersion: 150000, SystemIdentifier: &sysid},
		delta: {LSN: 0x6000028, FinishLSN: 0x7000050, PgVersion: 150000, SystemIdentifier: &sysid, DeltaFrom: full, DeltaLSN: 0x3000028, DeltaFullName: full, DeltaCount: 1},
	}
	for i, name := range []string{full, delta} {
		s := sentinels[name]
		add(backup.TarKey(name, "part_001.tar.lz4"), randomBytes(uint64(i), 3<<20+17))
		add(backup.TarKey(name, "pg_control.tar.lz4"), randomBytes(uint64(i+10), 8192))
		add(backup.FilesMetadataKey(name), []byte(`{"Files":{}}`))
		m, err := backup.EncodeMetadata(backup.MetadataFromSentinel(s))
		if err != nil {
			t.Fatal(err)
		}
		add(backup.MetadataKey(name), m)
		b, err := backup.EncodeSentinel(s)
		if err != nil {
			t.Fatal(err)
		}
		add(backup.SentinelKey(name), b)
	}
	for no := uint64(1); no <= 9; no++ {
		add(walKey(1, no), randomBytes(100+no, 40000+int(no)))
	}
	add("wal_005/000000010000000000000003.00000028.backup.lz4", []byte("backup history"))
	add("wal_005/00000002.history.lz4", []byte("timeline history"))
	return objs
}

// contents reads every object of s.
func contents(t *testing.T, s storage.Storage) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	err := s.List(ctx, "", func(o storage.ObjectInfo) error {
		rc, err := s.Get(ctx, o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		out[o.Key] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func subset(objs map[string][]byte, keep func(string) bool) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range objs {
		if keep(k) {
			out[k] = v
		}
	}
	return out
}

func checkSame(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: missing on the target", k)
		case !bytes.Equal(g, w):
			t.Errorf("%s: %d bytes on the target differ from the source's %d", k, len(g), len(w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: copied, but not wanted", k)
		}
	}
}

// recorder notes the keys Put stores, in order, and can fail or cancel
// after a number of them.
type recorder struct {
	storage.Storage
	mu      sync.Mutex
	order   []string
	after   int // > 0: call hook after this many Puts
	hook    func()
	hookRan bool
}

func (r *recorder) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	if err := r.Storage.Put(ctx, key, body, size); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, key)
	if r.after > 0 && len(r.order) >= r.after && !r.hookRan {
		r.hookRan = true
		r.hook()
	}
	return nil
}

// checkOrder asserts what WAL-G's copy promises about visibility: each
// sentinel after every other object of its backup, after all WAL and
// after every metadata.json, and a delta's after its base's.
func checkOrder(t *testing.T, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, k := range order {
		pos[k] = i
	}
	for _, k := range order {
		name, ok := backup.NameFromSentinelKey(k)
		if !ok {
			continue
		}
		for _, o := range order {
			if _, isSentinel := backup.NameFromSentinelKey(o); !isSentinel && pos[o] > pos[k] {
				t.Errorf("%s was written after the sentinel of %s", o, name)
			}
		}
	}
	if f, ok := pos[backup.SentinelKey(full)]; ok {
		if d, ok := pos[backup.SentinelKey(delta)]; ok && d < f {
			t.Errorf("the delta's sentinel was written before its base's")
		}
	}
}

// backends runs f for each pair of storages the copy is tested between.
func backends(t *testing.T, f func(t *testing.T, from, to storage.Storage)) {
	t.Run("file to file", func(t *testing.T) {
		t.Parallel()
		f(t, fileStore(t), fileStore(t))
	})
	t.Run("S3", func(t *testing.T) {
		t.Parallel()
		srv := s3server.Start(t, s3server.Options{})
		t.Run("file to S3", func(t *testing.T) { f(t, fileStore(t), s3Store(t, srv)) })
		t.Run("S3 to file", func(t *testing.T) { f(t, s3Store(t, srv), fileStore(t)) })
		t.Run("S3 to S3", func(t *testing.T) { f(t, s3Store(t, srv), s3Store(t, srv)) })
	})
}

func TestCopyAllBackups(t *testing.T) {
	backends(t, func(t *testing.T, from, to storage.Storage) {
		ctx := context.Background()
		src := repo(t, from)
		rec := &recorder{Storage: to}
		c := &Copier{From: from, To: rec}
		if err := c.Backups(ctx, BackupOptions{SegmentSize: segSize}); err != nil {
			t.Fatal(err)
		}
		// Both backups, each with the WAL from its start to its end: 3-4
		// (with the backup history sidecar of 3) and 6-7, and the
		// timeline history; not 1-2, 5 or 8-9.
		want := subset(src, func(k string) bool {
			switch k {
			case walKey(1, 1), walKey(1, 2), walKey(1, 5), walKey(1, 8), walKey(1, 9):
				return false
			}
			return true
		})
		checkSame(t, contents(t, to), want)
		checkOrder(t, rec.order)
		if st := c.Stats(); st.Copied != int64(len(want)) || st.Skipped != 0 {
			t.Errorf("stats %+v, want %d copied", st, len(want))
		}
		list, err := backup.List(ctx, to)
		if err != nil || len(list) != 2 {
			t.Errorf("target lists %v, %v", list, err)
		}

		// Again: nothing to copy.
		again := &Copier{From: from, To: rec}
		rec.order = nil
		if err := again.Backups(ctx, BackupOptions{SegmentSize: segSize}); err != nil {
			t.Fatal(err)
		}
		if st := again.Stats(); st.Copied != 0 || st.Skipped != int64(len(want)) || len(rec.order) != 0 {
			t.Errorf("second copy: %+v, wrote %v", st, rec.order)
		}
	})
}

func TestCopyOneBackupWithHistory(t *testing.T) {
	backends(t, func(t *testing.T, from, to storage.Storage) {
		ctx := context.Background()
		src := repo(t, from)
		c := &Copier{From: from, To: to, Workers: 1}
		if err := c.Backups(ctx, BackupOptions{Backup: "LATEST", WithHistory: true, SegmentSize: segSize}); err != nil {
			t.Fatal(err)
		}
		// The delta needs its base; its WAL runs from 6 to the newest, 9.
		want := subset(src, func(k string) bool {
			switch {
			case strings.HasPrefix(k, "wal_005/0000000100000000000000"):
				return k >= walKey(1, 6)
			}
			return true
		})
		checkSame(t, contents(t, to), want)
	})
}

func TestCopyRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		opts  BackupOptions
		edit  func(t *testing.T, from, to storage.Storage)
		want  string
		wrote bool // objects may have been written (never a sentinel)
	}{
		{name: "first missing", opts: BackupOptions{Backup: full},
			edit: func(t *testing.T, from, _ storage.Storage) { from.Delete(ctx, walKey(1, 3)) },
			want: "first required WAL segment 000000010000000000000003 is missing"},
		{name: "last missing", opts: BackupOptions{Backup: delta},
			edit: func(t *testing.T, from, _ storage.Storage) { from.Delete(ctx, walKey(1, 7)) },
			want: "last required WAL segment 000000010000000000000007 is missing"},
		{name: "hole with history", opts: BackupOptions{Backup: delta, WithHistory: true},
			edit: func(t *testing.T, from, _ storage.Storage) { from.Delete(ctx, walKey(1, 8)) },
			want: "gap in the WAL of timeline 00000001 after segment 000000010000000000000007"},
		{name: "base missing", opts: BackupOptions{Backup: delta},
			edit: func(t *testing.T, from, _ storage.Storage) { from.Delete(ctx, backup.SentinelKey(full)) },
			want: "is a delta of " + full + ", which is not in"},
		{name: "no such backup", opts: BackupOptions{Backup: "base_000000010000000000000099"},
			want: "no sentinel"},
		{name: "conflict", opts: BackupOptions{},
			edit: func(t *testing.T, _, to storage.Storage) { put(t, to, walKey(1, 7), []byte("other")) },
			want: "destination object conflicts with source", wrote: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			from, to := fileStore(t), fileStore(t)
			repo(t, from)
			if tc.edit != nil {
				tc.edit(t, from, to)
			}
			before := contents(t, to)
			tc.opts.SegmentSize = segSize
			err := (&Copier{From: from, To: to}).Backups(ctx, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			after := contents(t, to)
			if !tc.wrote && len(after) != len(before) {
				t.Errorf("%d objects written before the refusal", len(after)-len(before))
			}
			if list, _ := backup.List(ctx, to); len(list) != 0 {
				t.Errorf("the target lists %v", list)
			}
		})
	}
}

// TestCopyCancelled stops a copy midway, as SIGTERM does: it ends with the
// context's error, and the target shows no backup.
func TestCopyCancelled(t *testing.T) {
	backends(t, func(t *testing.T, from, to storage.Storage) {
		repo(t, from)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rec := &recorder{Storage: to, after: 3, hook: cancel}
		err := (&Copier{From: from, To: rec}).Backups(ctx, BackupOptions{SegmentSize: segSize})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want cancellation", err)
		}
		list, err := backup.List(context.Background(), to)
		if err != nil || len(list) != 0 {
			t.Errorf("a cancelled copy left backups %v (%v)", list, err)
		}
		if len(rec.order) > 3+DefaultWorkers {
			t.Errorf("%d objects written after the cancellation at 3", len(rec.order))
		}
	})
}

func TestCopyPrefix(t *testing.T) {
	backends(t, func(t *testing.T, from, to storage.Storage) {
		ctx := context.Background()
		src := repo(t, from)
		put(t, to, walKey(1, 1), []byte("stale"))
		c := &Copier{From: from, To: to, Overwrite: true}
		if err := c.Prefix(ctx, "wal_005/0000000100000000000000"); err != nil {
			t.Fatal(err)
		}
		want := subset(src, func(k string) bool { return strings.HasPrefix(k, "wal_005/0000000100000000000000") })
		checkSame(t, contents(t, to), want)

		// A transform sees every byte and what it writes is stored.
		to2 := fileStore(t)
		c = &Copier{From: from, To: to2, Transform: func(dst io.Writer, src io.Reader) error {
			b, err := io.ReadAll(src)
			if err != nil {
				return err
			}
			_, err = dst.Write(bytes.ToUpper(b))
			return err
		}}
		if err := c.Prefix(ctx, "wal_005/0000000"); err != nil {
			t.Fatal(err)
		}
		got := contents(t, to2)
		if !bytes.Equal(got["wal_005/000000010000000000000003.00000028.backup.lz4"], []byte("BACKUP HISTORY")) || len(got) != 11 {
			keys := slices.Collect(func(yield func(string) bool) {
				for k := range got {
					if !yield(k) {
						return
					}
				}
			})
			sort.Strings(keys)
			t.Errorf("transformed copy: %v", keys)
		}
		// A failing transform stores nothing.
		to3 := fileStore(t)
		c = &Copier{From: from, To: to3, Transform: func(io.Writer, io.Reader) error { return errors.New("bad key") }}
		if err := c.Prefix(ctx, "wal_005/"); err == nil || !strings.Contains(err.Error(), "bad key") {
			t.Errorf("failing transform: %v", err)
		}
		if n := len(contents(t, to3)); n != 0 {
			t.Errorf("a failed transform stored %d objects", n)
		}
	})
}

func TestRuns(t *testing.T) {
	for _, order := range [][]uint64{{1, 2, 3, 4, 5}, {5, 4, 3, 2, 1}, {1, 3, 5, 2, 4}, {3, 1, 5, 4, 2, 2}} {
		var r runs
		for _, n := range order {
			r.add(n)
		}
		if len(r.spans) != 1 || r.spans[0] != (span{1, 5}) {
			t.Errorf("%v: %v", order, r.spans)
		}
	}
	var r runs
	for _, n := range []uint64{9, 1, 2, 7, 4, 8} {
		r.add(n)
	}
	if want := []span{{1, 2}, {4, 4}, {7, 9}}; !slices.Equal(r.spans, want) {
		t.Errorf("spans %v, want %v", r.spans, want)
	}
}

func TestWalName(t *testing.T) {
	for key, want := range map[string][2]string{
		"wal_005/000000010000000000000003.lz4":                 {"000000010000000000000003", "000000010000000000000003"},
		"wal_005/000000010000000000000003.00000028.backup.zst": {"000000010000000000000003.00000028.backup", "000000010000000000000003"},
		"wal_005/00000002.history.br":                          {"00000002.history", "00000002"},
		"wal_005/000000010000000000000003.partial":             {"000000010000000000000003.partial", "000000010000000000000003"},
		"wal_005/000000010000000000000003":                     {"000000010000000000000003", "000000010000000000000003"},
		"wal_005/sub/000000010000000000000004.gz":              {"000000010000000000000004", "000000010000000000000004"},
	} {
		a, l := walName(key)
		if a != want[0] || l != want[1] {
			t.Errorf("%s: %q %q, want %q", key, a, l, want)
		}
	}
}

// liar lists every object one byte longer than it is, as a source
// rewritten between its listing and the copy would be.
type liar struct{ storage.Storage }

func (l liar) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return l.Storage.List(ctx, prefix, func(o storage.ObjectInfo) error {
		o.Size++
		return fn(o)
	})
}

// TestCopyChangedSource: an object whose length differs from the listing
// fails its copy, and nothing is stored under its key.
func TestCopyChangedSource(t *testing.T) {
	backends(t, func(t *testing.T, from, to storage.Storage) {
		ctx := context.Background()
		put(t, from, "wal_005/x", randomBytes(1, 100000))
		err := (&Copier{From: liar{from}, To: to}).Prefix(ctx, "wal_005/")
		if err == nil {
			t.Fatal("copied an object shorter than listed")
		}
		if n := len(contents(t, to)); n != 0 {
			t.Errorf("%d objects stored: %v", n, err)
		}
		t.Log(err)
	})
}

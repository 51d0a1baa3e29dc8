package retention

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

// fake describes one backup of a synthetic repository.
type fake struct {
	name, deltaFrom, deltaFull string
	start, finish              uint64 // LSNs
	startTime                  time.Time
	sentinelTime               time.Time // zero: now
	permanent                  bool
	userData                   string
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func put(t *testing.T, st storage.Storage, key string, data []byte) {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// synth writes backups (sentinel, metadata.json, one tar) and the given
// extra objects (WAL) to a fresh file storage; it returns the storage and
// its root directory.
func synth(t *testing.T, backups []fake, extra ...string) (storage.Storage, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range backups {
		s := &backup.Sentinel{LSN: pg.LSN(f.start), FinishLSN: pg.LSN(f.finish), PgVersion: 150000, Version: 2,
			StartTime: f.startTime, FinishTime: f.startTime.Add(time.Second), DateFmt: backup.DateFmt,
			IsPermanent: f.permanent}
		if f.deltaFrom != "" {
			s.DeltaFrom, s.DeltaFullName, s.DeltaLSN, s.DeltaCount = f.deltaFrom, f.deltaFull, 1, 1
		}
		if f.userData != "" {
			s.UserData = json.RawMessage(f.userData)
		}
		data, err := backup.EncodeSentinel(s)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := backup.EncodeMetadata(backup.MetadataFromSentinel(s))
		if err != nil {
			t.Fatal(err)
		}
		put(t, st, backup.TarKey(f.name, "part_001.tar.lz4"), []byte("tar"))
		put(t, st, backup.MetadataKey(f.name), meta)
		put(t, st, backup.SentinelKey(f.name), data)
		if !f.sentinelTime.IsZero() {
			p := filepath.Join(dir, filepath.FromSlash(backup.SentinelKey(f.name)))
			if err := os.Chtimes(p, f.sentinelTime, f.sentinelTime); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range extra {
		put(t, st, k, []byte("x"))
	}
	return st, dir
}

func walKeys(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "wal_005/" + n
	}
	return out
}

// deleted runs a form with --confirm and returns the keys it removed.
func deleted(t *testing.T, st storage.Storage, opts Options, form func(*Repo) (*Plan, error)) ([]string, error) {
	t.Helper()
	ctx := context.Background()
	before := keys(t, st)
	opts.Confirm = true
	r, err := Load(ctx, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := form(r)
	if err != nil {
		return nil, err
	}
	if _, err := r.Sweep(ctx, p); err != nil {
		t.Fatal(err)
	}
	after := keys(t, st)
	var gone []string
	for _, k := range before {
		if !slices.Contains(after, k) {
			gone = append(gone, k)
		}
	}
	return gone, nil
}

func backupKeys(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, backup.MetadataKey(n), backup.TarKey(n, "part_001.tar.lz4"), backup.SentinelKey(n))
	}
	return out
}

func sameSet(t *testing.T, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("deleted\n  %s\nwant\n  %s", strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
}

const seg = 16 << 20

// After a timeline switch WAL-G orders by timeline first: everything on an
// older timeline comes before a backup on a newer one, whatever its
// segment number; history files have no position and stay.
func TestRetainAcrossTimelines(t *testing.T) {
	a := "base_000000010000000000000003"
	b := "base_000000020000000000000006"
	c := "base_000000020000000000000008_D_000000020000000000000006"
	backups := []fake{
		{name: a, start: 3*seg + 40, finish: 3*seg + 400, startTime: t0},
		{name: b, start: 6*seg + 40, finish: 6*seg + 400, startTime: t0.Add(time.Hour)},
		{name: c, deltaFrom: b, deltaFull: b, start: 8*seg + 40, finish: 8*seg + 400, startTime: t0.Add(2 * time.Hour)},
	}
	tl1 := walKeys("000000010000000000000002.lz4", "000000010000000000000003.lz4", "000000010000000000000006.lz4", "000000010000000000000007.lz4")
	tl2 := walKeys("00000002.history.lz4", "000000020000000000000005.lz4", "000000020000000000000006.lz4", "000000020000000000000009.lz4")

	st, _ := synth(t, backups, append(tl1, tl2...)...)
	gone, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 2, "") })
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, append(append(backupKeys(a), tl1...), "wal_005/000000020000000000000005.lz4"))

	st, _ = synth(t, backups, append(tl1, tl2...)...)
	if _, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 1, "") }); !errors.Is(err, ErrRefused) {
		t.Fatalf("retain 1 with a delta newest: %v, want a refusal", err)
	}
	gone, err = deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Retain(FindFull, 1, "") })
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, append(append(backupKeys(a), tl1...), "wal_005/000000020000000000000005.lz4"))
}

// A permanent backup keeps the WAL from the segment holding start_lsn-1 to
// the one holding finish_lsn-1 (its .backup file too), on its timeline only.
func TestPermanentWALRange(t *testing.T) {
	p := "base_000000010000000000000003"
	d := "base_000000010000000000000007"
	e := "base_000000010000000000000009"
	backups := []fake{
		{name: p, start: 3*seg + 40, finish: 6 * seg, startTime: t0, permanent: true},
		{name: d, start: 7*seg + 40, finish: 7*seg + 400, startTime: t0.Add(time.Hour)},
		{name: e, start: 9*seg + 40, finish: 9*seg + 400, startTime: t0.Add(2 * time.Hour)},
	}
	w := walKeys("000000010000000000000002.lz4", "000000010000000000000003.00000028.backup.lz4", "000000010000000000000003.lz4",
		"000000010000000000000004.lz4", "000000010000000000000005.lz4", "000000010000000000000006.lz4",
		"000000020000000000000004.lz4", "000000010000000000000008.lz4", "000000010000000000000009.lz4")
	st, _ := synth(t, backups, w...)
	gone, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 1, "") })
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, append(backupKeys(d), walKeys("000000010000000000000002.lz4", "000000010000000000000006.lz4", "000000010000000000000008.lz4")...))

	st, _ = synth(t, backups, w...)
	if _, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Everything(false) }); !errors.Is(err, ErrRefused) {
		t.Fatalf("everything with a permanent backup: %v, want a refusal", err)
	}
	// garbage without a non-permanent backup does nothing, unless told to
	// go on without that check.
	st, _ = synth(t, backups[:1], w...)
	if _, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Garbage(ScopeAll, false) }); !errors.Is(err, ErrNothingToDelete) {
		t.Fatalf("garbage with only permanent backups: %v", err)
	}
	gone, err = deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Garbage(ScopeWAL, true) })
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, walKeys("000000010000000000000002.lz4", "000000010000000000000006.lz4", "000000020000000000000004.lz4",
		"000000010000000000000008.lz4", "000000010000000000000009.lz4"))
}

// --use-sentinel-time orders backups by metadata start time, and WAL by
// segment number alone.
func TestUseSentinelTime(t *testing.T) {
	x := "base_000000010000000000000003"
	y := "base_000000020000000000000005"
	backups := []fake{
		{name: x, start: 3*seg + 40, finish: 3*seg + 400, startTime: t0.Add(time.Hour)},
		{name: y, start: 5*seg + 40, finish: 5*seg + 400, startTime: t0},
	}
	w := walKeys("000000010000000000000002.lz4", "000000020000000000000002.lz4", "000000010000000000000004.lz4")
	st, _ := synth(t, backups, w...)
	gone, err := deleted(t, st, Options{UseSentinelTime: true}, func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 1, "") })
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, append(backupKeys(y), walKeys("000000010000000000000002.lz4", "000000020000000000000002.lz4")...))

	st, _ = synth(t, backups, w...)
	gone, err = deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 1, "") })
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, append(backupKeys(x), w...))
}

// Time arguments compare with the sentinel's modification time; retain
// --after keeps the older of the two targets.
func TestTimesAndAfter(t *testing.T) {
	a, d, e := "base_000000010000000000000003", "base_000000010000000000000007", "base_000000010000000000000009"
	backups := []fake{
		{name: a, start: 3*seg + 40, finish: 3*seg + 400, sentinelTime: t0},
		{name: d, start: 7*seg + 40, finish: 7*seg + 400, sentinelTime: t0.Add(time.Hour)},
		{name: e, start: 9*seg + 40, finish: 9*seg + 400, sentinelTime: t0.Add(2 * time.Hour)},
	}
	w := walKeys("000000010000000000000002.lz4", "000000010000000000000008.lz4")
	for _, c := range []struct {
		name string
		form func(*Repo) (*Plan, error)
		want []string
	}{
		{"before exact time", func(r *Repo) (*Plan, error) { return r.Before(NoModifier, t0.Add(time.Hour).Format(time.RFC3339)) },
			append(backupKeys(a), w[0])},
		{"before name prefix", func(r *Repo) (*Plan, error) { return r.Before(NoModifier, "base_0000000100000000000000") },
			append(backupKeys(a, d), w...)},
		{"retain 1 after name", func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 1, d) },
			append(backupKeys(a), w[0])},
		{"retain 1 after time", func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 1, t0.Add(time.Minute).Format(time.RFC3339)) },
			append(backupKeys(a), w[0])},
		{"retain 2 after a later time", func(r *Repo) (*Plan, error) { return r.Retain(NoModifier, 2, t0.Add(3*time.Hour).Format(time.RFC3339)) },
			append(backupKeys(a), w[0])},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, _ := synth(t, backups, w...)
			gone, err := deleted(t, st, Options{}, c.form)
			if err != nil {
				t.Fatal(err)
			}
			sameSet(t, gone, c.want)
		})
	}
	st, _ := synth(t, backups, w...)
	if _, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Before(NoModifier, t0.Add(5*time.Hour).Format(time.RFC3339)) }); !errors.Is(err, ErrNothingToDelete) {
		t.Fatalf("before a time after every backup: %v", err)
	}
}

func TestTargetByUserDataAndLatest(t *testing.T) {
	a, d := "base_000000010000000000000003", "base_000000010000000000000007"
	backups := []fake{
		{name: a, start: 3*seg + 40, finish: 3*seg + 400, userData: `{"x":[3],"y":4}`, sentinelTime: t0},
		{name: d, start: 7*seg + 40, finish: 7*seg + 400, userData: `"other"`, sentinelTime: t0.Add(time.Hour)},
	}
	ctx := context.Background()
	st, _ := synth(t, backups)
	gone, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) {
		return r.Target(ctx, TargetSpec{UserData: json.RawMessage(`{ "y": 4, "x": [3] }`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, backupKeys(a))
	st, _ = synth(t, backups)
	gone, err = deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Target(ctx, TargetSpec{Name: "LATEST"}) })
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, gone, backupKeys(d))
	if _, err := deleted(t, st, Options{}, func(r *Repo) (*Plan, error) { return r.Target(ctx, TargetSpec{Name: d}) }); !errors.Is(err, backup.ErrBackupNotFound) {
		t.Fatalf("target of a deleted backup: %v", err)
	}
}

func metaPermanent(t *testing.T, st storage.Storage, name string) bool {
	t.Helper()
	m, err := backup.FetchMetadata(context.Background(), st, name)
	if err != nil {
		t.Fatal(err)
	}
	return m.IsPermanent
}

// backup-mark marks a delta's whole chain; -i is refused while a direct
// delta is permanent; sentinels never change.
func TestMarkChain(t *testing.T) {
	f, g, h := "base_000000010000000000000003", "base_000000010000000000000005_D_000000010000000000000003",
		"base_000000010000000000000007_D_000000010000000000000005"
	st, dir := synth(t, []fake{
		{name: f, start: 3*seg + 40, finish: 3*seg + 400},
		{name: g, deltaFrom: f, deltaFull: f, start: 5*seg + 40, finish: 5*seg + 400},
		{name: h, deltaFrom: g, deltaFull: f, start: 7*seg + 40, finish: 7*seg + 400},
	})
	sentinel := func() []byte {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(backup.SentinelKey(g))))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	origSentinel := sentinel()
	ctx := context.Background()
	marked, err := Mark(ctx, st, h, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(marked, []string{f, g, h}) {
		t.Fatalf("marked %v", marked)
	}
	for _, n := range []string{f, g, h} {
		if !metaPermanent(t, st, n) {
			t.Fatalf("%s not permanent", n)
		}
	}
	if !bytes.Equal(sentinel(), origSentinel) {
		t.Fatal("backup-mark rewrote a sentinel")
	}
	for _, n := range []string{f, g} {
		if _, err := Mark(ctx, st, n, false, nil); !errors.Is(err, ErrRefused) {
			t.Fatalf("-i %s with a permanent delta on it: %v", n, err)
		}
	}
	for _, n := range []string{h, g, f} {
		if _, err := Mark(ctx, st, n, false, nil); err != nil {
			t.Fatalf("-i %s: %v", n, err)
		}
		if metaPermanent(t, st, n) {
			t.Fatalf("%s still permanent", n)
		}
	}
	if _, err := Mark(ctx, st, "base_0000000100000000000000FF", true, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("marking a missing backup: %v", err)
	}
}

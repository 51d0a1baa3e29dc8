package restore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

// putBackup stores a synthetic backup: sentinel plus the given tars
// (name → members), compressed with lz4.
func putBackup(t *testing.T, st storage.Storage, name string, s *backup.Sentinel, tars map[string][]entry) {
	t.Helper()
	ctx := context.Background()
	enc := pipe.NewEncoder(mustMethod(t, codec.LZ4), nil)
	for tn, entries := range tars {
		var b bytes.Buffer
		if _, err := enc.Encode(&b, bytes.NewReader(makeTar(t, entries...))); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, backup.TarKey(name, tn), &b, int64(b.Len())); err != nil {
			t.Fatal(err)
		}
	}
	data, err := backup.EncodeSentinel(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, backup.SentinelKey(name), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func mustMethod(t *testing.T, name string) codec.Method {
	m, err := codec.ByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newFileStore(t *testing.T) *file.Storage {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const testBackup = "base_000000010000000000000002"

func syntheticTars() map[string][]entry {
	return map[string][]entry{
		"part_001.tar.lz4":     {{name: "/", typ: '5'}, {name: "/PG_VERSION", body: "15\n"}, {name: "/base/1/1", body: strings.Repeat("a", 70000)}},
		"part_002.tar.lz4":     {{name: "/base/1/2", body: "two"}, {name: "/global", typ: '5'}},
		"part_003.tar.lz4":     {{name: "/base/5/3", body: strings.Repeat("c", 200000)}},
		"pg_control.tar.lz4":   {{name: "/global/pg_control", body: "control"}},
		"backup_label.tar.lz4": {{name: "backup_label", body: "label"}, {name: "tablespace_map", body: ""}},
	}
}

func TestFetchFull(t *testing.T) {
	st := newFileStore(t)
	putBackup(t, st, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2, PgVersion: 150000}, syntheticTars())
	dest := filepath.Join(t.TempDir(), "restore")
	f := &Fetcher{Store: st, Concurrency: 2, Retries: 1}
	res, err := f.Fetch(context.Background(), testBackup, dest, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PG_VERSION": "15\n", "base/1/1": strings.Repeat("a", 70000), "base/1/2": "two",
		"base/5/3": strings.Repeat("c", 200000), "global/pg_control": "control", "backup_label": "label", "tablespace_map": "",
	}
	for p, body := range want {
		got, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil || string(got) != body {
			t.Errorf("%s: %d bytes, %v", p, len(got), err)
		}
	}
	if res.Tars != 5 || res.Files != 7 || res.Bytes != 3+70000+3+200000+7+5 {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dest, pgControlTemp)); err == nil {
		t.Error("temporary pg_control left behind")
	}
	// A second restore into the same, now full, directory is refused.
	if _, err := f.Fetch(context.Background(), testBackup, dest, FetchOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a non-empty directory: %v", err)
	}
}

func TestFetchWithoutPgControl(t *testing.T) {
	st := newFileStore(t)
	tars := syntheticTars()
	delete(tars, "pg_control.tar.lz4")
	putBackup(t, st, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2}, tars)
	_, err := (&Fetcher{Store: st}).Fetch(context.Background(), testBackup, filepath.Join(t.TempDir(), "r"), FetchOptions{})
	if err == nil || !strings.Contains(err.Error(), "pg_control") {
		t.Errorf("backup without pg_control: %v", err)
	}
}

// flakyStore fails reads of one object midway for its first failures Gets.
type flakyStore struct {
	storage.Storage
	key      string
	failures int32
	gets     atomic.Int32
}

func (s *flakyStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Storage.Get(ctx, key)
	if err != nil || key != s.key {
		return rc, err
	}
	if n := s.gets.Add(1); n <= s.failures {
		return &failingBody{rc: rc, left: 100}, nil
	}
	return rc, nil
}

type failingBody struct {
	rc   io.ReadCloser
	left int
}

func (b *failingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= n
	return n, err
}

func (b *failingBody) Close() error { return b.rc.Close() }

func TestFetchRetriesStorageErrors(t *testing.T) {
	base := newFileStore(t)
	putBackup(t, base, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2}, syntheticTars())
	key := backup.TarKey(testBackup, "part_003.tar.lz4")

	st := &flakyStore{Storage: base, key: key, failures: 2}
	dest := filepath.Join(t.TempDir(), "r")
	if _, err := (&Fetcher{Store: st, Concurrency: 3, Retries: 2}).Fetch(context.Background(), testBackup, dest, FetchOptions{}); err != nil {
		t.Fatalf("restore with two transient failures and two retries: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "base/5/3")); string(got) != strings.Repeat("c", 200000) {
		t.Errorf("retried file has %d bytes", len(got))
	}
	if st.gets.Load() != 3 {
		t.Errorf("%d downloads, want 3", st.gets.Load())
	}

	st = &flakyStore{Storage: base, key: key, failures: 5}
	_, err := (&Fetcher{Store: st, Concurrency: 3, Retries: 1}).Fetch(context.Background(), testBackup, filepath.Join(t.TempDir(), "r"), FetchOptions{})
	if err == nil || !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), key) {
		t.Errorf("restore with persistent storage errors: %v", err)
	}
	if st.gets.Load() != 2 {
		t.Errorf("%d downloads, want 2", st.gets.Load())
	}
}

func TestFetchCorruptTarNotRetried(t *testing.T) {
	base := newFileStore(t)
	putBackup(t, base, testBackup, &backup.Sentinel{LSN: 1, FinishLSN: 2, Version: 2}, syntheticTars())
	key := backup.TarKey(testBackup, "part_002.tar.lz4")
	garbage := []byte("this is not an lz4 frame at all")
	if err := base.Put(context.Background(), key, bytes.NewReader(garbage), int64(len(garbage))); err != nil {
		t.Fatal(err)
	}
	st := &flakyStore{Storage: base, key: key}
	_, err := (&Fetcher{Store: st, Concurrency: 1, Retries: 5}).Fetch(context.Background(), testBackup, filepath.Join(t.TempDir(), "r"), FetchOptions{})
	var partial *PartialRestoreError
	if err == nil || !strings.Contains(err.Error(), key) || !errors.As(err, &partial) {
		t.Errorf("corrupt tar: %v", err)
	}
	if st.gets.Load() != 1 {
		t.Errorf("corrupt tar downloaded %d times, want 1 (decoding errors are not retried)", st.gets.Load())
	}
}

// fixtureManifest is what these tests read from manifest.json.
type fixtureManifest struct {
	Fixtures []struct {
		Name    string            `json:"name"`
		Env     map[string]string `json:"env"`
		Backups []struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"backups"`
	} `json:"fixtures"`
}

// TestFetchFixtures restores every full backup of the fixtures and checks
// that every file files_metadata.json lists is there and that the bytes
// written add up to the sentinel's UncompressedSize.
func TestFetchFixtures(t *testing.T) {
	root := testenv.Fixtures(t)
	raw, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m fixtureManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	restored := 0
	for _, fx := range m.Fixtures {
		for _, b := range fx.Backups {
			if b.Kind != "full" {
				continue
			}
			t.Run(fx.Name+"/"+b.Name, func(t *testing.T) {
				fixDir := filepath.Join(root, fx.Name)
				st, err := file.New(filepath.Join(fixDir, "storage"))
				if err != nil {
					t.Fatal(err)
				}
				path := func(k string) string {
					if v := fx.Env[k]; v != "" {
						return filepath.Join(fixDir, v)
					}
					return ""
				}
				cr, err := crypt.FromSettings(context.Background(), crypt.Settings{
					PGPKey: fx.Env["WALG_PGP_KEY"], PGPKeyPath: path("WALG_PGP_KEY_PATH"),
					PGPKeyPassphrase: fx.Env["WALG_PGP_KEY_PASSPHRASE"],
					LibsodiumKey:     fx.Env["WALG_LIBSODIUM_KEY"], LibsodiumKeyPath: path("WALG_LIBSODIUM_KEY_PATH"),
					LibsodiumKeyTransform: fx.Env["WALG_LIBSODIUM_KEY_TRANSFORM"],
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				s, err := backup.FetchSentinel(ctx, st, b.Name)
				if err != nil {
					t.Fatal(err)
				}
				fm, err := backup.FetchFilesMetadata(ctx, st, b.Name, s)
				if err != nil {
					t.Fatal(err)
				}
				tmp := t.TempDir()
				dest := filepath.Join(tmp, "pgdata")
				var opts FetchOptions
				if s.Spec != nil {
					spec := *s.Spec
					spec.BasePrefix = dest
					spec.Tablespaces = nil
					for _, ts := range s.Spec.Tablespaces {
						ts.Location = filepath.Join(tmp, "tblspc-"+ts.Name)
						spec.Tablespaces = append(spec.Tablespaces, ts)
					}
					opts.RestoreSpec = &spec
				}
				start := time.Now()
				res, err := (&Fetcher{Store: st, Crypter: cr, Concurrency: 2, NoFsync: true}).Fetch(ctx, b.Name, dest, opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("restored %d files, %d bytes in %v", res.Files, res.Bytes, time.Since(start))
				wantBytes := s.UncompressedSize
				if opts.RestoreSpec != nil {
					fi, err := os.Stat(filepath.Join(dest, "tablespace_map"))
					if err == nil {
						t.Errorf("tablespace_map restored despite --restore-spec (%d bytes)", fi.Size())
					}
					wantBytes = -1 // less tablespace_map, whose size the sentinel does not give
				}
				if wantBytes >= 0 && res.Bytes != wantBytes {
					t.Errorf("restored %d bytes, sentinel UncompressedSize %d", res.Bytes, wantBytes)
				}
				missing := 0
				for _, members := range fm.TarFileSets {
					for _, mem := range members {
						if mem == "tablespace_map" && opts.RestoreSpec != nil {
							continue
						}
						if _, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(strings.TrimLeft(mem, "/")))); err != nil {
							missing++
							if missing < 5 {
								t.Errorf("member %s not restored: %v", mem, err)
							}
						}
					}
				}
				if _, err := os.Stat(filepath.Join(dest, PgControlPath)); err != nil {
					t.Error(err)
				}
				restored++
			})
		}
	}
	if restored < 4 {
		t.Errorf("restored %d full backups, expected at least 4", restored)
	}
}

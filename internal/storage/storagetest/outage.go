package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
)

// Server is a backend's server that a test can kill and start again on
// the same address and data.
type Server struct {
	// Kill stops the server at once, as a crash would (SIGKILL): requests
	// in flight get no answer.
	Kill func()
	// Restart starts it again on the same address with the same data.
	Restart func() error
	// Settle is how long the server may hold an acknowledged write in
	// memory before it is on disk (Azurite saves its metadata every 5 s):
	// waited after the first write, so the kill tests tusk's uploads and
	// not the emulator's durability.
	Settle time.Duration
}

// KilledMidUpload checks what a server killed while a large upload is in
// flight leaves behind, for a seekable body of known size and for a
// stream of unknown size: Put fails with one line naming the key, and
// once the server is back the key is either absent or whole (never a
// prefix a reader would take for the object), nothing else is listed,
// and the same storage value works again. size should span several of
// the backend's parts or blocks.
func KilledMidUpload(t *testing.T, s storage.Storage, srv Server, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data := RandomBytes(t, size)
	if err := s.Put(ctx, "before", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(srv.Settle)
	for _, tc := range []struct {
		name, key string
		body      func(r *killingReader) io.Reader
		size      int64
	}{
		{"seekable", "wal_005/000000010000000000000001.lz4", func(r *killingReader) io.Reader { return r }, int64(size)},
		{"stream", "basebackups_005/base_000000010000000000000002/tar_partitions/part_1.tar.lz4",
			func(r *killingReader) io.Reader { return OnlyReader{r} }, -1},
	} {
		r := &killingReader{r: bytes.NewReader(data), at: int64(size) / 2, kill: srv.Kill}
		start := time.Now()
		err := s.Put(ctx, tc.key, tc.body(r), tc.size)
		if !r.killed.Load() {
			t.Fatalf("%s: Put returned (%v) before reading half the body", tc.name, err)
		}
		if err == nil {
			t.Errorf("%s: Put succeeded although the server was killed mid-body", tc.name)
		} else if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tc.key) {
			t.Errorf("%s: error %q is not one line naming %s", tc.name, msg, tc.key)
		}
		t.Logf("%s: Put failed after %v: %v", tc.name, time.Since(start).Round(time.Millisecond), err)
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		switch info, err := s.Stat(ctx, tc.key); {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			t.Errorf("%s: Stat after the restart: %v", tc.name, err)
		case info.Size != int64(size):
			t.Errorf("%s: after the restart %s holds %d of %d bytes", tc.name, tc.key, info.Size, size)
		default:
			if got := ReadAll(t, s, tc.key); !bytes.Equal(got, data) {
				t.Errorf("%s: after the restart %s holds other bytes", tc.name, tc.key)
			}
		}
		for _, k := range Keys(t, s, "") {
			if k != "before" && k != tc.key {
				t.Errorf("%s: after the restart the storage lists %q", tc.name, k)
			}
		}
		if err := s.Delete(ctx, tc.key); err != nil {
			t.Fatalf("%s: Delete after the restart: %v", tc.name, err)
		}
	}
	// The same storage value reconnects.
	if got := ReadAll(t, s, "before"); string(got) != "x" {
		t.Errorf("read after the restarts: %q", got)
	}
	if err := s.Put(ctx, "after", bytes.NewReader(data[:1<<20]), 1<<20); err != nil {
		t.Errorf("Put after the restarts: %v", err)
	}
	if got := Keys(t, s, ""); !slices.Equal(got, []string{"after", "before"}) {
		t.Errorf("keys after the restarts: %q", got)
	}
}

// killingReader reads r and kills the server the first time its offset
// passes at; Seek lets a backend rewind to retry.
type killingReader struct {
	r      *bytes.Reader
	at     int64
	kill   func()
	killed atomic.Bool // read by the test after Put returns
	once   sync.Once
}

func (k *killingReader) Read(p []byte) (int, error) {
	if k.r.Size()-int64(k.r.Len()) >= k.at {
		k.once.Do(func() {
			k.kill()
			k.killed.Store(true)
		})
	}
	return k.r.Read(p)
}

func (k *killingReader) Seek(off int64, whence int) (int64, error) { return k.r.Seek(off, whence) }

package wal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/storage"
)

// ChooseBuffering keeps recompress (no spool) only where two passes give
// the same length and cost nothing more: no encryption or libsodium, over
// an unsigned payload. AWS KMS would make a KMS request per pass.
func TestChooseBufferingCrypters(t *testing.T) {
	sodium, err := crypt.NewLibsodium(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	kms, err := crypt.NewKMS(context.Background(), crypt.KMSOptions{KeyID: "alias/k", Region: "eu-west-2"})
	if err != nil {
		t.Fatal(err)
	}
	https := storage.Traits{}
	for _, tc := range []struct {
		name    string
		cr      crypt.Crypter
		st      storage.Traits
		want    string
		because string
	}{
		{"plain", nil, https, BufferRecompress, ""},
		{"libsodium", sodium, https, BufferRecompress, ""},
		{"libsodium signed", sodium, storage.Traits{SignsPayload: true}, BufferMemory, "HTTPS"},
		{"aws-kms", kms, https, BufferMemory, "KMS request per pass"},
		{"streams", kms, storage.Traits{StreamsUnknownSize: true}, BufferStream, ""},
	} {
		mode, why := ChooseBuffering(BufferRecompress, tc.st, tc.cr)
		if mode != tc.want || !strings.Contains(why, tc.because) {
			t.Errorf("%s: %s (%q), want %s (%q)", tc.name, mode, why, tc.want, tc.because)
		}
	}
}

// seekCheckStore is a memStore whose Put reads the body twice, rewinding it
// in between, as an SDK signing the payload does.
type seekCheckStore struct{ *memStore }

func (s seekCheckStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		return errors.New("body is not seekable")
	}
	if _, err := io.Copy(io.Discard, rs); err != nil {
		return err
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return s.memStore.Put(ctx, key, rs, size)
}

// With SpoolDir, BufferMemory encodes into a file there instead of pool
// chunks: the heap never holds the encoded segment, the body is seekable
// for a retry, and the file is gone afterwards, also when the store fails.
func TestBufferMemorySpoolDir(t *testing.T) {
	st, a, r := setup(t, "zstd")
	a.Store = seekCheckStore{st}
	a.Buffering = BufferMemory
	spool := t.TempDir()
	root, err := os.OpenRoot(spool)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	a.SpoolDir = root
	dir := t.TempDir()
	name := "000000010000000000000005"
	data := segmentBytes(5)
	writeFile(t, filepath.Join(dir, name), data)
	if err := a.PushFile(context.Background(), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	if n := a.Pool.Allocated(); n != 0 {
		t.Errorf("%d pool chunks allocated; the encoded file belongs in the spool directory", n)
	}
	dest := filepath.Join(dir, "RECOVERYXLOG")
	if err := r.Fetch(context.Background(), name, dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("fetched content differs")
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("left in the spool directory: %v", left)
	}
	// A failed store removes the file too.
	a.Store = failingPutStore{}
	if err := a.PushFile(context.Background(), filepath.Join(dir, name)); err == nil {
		t.Fatal("push to a failing store succeeded")
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("left in the spool directory after a failure: %v", left)
	}
	if !IsSpoolFileName(SpoolFileName(name)) || IsSpoolFileName(name) || IsArchivableName(SpoolFileName(name)) {
		t.Error("spool file names must be told apart from WAL file names")
	}
}

type failingPutStore struct{ storage.Storage }

func (failingPutStore) Put(context.Context, string, io.Reader, int64) error {
	return errors.New("503 Service Unavailable")
}

func (failingPutStore) String() string { return "failing://" }

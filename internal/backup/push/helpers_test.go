package push

import (
	"bytes"
	"context"
	"testing"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/file"
)

const testBackup = "base_000000010000000000000002"

// putSentinel stores a backup's sentinel alone.
func putSentinel(t *testing.T, st storage.Storage, name string, s *backup.Sentinel) {
	t.Helper()
	data, err := backup.EncodeSentinel(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), backup.SentinelKey(name), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func newFileStore(t *testing.T) *file.Storage {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const testDelta1 = "base_000000010000000000000004_D_000000010000000000000002"

// putFM stores a backup's files_metadata.json.
func putFM(t *testing.T, st storage.Storage, name string, files map[string]backup.FileDescription) {
	t.Helper()
	var b bytes.Buffer
	if err := backup.EncodeFilesMetadata(&b, &backup.FilesMetadata{Files: files}); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), backup.FilesMetadataKey(name), &b, int64(b.Len())); err != nil {
		t.Fatal(err)
	}
}

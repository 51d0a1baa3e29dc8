package gcs

import (
	"testing"

	"github.com/tusk-pg/tusk/internal/storage/storagetest"
	"github.com/tusk-pg/tusk/internal/testenv/gcsserver"
)

// A real fake-gcs-server killed while a one-request upload and a
// resumable upload are in flight (objects on disk, so the server comes
// back with what it had): see storagetest.KilledMidUpload.
func TestServerKilledMidUpload(t *testing.T) {
	srv := gcsserver.StartOnDisk(t)
	s := open(t, srv, Options{ChunkSize: 2 * ChunkAlign, MaxRetries: 1})
	storagetest.KilledMidUpload(t, s, storagetest.Server{Kill: srv.Kill, Restart: srv.Restart}, 8<<20)
}

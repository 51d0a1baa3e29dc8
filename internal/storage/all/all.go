// Package all lists every storage backend tusk has: the Registry of the
// tusk binary. A program that needs fewer (tusk-archive) lists its own,
// and links only those.
package all

import (
	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/azure"
	"github.com/tusk-pg/tusk/internal/storage/file"
	"github.com/tusk-pg/tusk/internal/storage/gcs"
	"github.com/tusk-pg/tusk/internal/storage/s3"
	"github.com/tusk-pg/tusk/internal/storage/sftp"
)

// Registry returns every backend, built per call (no package-level
// table to mutate).
func Registry() storage.Registry {
	return storage.Registry{file.Backend(), s3.Backend(), gcs.Backend(), azure.Backend(), sftp.Backend()}
}

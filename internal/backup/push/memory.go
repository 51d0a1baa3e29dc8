package push

import (
	"fmt"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/memplan"
)

// The base backup's file list of a delta is the one structure that grows
// with the cluster (with its number of files, not their size).
const (
	deltaBytesPerFile = 100
	deltaFilesAssumed = 20000
)

// MemoryPlan lists what one backup-push holds at its peak with options o
// and the components' facts f (the codec, crypter and storage o uses).
// Everything is allocated per tar builder and reused; none of it grows with
// the size of the database or of its files (a delta's base file list
// grows with the number of files). The walk's directory listing
// (one string per name of the directory being read) comes on top and is
// small; files_metadata.json entries are spooled to disk.
func MemoryPlan(o Options, f memplan.Facts) *memplan.Plan {
	o.defaults()
	b := memplan.BackupPush{Builders: o.Builders()}
	each := func(component string, bytes int64, note string) {
		b.PerBuilder = append(b.PerBuilder, memplan.Item{Component: component, Each: bytes, Note: note})
	}
	once := func(component string, count int, bytes int64, note string) {
		b.Once = append(b.Once, memplan.Item{Component: component, Count: count, Each: bytes, Note: note})
	}
	if o.Remote {
		each("copy buffer", readBufferSize, "one builder: BASE_BACKUP sends one stream")
		once("BASE_BACKUP message and held members", 1, 64<<10+3*8<<10, "the CopyData pgconn holds; pg_control, backup_label, tablespace_map")
	} else {
		each("file read buffer", readBufferSize, "one per tar builder: min(WALG_UPLOAD_DISK_CONCURRENCY, WALG_UPLOAD_CONCURRENCY)")
	}
	each("tar writer and pipe", 16<<10, "")
	if o.Verify && !o.Remote {
		each("page re-read buffer (--verify)", 32<<10, "")
	}
	if !o.WithoutFilesMetadata {
		once("files metadata spool buffers", b.Builders+1, 2*recorderBufferSize, "entries go to unlinked files in "+o.TempDir)
	}
	if (o.Delta.MaxSteps > 0 || o.CatchupFrom != 0) && !o.WithoutFilesMetadata && !o.Remote {
		each("delta: changed-page list", (1<<30)/backup.IncrementBlockSize*4, "one per tar builder: 4 bytes per page of a 1 GiB relation segment")
		once("delta: base backup's file list", 1, deltaFilesAssumed*deltaBytesPerFile,
			fmt.Sprintf("name and mtime of each file of the base, about %d bytes each: grows with the file count (%d assumed)", deltaBytesPerFile, deltaFilesAssumed))
		if o.DeltaSource != DeltaSourcePageScan {
			once("delta: changed blocks from WAL summaries", 1, maxSummaryBlocks*4, "PostgreSQL 17+ only; more blocks than that: the page scan is used")
		}
	}
	if o.Remote {
		once("PostgreSQL sessions", 3, 256<<10, "replication and ordinary sessions, and one database at a time for partial-restore metadata")
	} else {
		once("PostgreSQL sessions", 2, 256<<10, "the backup session, and one database at a time for partial-restore metadata")
	}
	return memplan.BackupPushPlan(f, b)
}

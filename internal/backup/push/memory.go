package push

import (
	"fmt"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/memplan"
)

// UploadBuffers describes the storage backend's buffers for uploads of
// unknown size: at most PerUpload bytes for one upload, at most Total for
// all of them together (0: no shared cap).
type UploadBuffers struct {
	PerUpload int64
	Total     int64
	Note      string
}

// The base backup's file list of a delta is the one structure that grows
// with the cluster (with its number of files, not their size).
const (
	deltaBytesPerFile = 100
	deltaFilesAssumed = 20000
)

// MemoryPlan lists what one backup-push holds at its peak with options o.
// Everything is allocated per tar builder and reused; none of it grows with
// the size of the database or of its files (a delta's base file list
// grows with the number of files). The walk's directory listing
// (one string per name of the directory being read) comes on top and is
// small; files_metadata.json entries are spooled to disk.
func MemoryPlan(o Options, up UploadBuffers) *memplan.Plan {
	o.defaults()
	n := o.Builders()
	p := &memplan.Plan{Process: "tusk backup-push"}
	cw, _ := codec.MemoryEstimate(o.Method)
	p.Add("file read buffer", n, readBufferSize, "one per tar builder: min(WALG_UPLOAD_DISK_CONCURRENCY, WALG_UPLOAD_CONCURRENCY)")
	p.Add("compressor ("+o.Method.Name()+")", n, cw, "writer state, reused from tar to tar")
	p.Add("tar writer and pipe", n, 16<<10, "")
	if o.Crypter != nil {
		ew, _ := crypt.MemoryEstimate(o.Crypter)
		p.Add("encryption ("+o.Crypter.Name()+")", n, ew, "")
	}
	if uploads := int64(n) * up.PerUpload; up.Total > 0 && up.Total < uploads {
		p.Add("upload buffers (shared pool)", 1, up.Total, up.Note)
	} else {
		p.Add("upload buffers", n, up.PerUpload, up.Note)
	}
	if !o.WithoutFilesMetadata {
		p.Add("files metadata spool buffers", n+1, 2*recorderBufferSize, "entries go to unlinked files in "+o.TempDir)
	}
	if o.Verify {
		p.Add("page re-read buffer (--verify)", n, 32<<10, "")
	}
	if o.Delta.MaxSteps > 0 && !o.WithoutFilesMetadata {
		p.Add("delta: changed-page list", n, (1<<30)/backup.IncrementBlockSize*4, "one per tar builder: 4 bytes per page of a 1 GiB relation segment")
		p.Add("delta: base backup's file list", 1, deltaFilesAssumed*deltaBytesPerFile,
			fmt.Sprintf("name and mtime of each file of the base, about %d bytes each: grows with the file count (%d assumed)", deltaBytesPerFile, deltaFilesAssumed))
		if o.DeltaSource != DeltaSourcePageScan {
			p.Add("delta: changed blocks from WAL summaries", 1, maxSummaryBlocks*4, "PostgreSQL 17+ only; more blocks than that: the page scan is used")
		}
	}
	p.Add("PostgreSQL sessions", 2, 256<<10, "the backup session, and one database at a time for partial-restore metadata")
	return p
}

package backup

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
)

// RuntimeFloor is what any CGO_ENABLED=0 Go program commits before doing
// anything (mostly the heap arena index); see the project's memory notes.
const RuntimeFloor = 40 << 20

// MemoryItem is one line of backup-push's memory plan.
type MemoryItem struct {
	What  string
	Count int
	Each  int64
	Note  string
}

// Total is Count × Each.
func (m MemoryItem) Total() int64 { return int64(m.Count) * m.Each }

// UploadBuffers describes the storage backend's buffers for uploads of
// unknown size: at most PerUpload bytes for one upload, at most Total for
// all of them together (0: no shared cap).
type UploadBuffers struct {
	PerUpload int64
	Total     int64
	Note      string
}

// MemoryPlan lists what one backup-push holds at its peak with options o:
// everything is allocated per tar builder and reused, none of it grows with
// the size of the database or of its files. The walk's directory listing
// (one string per name of the directory being read) and the PostgreSQL
// session come on top and are small.
func MemoryPlan(o PushOptions, up UploadBuffers) []MemoryItem {
	o.defaults()
	n := o.Builders()
	cw, _ := codec.MemoryEstimate(o.Method)
	items := []MemoryItem{
		{What: "file read buffer", Count: n, Each: readBufferSize, Note: "one per tar builder (min of disk and upload concurrency)"},
		{What: "compressor (" + o.Method.Name() + ")", Count: n, Each: cw, Note: "writer state, reused from tar to tar"},
		{What: "tar writer and pipes", Count: n, Each: 16 << 10},
	}
	if o.Crypter != nil {
		ew, _ := crypt.MemoryEstimate(o.Crypter)
		items = append(items, MemoryItem{What: "encryption (" + o.Crypter.Name() + ")", Count: n, Each: ew})
	}
	uploads := int64(n) * up.PerUpload
	if up.Total > 0 && up.Total < uploads {
		items = append(items, MemoryItem{What: "upload buffers (shared pool)", Count: 1, Each: up.Total, Note: up.Note})
	} else {
		items = append(items, MemoryItem{What: "upload buffers", Count: n, Each: up.PerUpload, Note: up.Note})
	}
	if !o.WithoutFilesMetadata {
		items = append(items, MemoryItem{What: "files metadata spool buffers", Count: n + 1, Each: 2 * recorderBufferSize,
			Note: "entries go to unlinked temp files in " + o.TempDir})
	}
	if o.Verify {
		items = append(items, MemoryItem{What: "page re-read buffer (--verify)", Count: n, Each: 32 << 10})
	}
	items = append(items,
		MemoryItem{What: "PostgreSQL session", Count: 1, Each: 256 << 10},
		MemoryItem{What: "Go runtime floor (committed)", Count: 1, Each: RuntimeFloor, Note: "same for every Go program"},
	)
	return items
}

// WriteMemoryPlan prints the plan as a table with its total.
func WriteMemoryPlan(w io.Writer, items []MemoryItem) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "item\tcount\teach\ttotal\t  note\n")
	var sum int64
	for _, m := range items {
		sum += m.Total()
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t  %s\n", m.What, m.Count, mib(m.Each), mib(m.Total()), m.Note)
	}
	fmt.Fprintf(tw, "bound\t\t\t%s\t  \n", mib(sum))
	return tw.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

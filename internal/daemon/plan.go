package daemon

import (
	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/pipe"
)

// PlanInput is what the daemon's memory depends on.
type PlanInput struct {
	Workers         int
	MaxConnections  int
	SegmentSize     int64
	Buffering       string // wal.BufferStream / BufferRecompress / BufferMemory
	Method          codec.Method
	Encrypted       bool
	Prefetch        int // WALG_DOWNLOAD_CONCURRENCY
	PrefetchWorkers int
}

// Per-request costs outside the codecs, measured in the benchmark: one
// HTTP request with TLS (record buffers, headers, SDK middleware state)
// and the encryption state of one stream.
const (
	requestOverhead = 256 << 10
	cryptOverhead   = 64 << 10
)

// Plan computes the daemon's memory plan.
func Plan(in PlanInput) *memplan.Plan {
	p := &memplan.Plan{Process: "tusk daemon"}
	w, r := codec.MemoryEstimate(in.Method)
	enc := int64(0)
	if in.Encrypted {
		enc = cryptOverhead
	}
	upload := w + pipe.CopyBufferSize + requestOverhead + enc
	note := "codec " + in.Method.Name() + ", " + in.Buffering
	p.Add("upload worker", in.Workers, upload, note)
	if in.Buffering == "memory" {
		spool := in.SegmentSize + in.SegmentSize/8 + memplan.MiB
		p.Add("upload spool (TUSK_WAL_UPLOAD_BUFFER=memory)", in.Workers, spool, "compressed segment held before sending")
	}
	p.Add("client request in flight", in.MaxConnections, RequestBytes, "TUSK_DAEMON_MAX_CONNECTIONS: frame buffer and state")
	p.Add("open client connection", DefaultMaxOpen, ConnBytes, "goroutine and socket; quiet ones hold no buffer")
	download := r + pipe.CopyBufferSize + requestOverhead + enc
	p.Add("wal-fetch download", 1, download, "decoder for objects written with "+in.Method.Name())
	if in.Prefetch > 1 {
		p.Add("prefetch download", min(in.Prefetch, in.PrefetchWorkers), download, "WALG_DOWNLOAD_CONCURRENCY, at most 4 at once")
	}
	return p
}

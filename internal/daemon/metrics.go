package daemon

import (
	"fmt"
	"io"
	"net/http"
	"runtime/metrics"
	"sync/atomic"
)

// Metrics are the daemon's counters, exposed in Prometheus' text format.
// Written by hand: a handful of counters does not justify the client
// library's registry and its allocations.
type Metrics struct {
	uploads, failures  atomic.Int64
	bytesIn, bytesOut  atomic.Int64
	fetches, fetchMiss atomic.Int64
	inFlight, backlog  atomic.Int64
	// PlanBytes is the memory plan's total, shown beside the heap in use.
	PlanBytes int64
}

// Uploaded records one stored file.
func (m *Metrics) Uploaded(in, out int64) {
	m.bytesIn.Add(in)
	m.bytesOut.Add(out)
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		metrics.Read(samples)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		m.write(w, samples[0].Value.Uint64(), samples[1].Value.Uint64())
	})
}

func (m *Metrics) write(w io.Writer, heap, total uint64) {
	line := func(name, typ, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	line("tusk_wal_uploads_total", "counter", "WAL files stored.", m.uploads.Load())
	line("tusk_wal_upload_failures_total", "counter", "WAL uploads that failed.", m.failures.Load())
	line("tusk_wal_bytes_in_total", "counter", "Raw WAL bytes uploaded.", m.bytesIn.Load())
	line("tusk_wal_bytes_out_total", "counter", "Stored (compressed, encrypted) bytes.", m.bytesOut.Load())
	line("tusk_wal_fetches_total", "counter", "wal-fetch requests served.", m.fetches.Load())
	line("tusk_wal_fetch_not_found_total", "counter", "wal-fetch requests for files not archived.", m.fetchMiss.Load())
	line("tusk_wal_uploads_in_flight", "gauge", "Uploads running now.", m.inFlight.Load())
	line("tusk_wal_ready_backlog", "gauge", ".ready files seen at the last push.", m.backlog.Load())
	line("tusk_memory_plan_bytes", "gauge", "Memory plan total.", m.PlanBytes)
	line("tusk_go_heap_objects_bytes", "gauge", "Go heap in use by objects.", heap)
	line("tusk_go_memory_total_bytes", "gauge", "All memory mapped by the Go runtime.", total)
}

// Package memplan computes, from configuration alone, how much memory a
// tusk process can take: component by component, so an operator can size a
// host (or vm.overcommit_memory=2 limits) before deploying.
package memplan

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

const MiB = 1 << 20

// Measured on this project's reference machine for a CGO_ENABLED=0 binary
// (docs/benchmarks.md): what every Go process costs before it does anything.
const (
	// RuntimeCommitted is dominated by two 32 MiB writable regions that
	// are charged but never touched: the heap-arena index the runtime maps at
	// start, and the FIPS 140 entropy scratch buffer
	// (crypto/internal/fips140/drbg.memory) that current Go toolchains link
	// into the BSS of every program using crypto — tusk does, for TLS and
	// encryption. Neither is resident; both count under
	// vm.overcommit_memory=2.
	RuntimeCommitted = 72 * MiB
	// RuntimeRSS is the resident part of that floor plus the executable's
	// own pages (code, read-only data, the function tables the collector
	// and stack growth read): a process faults in up to ≈20 MiB of the
	// 46 MB binary (RssFile measured at 18-20 MiB in one-shot wal-push runs,
	// 2026-12-07), whatever its workload.
	RuntimeRSS = 3*MiB + 20*MiB
	// RuntimeSlack covers goroutine stacks, runtime metadata, and the
	// standard library's small buffers (HTTP, TLS, logging).
	RuntimeSlack = 6 * MiB
)

// Item is one component of the plan: Count instances of Each bytes.
type Item struct {
	Component string `json:"component"`
	Count     int    `json:"count"`
	Each      int64  `json:"each_bytes"`
	Note      string `json:"note,omitempty"`
}

// Bytes is the item's total.
func (i Item) Bytes() int64 { return int64(i.Count) * i.Each }

// Plan is the sum of bounded components plus the runtime's own cost.
type Plan struct {
	Process string `json:"process"`
	Items   []Item `json:"items"`
	// MaxGCPercent, when not 0, caps GCPercent (see WalReceivePlan).
	MaxGCPercent int `json:"-"`
}

// Add appends a component.
func (p *Plan) Add(component string, count int, each int64, note string) {
	p.Items = append(p.Items, Item{component, count, each, note})
}

// Live is the memory the components hold at their worst moment.
func (p *Plan) Live() int64 {
	var n int64
	for _, it := range p.Items {
		n += it.Bytes()
	}
	return n
}

// HeapLimit is the value for GOMEMLIMIT: live memory, headroom for the
// collector (a quarter, at least 8 MiB, so it does not run continuously),
// and the runtime's slack. Above it the collector works harder; the code
// itself never holds more than Live.
func (p *Plan) HeapLimit() int64 {
	live := p.Live()
	return live + max(live/4, 8*MiB) + RuntimeSlack
}

// GCPercent is the collector's target (GOGC) that puts the heap goal at
// HeapLimit when the live heap is at the plan's bound: the default 100
// would let garbage double a live heap, far beyond the limit. Below the
// bound the goal is smaller still, so a burst leaves a smaller high-water
// mark. Between 10 and 100.
func (p *Plan) GCPercent() int {
	live := p.Live()
	g := 100
	if live > 0 {
		g = int(min(max(100*(p.HeapLimit()-live)/live, 10), 100))
	}
	if p.MaxGCPercent > 0 {
		g = min(g, p.MaxGCPercent)
	}
	return g
}

// Committed is the bound on private writable memory (what Linux charges
// under vm.overcommit_memory=2): the runtime floor plus the heap limit.
func (p *Plan) Committed() int64 { return RuntimeCommitted + p.HeapLimit() }

// RSS is the bound on resident memory.
func (p *Plan) RSS() int64 { return RuntimeRSS + p.HeapLimit() }

type planJSON struct {
	Process        string `json:"process"`
	Items          []Item `json:"items"`
	LiveBytes      int64  `json:"live_bytes"`
	GoMemLimit     int64  `json:"gomemlimit_bytes"`
	CommittedBytes int64  `json:"committed_bound_bytes"`
	RSSBytes       int64  `json:"rss_bound_bytes"`
}

// JSON writes the plan as one JSON object.
func (p *Plan) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(planJSON{p.Process, p.Items, p.Live(), p.HeapLimit(), p.Committed(), p.RSS()})
}

// Table writes the plan for people.
func (p *Plan) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "component\tcount\teach\ttotal\t\n")
	for _, it := range p.Items {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", it.Component, it.Count, human(it.Each), human(it.Bytes()), it.Note)
	}
	fmt.Fprintf(tw, "live (components)\t\t\t%s\t\n", human(p.Live()))
	fmt.Fprintf(tw, "GOMEMLIMIT (live + GC headroom + runtime slack)\t\t\t%s\t\n", human(p.HeapLimit()))
	fmt.Fprintf(tw, "Go runtime floor (committed)\t\t\t%s\t\n", human(RuntimeCommitted))
	fmt.Fprintf(tw, "bound: committed memory\t\t\t%s\tprivate writable mappings, what vm.overcommit_memory=2 charges\n", human(p.Committed()))
	fmt.Fprintf(tw, "bound: resident memory (RSS)\t\t\t%s\t\n", human(p.RSS()))
	return tw.Flush()
}

func human(n int64) string {
	switch {
	case n >= 10*MiB:
		return fmt.Sprintf("%d MiB", (n+MiB/2)/MiB)
	case n >= MiB:
		return fmt.Sprintf("%.1f MiB", float64(n)/MiB)
	default:
		return fmt.Sprintf("%d KiB", (n+512)/1024)
	}
}

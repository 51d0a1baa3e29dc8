package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

func mib(n uint64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

// printTable writes the results as the Markdown the docs page carries.
func printTable(w io.Writer, r *results) {
	fmt.Fprintf(w, "Date: %s. Machine: %s. Cluster: %.2f GB (%s MiB).\n\n", r.Date, r.Machine, float64(r.ClusterBytes)/1e9, mib(uint64(r.ClusterBytes)))
	fmt.Fprintln(w, "| run | wall s | MB/s | CPU s (user+sys) | peak RSS sum MiB (10 Hz) | max RSS main MiB (time) | peak committed MiB | processes | rchar MiB | read_bytes MiB | load | all walls s |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, m := range r.Runs {
		fmt.Fprintf(w, "| %s | %.1f | %.0f | %.1f | %s | %s | %s | %d | %s | %s | %s | %s |\n", m.Name, m.Wall.Seconds(),
			float64(r.ClusterBytes)/1e6/m.Wall.Seconds(), m.CPU, mib(m.PeakRSSSum), mib(m.MaxRSSMain), mib(m.PeakCommitted),
			m.Procs, mib(m.RChar), mib(m.ReadBytes), m.Load, walls(m.Walls))
	}
	fmt.Fprintf(w, "\nMemory plans: backup-push committed %s MiB, RSS %s MiB; backup-fetch committed %s MiB, RSS %s MiB.\n",
		mib(r.PushPlan.Committed), mib(r.PushPlan.RSS), mib(r.FetchPlan.Committed), mib(r.FetchPlan.RSS))
	if r.RemotePlan.Committed > 0 {
		fmt.Fprintf(w, "Memory plan of backup-push over a replication connection: committed %s MiB, RSS %s MiB.\n",
			mib(r.RemotePlan.Committed), mib(r.RemotePlan.RSS))
	}
	fmt.Fprintf(w, "Memory plan with WAL-G's defaults: backup-push committed %s MiB, RSS %s MiB.\n",
		mib(r.DefaultsPlan.Committed), mib(r.DefaultsPlan.RSS))
	if r.DeltaObjects > 0 {
		fmt.Fprintf(w, "Delta upload: tusk %s MiB in %d objects; pgBackRest incr %s MiB.\n", mib(uint64(r.DeltaUpload)), r.DeltaObjects, mib(uint64(r.IncrUpload)))
	}
	if len(r.Delta17Upload) == 2 {
		fmt.Fprintf(w, "PostgreSQL 17 (cluster %.2f GB): delta upload page scan %s MiB, WAL summaries %s MiB.\n",
			float64(r.ClusterBytes17)/1e9, mib(uint64(r.Delta17Upload[0])), mib(uint64(r.Delta17Upload[1])))
	}
	get := func(name string) *measure {
		for i := range r.Runs {
			if r.Runs[i].Name == name {
				return &r.Runs[i]
			}
		}
		return nil
	}
	ratio := func(tusk, other string) string {
		a, b := get(tusk), get(other)
		if a == nil || b == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", b.Wall.Seconds()/max(a.Wall.Seconds(), time.Millisecond.Seconds()))
	}
	if get("pgBackRest backup (full)") != nil {
		fmt.Fprintf(w, "Throughput tusk/pgBackRest: push %s, fetch %s (target >= 1.5x).\n",
			ratio("tusk backup-push", "pgBackRest backup (full)"), ratio("tusk backup-fetch", "pgBackRest restore"))
	}
}

func walls(ws []float64) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%.1f", w)
	}
	return strings.Join(parts, ", ")
}

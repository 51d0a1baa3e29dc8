package report

import (
	"bytes"
	"fmt"
	"strings"
)

// Kinds of archiver the harness knows.
const (
	KindTuskDaemon  = "tusk-daemon"
	KindTuskWalPush = "tusk-walpush"
	KindPgBackRest  = "pgbackrest"
	KindGeneric     = "generic"
)

// Verdict of a target.
const (
	Met         = "met"
	NotMet      = "NOT met"
	NotMeasured = "not measured"
)

// Target is one goal from the project's memory issue, evaluated on a run.
type Target struct {
	Goal     string
	Measured string
	Verdict  string
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/MiB) }

func verdict(ok bool) string {
	if ok {
		return Met
	}
	return NotMet
}

// Targets evaluates the project's goals on sum. baseline, when not nil, is a
// 180 s run whose tusk peaks a longer burst must stay within 10% of.
func Targets(sum *Summary, baseline *Summary) []Target {
	var out []Target
	byKind := func(s *Summary, kind string) []*ArchiverResult {
		var rs []*ArchiverResult
		if s == nil {
			return nil
		}
		for i := range s.Archivers {
			r := &s.Archivers[i]
			if r.Kind == kind && r.Skipped == "" && r.Error == "" {
				rs = append(rs, r)
			}
		}
		return rs
	}
	daemons := byKind(sum, KindTuskDaemon)
	pushes := byKind(sum, KindTuskWalPush)
	var pgbr *ArchiverResult
	if rs := byKind(sum, KindPgBackRest); len(rs) > 0 {
		pgbr = rs[0]
	}

	add := func(goal, measured, v string) { out = append(out, Target{goal, measured, v}) }
	limit := func(goal string, rs []*ArchiverResult, value func(*ArchiverResult) uint64, hard, aim uint64) {
		if len(rs) == 0 {
			add(goal, "", NotMeasured)
		}
		for _, r := range rs {
			v := value(r)
			verd := verdict(v <= hard)
			if aim > 0 && v <= aim {
				verd += " (aim met)"
			} else if aim > 0 && v <= hard {
				verd += " (aim not met)"
			}
			add(goal, r.Name+": "+mib(v), verd)
		}
	}

	// The memory issue's targets: 72 MiB committed is Go's floor with
	// crypto linked.
	limit("tusk daemon peak committed ≤ 85 MiB", daemons,
		func(r *ArchiverResult) uint64 { return r.Burst.ResidentCommitted }, 85*MiB, 0)
	limit("tusk daemon peak RSS ≤ 32 MiB", daemons,
		func(r *ArchiverResult) uint64 { return max(r.Burst.ResidentHWM, r.Burst.ResidentRSS) }, 32*MiB, 0)
	limit("tusk daemon RSS after the burst ≤ 12 MiB", daemons,
		func(r *ArchiverResult) uint64 { return r.After.ResidentRSS }, 12*MiB, 0)
	limit("daemon client max RSS per run ≤ 8 MiB", daemons,
		func(r *ArchiverResult) uint64 { return r.Invocations.MaxRSS }, 8*MiB, 0)
	if len(daemons) == 0 {
		add("daemon client CPU per run ≤ 5 ms", "", NotMeasured)
	}
	for _, r := range daemons {
		if r.Invocations.Count == 0 {
			add("daemon client CPU per run ≤ 5 ms", r.Name+": no runs", NotMeasured)
			continue
		}
		// GNU time records a run's user and system CPU in hundredths of
		// a second, each truncated: the true figure lies up to 20 ms
		// above the record, more than the target. A record above 5 ms
		// decides it; one below only bounds it (bench/cmd/spawncpu
		// measures it with wait4's microseconds).
		per := r.Invocations.CPU / float64(r.Invocations.Count) * 1000
		if per > 5 {
			add("daemon client CPU per run ≤ 5 ms", fmt.Sprintf("%s: %.1f ms", r.Name, per), NotMet)
			continue
		}
		add("daemon client CPU per run ≤ 5 ms",
			fmt.Sprintf("%s: %.1f to %.1f ms (GNU time's 10 ms steps; measure with bench/cmd/spawncpu)", r.Name, per, per+2*timeStep*1000), NotMeasured)
	}

	idleFound := false
	for _, id := range sum.Idle {
		if id.Error != "" {
			add("idle daemon RSS ≤ 12 MiB", id.Name+": "+id.Error, NotMeasured)
			continue
		}
		idleFound = true
		add("idle daemon RSS ≤ 12 MiB",
			fmt.Sprintf("%s: %s after %.0f s (max %s, committed %s)", id.Name, mib(id.RSS), id.Seconds, mib(id.MaxRSS), mib(id.Committed)),
			verdict(id.RSS <= 12*MiB))
	}
	if !idleFound && len(sum.Idle) == 0 {
		add("idle daemon RSS ≤ 12 MiB", "", NotMeasured)
	}

	tusks := append(append([]*ArchiverResult{}, daemons...), pushes...)
	if len(tusks) == 0 {
		add("max .ready backlog ≤ pgBackRest's", "", NotMeasured)
	}
	for _, r := range tusks {
		if pgbr == nil {
			add("max .ready backlog ≤ pgBackRest's", fmt.Sprintf("%s: %d (no pgBackRest run)", r.Name, r.Burst.Ready), NotMeasured)
			continue
		}
		add("max .ready backlog ≤ pgBackRest's", fmt.Sprintf("%s: %d vs %d", r.Name, r.Burst.Ready, pgbr.Burst.Ready),
			verdict(r.Burst.Ready <= pgbr.Burst.Ready))
	}
	for _, r := range tusks {
		m := fmt.Sprintf("%s: %.1f s", r.Name, r.DrainSeconds)
		if !r.Drained {
			m = fmt.Sprintf("%s: not drained after %.0f s", r.Name, r.DrainSeconds)
		}
		add("drained within 10 s after the burst", m, verdict(r.Drained && r.DrainSeconds <= 10))
	}
	for _, r := range tusks {
		add("zero archive failures", fmt.Sprintf("%s: %d failed_count, %d non-zero exits", r.Name, r.Failures, r.Invocations.Failed),
			verdict(r.Failures == 0 && r.Invocations.Failed == 0))
	}
	for _, r := range tusks {
		if pgbr == nil || pgbr.CPUPerGB == 0 {
			add("CPU s per GiB of WAL ≤ pgBackRest's", fmt.Sprintf("%s: %.2f (no pgBackRest run)", r.Name, r.CPUPerGB), NotMeasured)
			continue
		}
		add("CPU s per GiB of WAL ≤ pgBackRest's", fmt.Sprintf("%s: %.2f vs %.2f", r.Name, r.CPUPerGB, pgbr.CPUPerGB),
			verdict(r.CPUPerGB <= pgbr.CPUPerGB))
	}
	limit("one-shot tusk wal-push peak RSS ≤ 24 MiB", pushes,
		func(r *ArchiverResult) uint64 { return max(r.Invocations.MaxRSS, r.Burst.ProcHWM) }, 24*MiB, 0)

	if baseline != nil {
		for _, r := range tusks {
			b := baseline.Archiver(r.Name)
			if b == nil || b.Skipped != "" || b.Error != "" {
				add("peaks within 10% of the 180 s burst", r.Name+": no baseline result", NotMeasured)
				continue
			}
			nowC, nowR := targetPeaks(r)
			wasC, wasR := targetPeaks(b)
			for _, m := range []struct {
				what     string
				now, was uint64
			}{
				{"committed", nowC, wasC},
				{"RSS", nowR, wasR},
			} {
				ok := float64(m.now) <= 1.10*float64(m.was)
				add("peaks within 10% of the 180 s burst",
					fmt.Sprintf("%s %s: %s vs %s (%+.1f%%)", r.Name, m.what, mib(m.now), mib(m.was), pct(m.now, m.was)),
					verdict(ok))
			}
		}
	}
	return out
}

// targetPeaks are the peaks the targets speak of: the daemon process's for
// the daemon, one wal-push process's for wal-push.
func targetPeaks(r *ArchiverResult) (committed, rss uint64) {
	if r.Kind == KindTuskDaemon {
		return r.Burst.ResidentCommitted, max(r.Burst.ResidentHWM, r.Burst.ResidentRSS)
	}
	return r.Burst.ProcCommitted, max(r.Burst.ProcHWM, r.Burst.ProcRSS)
}

func pct(now, was uint64) float64 {
	if was == 0 {
		return 0
	}
	return 100 * (float64(now) - float64(was)) / float64(was)
}

// SectionKey names the docs section of a run: one section per burst length,
// so a 720 s run does not replace the 180 s results.
func SectionKey(sum *Summary) string {
	k := fmt.Sprintf("burst-%.0fs", sum.Settings.Duration)
	if st := sum.Settings.Storage; st != "" && st != "s3" {
		k += "-" + st
	}
	return k
}

const (
	beginMarker = "<!-- tusk-bench:begin %s -->"
	endMarker   = "<!-- tusk-bench:end %s -->"
)

// ReplaceSection puts section between the begin/end markers of key in doc,
// replacing what was there, or appends it (with markers) when doc has none.
func ReplaceSection(doc []byte, key, section string) []byte {
	begin := []byte(fmt.Sprintf(beginMarker, key))
	end := []byte(fmt.Sprintf(endMarker, key))
	block := append(append(append(append(append([]byte{}, begin...), '\n'), strings.TrimRight(section, "\n")...), '\n'), end...)
	i := bytes.Index(doc, begin)
	if i >= 0 {
		if j := bytes.Index(doc[i:], end); j >= 0 {
			out := append([]byte{}, doc[:i]...)
			out = append(out, block...)
			return append(out, doc[i+j+len(end):]...)
		}
	}
	out := append([]byte{}, bytes.TrimRight(doc, "\n")...)
	if len(out) > 0 {
		out = append(out, '\n', '\n')
	}
	out = append(out, block...)
	return append(out, '\n')
}

// Markdown renders a run as a docs section: settings, machine, a table of
// every archiver's figures and the targets.
func Markdown(sum *Summary, baseline *Summary, baselineName string) string {
	var b strings.Builder
	m, st := sum.Machine, sum.Settings
	fmt.Fprintf(&b, "### Burst of %.0f s — %s\n\n", st.Duration, sum.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %d CPUs, %.1f GiB RAM, Linux %s; load average at start %s", m.CPUs, float64(m.MemTotal)/(1<<30), m.Kernel, m.LoadAvg)
	if m.OtherPG > 0 {
		fmt.Fprintf(&b, " (%d other PostgreSQL processes were running)", m.OtherPG)
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "- Software: %s; %s; versitygw %s (posix backend, TLS, loopback); tusk %s; %s.\n",
		m.Postgres, orNone(m.PgBackRest, "pgBackRest not used"), m.Versitygw, m.Tusk, m.GoVersion)
	fmt.Fprintf(&b, "- Workload: pgbench %s, scale %d, %d clients, %d threads, plus a wide-row churn (%d rows of %d B, %d rows per update); %d MiB segments.\n",
		st.PgbenchMode, st.Scale, st.Clients, st.Jobs, st.WideRows, st.WideRowBytes, st.WideBatch, st.SegmentMiB)
	fmt.Fprintf(&b, "- Archivers: upload concurrency %d, %s", st.UploadConcurrency, st.Compression)
	if st.StorageDesc != "" {
		fmt.Fprintf(&b, ", storage %s", st.StorageDesc)
	}
	fmt.Fprintf(&b, "; PostgreSQL: `%s`.\n", strings.Join(st.PostgresConf, "`, `"))
	if sum.OutDir != "" {
		fmt.Fprintf(&b, "- Raw samples, summary and plots: `%s/`.\n", sum.OutDir)
	}
	b.WriteString("\n")

	rs := sum.Archivers
	b.WriteString("| |")
	for _, r := range rs {
		fmt.Fprintf(&b, " %s |", r.Name)
	}
	b.WriteString("\n|---|")
	for range rs {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	row := func(label string, f func(r *ArchiverResult) string) {
		fmt.Fprintf(&b, "| %s |", label)
		for i := range rs {
			r := &rs[i]
			switch {
			case r.Skipped != "":
				b.WriteString(" skipped |")
			case r.Error != "":
				b.WriteString(" failed |")
			default:
				fmt.Fprintf(&b, " %s |", f(r))
			}
		}
		b.WriteString("\n")
	}
	mb := func(v uint64) string { return fmt.Sprintf("%.1f", float64(v)/MiB) }
	row("WAL generated (GiB)", func(r *ArchiverResult) string { return fmt.Sprintf("%.2f", float64(r.WALBytes)/(1<<30)) })
	row("segments archived", func(r *ArchiverResult) string { return fmt.Sprint(r.ArchivedSegments) })
	row("archive failures (pg_stat_archiver)", func(r *ArchiverResult) string { return fmt.Sprint(r.Failures) })
	row("max `.ready` backlog (segments)", func(r *ArchiverResult) string { return fmt.Sprint(r.Burst.Ready) })
	row("drain after the burst (s)", func(r *ArchiverResult) string {
		if !r.Drained {
			return fmt.Sprintf("> %.0f (not drained)", r.DrainSeconds)
		}
		return fmt.Sprintf("%.1f", r.DrainSeconds)
	})
	row("peak committed, all processes (MiB)", func(r *ArchiverResult) string { return mb(r.Burst.Committed) })
	row("peak RSS, all processes (MiB)", func(r *ArchiverResult) string { return mb(r.Burst.RSS) })
	row("peak committed, one process (MiB)", func(r *ArchiverResult) string { return mb(r.Burst.ProcCommitted) })
	row("peak RSS of one process (MiB)", func(r *ArchiverResult) string { return mb(max(r.Burst.ProcHWM, r.Burst.ProcRSS)) })
	row("peak VmPeak, one process (MiB)", func(r *ArchiverResult) string { return mb(r.Burst.ProcVmPeak) })
	row("resident process: peak committed / RSS (MiB)", func(r *ArchiverResult) string {
		if r.Burst.ResidentCommitted == 0 && r.Burst.ResidentHWM == 0 {
			return "–"
		}
		return mb(r.Burst.ResidentCommitted) + " / " + mb(max(r.Burst.ResidentHWM, r.Burst.ResidentRSS))
	})
	row("resident process: peak anonymous RSS (MiB)", func(r *ArchiverResult) string {
		if r.Burst.ResidentRSSAnon == 0 {
			return "–"
		}
		return mb(r.Burst.ResidentRSSAnon)
	})
	row("resident process after the burst: committed / RSS (MiB)", func(r *ArchiverResult) string {
		if r.After.ResidentCommitted == 0 && r.After.ResidentRSS == 0 {
			return "–"
		}
		return mb(r.After.ResidentCommitted) + " / " + mb(r.After.ResidentRSS)
	})
	row("max processes / threads at once", func(r *ArchiverResult) string { return fmt.Sprintf("%d / %d", r.Burst.Procs, r.Burst.Threads) })
	row("archive_command runs (non-zero exits)", func(r *ArchiverResult) string {
		return fmt.Sprintf("%d (%d)", r.Invocations.Count, r.Invocations.Failed)
	})
	row("archive_command max / mean RSS per run (MiB)", func(r *ArchiverResult) string {
		return mb(r.Invocations.MaxRSS) + " / " + mb(r.Invocations.MeanRSS)
	})
	row("detached workers reaped: count / max RSS (MiB)", func(r *ArchiverResult) string {
		if r.Reaped.Count == 0 {
			return "–"
		}
		return fmt.Sprintf("%d / %s", r.Reaped.Count, mb(r.Reaped.MaxRSS))
	})
	row("CPU s: archive_command + resident", func(r *ArchiverResult) string {
		return fmt.Sprintf("%.1f + %.1f", r.CPUInvocations, r.CPUResident)
	})
	row("CPU s per GiB archived", func(r *ArchiverResult) string { return fmt.Sprintf("%.2f", r.CPUPerGB) })
	row("stored / archived bytes", func(r *ArchiverResult) string {
		if r.ArchivedBytes == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", float64(r.StoredBytes)/float64(r.ArchivedBytes))
	})
	row("pgbench tps (main / wide)", func(r *ArchiverResult) string { return fmt.Sprintf("%.0f / %.0f", r.TPS, r.WideTPS) })
	row("CPU s used by other processes meanwhile", func(r *ArchiverResult) string { return fmt.Sprintf("%.0f", r.ForeignCPU) })

	var notes []string
	for _, r := range rs {
		if r.Skipped != "" {
			notes = append(notes, fmt.Sprintf("- %s skipped: %s", r.Name, r.Skipped))
		}
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("- %s failed: %s", r.Name, r.Error))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}

	if len(sum.Idle) > 0 {
		b.WriteString("\nIdle daemon (started, no archiving):\n\n")
		for _, id := range sum.Idle {
			if id.Error != "" {
				fmt.Fprintf(&b, "- %s: %s\n", id.Name, id.Error)
				continue
			}
			fmt.Fprintf(&b, "- %s after %.0f s: RSS %s of which %s anonymous (max %s, VmHWM %s), committed %s, %d threads\n",
				id.Name, id.Seconds, mib(id.RSS), mib(id.RSSAnon), mib(id.MaxRSS), mib(id.HWM), mib(id.Committed), id.Threads)
		}
	}

	b.WriteString("\nTargets:\n\n| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range Targets(sum, baseline) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Goal, orNone(t.Measured, "–"), t.Verdict)
	}
	if baseline != nil && baselineName != "" {
		fmt.Fprintf(&b, "\nLong-burst peaks compared with `%s`.\n", baselineName)
	}
	return b.String()
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

package report

import (
	"bytes"
	"encoding/csv"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseTimeLog(t *testing.T) {
	log := `inv 0.21 0.05 0.02 21504 0
Command exited with non-zero status 1
inv 1.50 0.30 0.10 30000 1
Command terminated by signal 9
inv 0.00 0.00 0.00 0 0
inv broken
inv 0.1 -1 0 100 0
inv 0.1 0.1 0.1 x 0
`
	inv, err := ParseTimeLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []Invocation{
		{Elapsed: 0.21, User: 0.05, Sys: 0.02, MaxRSS: 21504 << 10, Exit: 0},
		{Elapsed: 1.5, User: 0.3, Sys: 0.1, MaxRSS: 30000 << 10, Exit: 1},
		{},
	}
	if len(inv) != len(want) {
		t.Fatalf("got %d records %+v, want %d", len(inv), inv, len(want))
	}
	for i := range want {
		if inv[i] != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, inv[i], want[i])
		}
	}
	st := Invocations(inv)
	if st.Count != 3 || st.Failed != 1 || st.MaxRSS != 30000<<10 || st.MaxElapsed != 1.5 {
		t.Fatalf("stats %+v", st)
	}
	if d := st.CPU - 0.47; d > 1e-9 || d < -1e-9 {
		t.Fatalf("CPU %v, want 0.47", st.CPU)
	}
	if st.MeanRSS != (21504+30000)<<10/3 {
		t.Fatalf("MeanRSS %d", st.MeanRSS)
	}
}

func FuzzParseTimeLog(f *testing.F) {
	f.Add([]byte("inv 0.21 0.05 0.02 21504 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, _ := ParseTimeLog(bytes.NewReader(b))
		for _, i := range inv {
			if i.Elapsed < 0 || i.User < 0 || i.Sys < 0 {
				t.Fatalf("negative time in %+v", i)
			}
		}
	})
}

func TestPeaksOf(t *testing.T) {
	samples := []Sample{
		{Phase: PhaseBurst, Committed: 10, RSS: 5, MaxProcHWM: 7, Ready: 3, Procs: 2},
		{Phase: PhaseDrain, Committed: 20, RSS: 4, MaxProcHWM: 9, Ready: 1, Procs: 1},
		{Phase: PhaseSettle, Committed: 99, RSS: 99, MaxProcHWM: 99, Ready: 0, Procs: 9},
	}
	p := PeaksOf(samples, PhaseBurst, PhaseDrain)
	if p.Committed != 20 || p.RSS != 5 || p.ProcHWM != 9 || p.Ready != 3 || p.Procs != 2 {
		t.Fatalf("peaks %+v", p)
	}
	if all := PeaksOf(samples); all.Committed != 99 || all.Procs != 9 {
		t.Fatalf("all peaks %+v", all)
	}
}

func TestWriteCSV(t *testing.T) {
	var buf bytes.Buffer
	s := []Sample{{Archiver: "a", T: 1.5, Phase: PhaseBurst, Procs: 1, RSS: 100, Committed: 200, CPU: 0.25, Ready: 4, WALBytes: 1 << 24}}
	if err := WriteCSV(&buf, s); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || len(recs[0]) != len(recs[1]) {
		t.Fatalf("records %v", recs)
	}
	get := func(col string) string {
		for i, h := range recs[0] {
			if h == col {
				return recs[1][i]
			}
		}
		t.Fatalf("no column %s", col)
		return ""
	}
	if get("rss_bytes") != "100" || get("committed_bytes") != "200" || get("t_s") != "1.50" || get("ready") != "4" || get("wal_bytes") != "16777216" {
		t.Fatalf("row %v", recs[1])
	}
}

func TestReplaceSection(t *testing.T) {
	doc := []byte("# Benchmarks\n\nintro\n")
	doc = ReplaceSection(doc, "burst-180s", "first\n")
	doc = ReplaceSection(doc, "burst-720s", "long\n")
	doc = ReplaceSection(doc, "burst-180s", "second")
	got := string(doc)
	want := "# Benchmarks\n\nintro\n\n" +
		"<!-- tusk-bench:begin burst-180s -->\nsecond\n<!-- tusk-bench:end burst-180s -->\n\n" +
		"<!-- tusk-bench:begin burst-720s -->\nlong\n<!-- tusk-bench:end burst-720s -->\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if empty := string(ReplaceSection(nil, "k", "x")); empty != "<!-- tusk-bench:begin k -->\nx\n<!-- tusk-bench:end k -->\n" {
		t.Fatalf("from empty: %q", empty)
	}
}

func sampleSummary() *Summary {
	return &Summary{
		Started:  time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Settings: Settings{Duration: 180, Scale: 50, Clients: 8, Jobs: 2, PgbenchMode: "-N", SegmentMiB: 16, UploadConcurrency: 4, Compression: "lz4"},
		Archivers: []ArchiverResult{
			{Name: "tusk-daemon", Kind: KindTuskDaemon, Drained: true, DrainSeconds: 2,
				Burst:       Peaks{ResidentCommitted: 80 * MiB, ResidentHWM: 30 * MiB, Ready: 3, Committed: 90 * MiB, RSS: 40 * MiB},
				After:       Sample{ResidentRSS: 13 * MiB},
				Invocations: InvocationStats{Count: 100, CPU: 0.4, MaxRSS: 3 * MiB},
				CPUPerGB:    5, ArchivedSegments: 100},
			{Name: "tusk-walpush", Kind: KindTuskWalPush, Drained: false, DrainSeconds: 600, Failures: 2,
				Burst: Peaks{Ready: 20, ProcHWM: 20 * MiB}, Invocations: InvocationStats{MaxRSS: 40 * MiB}, CPUPerGB: 12},
			{Name: "pgbackrest", Kind: KindPgBackRest, Burst: Peaks{Ready: 14}, CPUPerGB: 8.7},
			{Name: "walg", Kind: KindGeneric, Skipped: "binary not found"},
		},
		Idle: []IdleResult{{Name: "tusk-daemon", Seconds: 30, RSS: 12 * MiB}},
	}
}

func verdicts(ts []Target) map[string][]string {
	m := map[string][]string{}
	for _, t := range ts {
		m[t.Goal] = append(m[t.Goal], t.Verdict)
	}
	return m
}

func TestTargets(t *testing.T) {
	sum := sampleSummary()
	v := verdicts(Targets(sum, nil))
	check := func(goal string, want ...string) {
		t.Helper()
		got := v[goal]
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", goal, got, want)
		}
	}
	check("tusk daemon peak committed ≤ 85 MiB", Met)
	check("tusk daemon peak RSS ≤ 32 MiB", Met)
	check("tusk daemon RSS after the burst ≤ 12 MiB", NotMet)
	check("daemon client max RSS per run ≤ 8 MiB", Met)
	// 4 ms recorded per run: GNU time's truncation leaves up to 24 ms.
	check("daemon client CPU per run ≤ 5 ms", NotMeasured)
	check("idle daemon RSS ≤ 12 MiB", Met)
	check("max .ready backlog ≤ pgBackRest's", Met, NotMet)
	check("drained within 10 s after the burst", Met, NotMet)
	check("zero archive failures", Met, NotMet)
	check("CPU s per GiB of WAL ≤ pgBackRest's", Met, NotMet)
	check("one-shot tusk wal-push peak RSS ≤ 24 MiB", NotMet)
	slow := sampleSummary()
	slow.Archivers[0].Invocations.CPU = 0.6 // 6 ms recorded per run: at least that
	if got := verdicts(Targets(slow, nil))["daemon client CPU per run ≤ 5 ms"]; strings.Join(got, ",") != NotMet {
		t.Errorf("client at 6 ms recorded per run: %v, want %s", got, NotMet)
	}
	if _, ok := v["peaks within 10% of the 180 s burst"]; ok {
		t.Error("long-burst target without a baseline")
	}

	base := sampleSummary()
	long := sampleSummary()
	long.Settings.Duration = 720
	long.Archivers[0].Burst.ResidentCommitted = 89 * MiB // daemon: +11%
	long.Archivers[0].Burst.Committed = 500 * MiB        // clients included: not a target
	long.Archivers[1].Burst.ProcHWM = 22 * MiB           // wal-push: +10%
	lv := verdicts(Targets(long, base))
	if got := strings.Join(lv["peaks within 10% of the 180 s burst"], ","); got != strings.Join([]string{NotMet, Met, Met, Met}, ",") {
		t.Errorf("long-burst verdicts %s", got)
	}
	long.Archivers[1].Burst.ProcHWM = 23 * MiB // +15%
	lv = verdicts(Targets(long, base))
	if got := strings.Join(lv["peaks within 10% of the 180 s burst"], ","); got != strings.Join([]string{NotMet, Met, Met, NotMet}, ",") {
		t.Errorf("long-burst verdicts %s", got)
	}

	none := &Summary{Settings: Settings{Duration: 180}}
	nv := verdicts(Targets(none, nil))
	if nv["tusk daemon peak committed ≤ 85 MiB"][0] != NotMeasured || nv["idle daemon RSS ≤ 12 MiB"][0] != NotMeasured ||
		nv["daemon client CPU per run ≤ 5 ms"][0] != NotMeasured {
		t.Errorf("empty summary: %v", nv)
	}
}

func TestMarkdown(t *testing.T) {
	sum := sampleSummary()
	md := Markdown(sum, nil, "")
	for _, want := range []string{
		"### Burst of 180 s — 2026-01-02 03:04 UTC",
		"| | tusk-daemon | tusk-walpush | pgbackrest | walg |",
		"| max `.ready` backlog (segments) | 3 | 20 | 14 | skipped |",
		"| drain after the burst (s) | 2.0 | > 600 (not drained) |",
		"- walg skipped: binary not found",
		"| idle daemon RSS ≤ 12 MiB | tusk-daemon: 12.0 MiB after 30 s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if SectionKey(sum) != "burst-180s" {
		t.Errorf("SectionKey %q", SectionKey(sum))
	}
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	by := map[string][]Sample{
		"a": {{T: 0, Committed: 40 * MiB, RSS: 10 * MiB, Ready: 1}, {T: 1, Committed: 50 * MiB, RSS: 20 * MiB, Ready: 3}},
		"b": {{T: 0, Committed: 60 * MiB}, {T: 1, Committed: 70 * MiB}},
	}
	files, err := Plots(dir, by, []string{"a", "b", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 5 {
		t.Fatalf("files %v", files)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 150 {
			t.Fatalf("%s: %v", f, b)
		}
	}
}

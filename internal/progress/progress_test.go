package progress

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a terminal stand-in that the bar and the test may use at
// once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// records collects log records.
type records struct {
	mu   sync.Mutex
	msgs []string
	args []map[string]slog.Value
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]slog.Value{}
	rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	r.args = append(r.args, m)
	return nil
}

func (r *records) snapshot() ([]string, []map[string]slog.Value) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...), append([]map[string]slog.Value(nil), r.args...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLine(t *testing.T) {
	const MiB, GiB = 1 << 20, 1 << 30
	for _, c := range []struct {
		done, total int64
		rate        float64
		want        string
	}{
		{1229 * MiB, 3482 * MiB, 180 * MiB, "backup-push: 1.2 GiB of 3.4 GiB (35%), 180 MiB/s, ETA 13s"},
		{512, 0, 100, "backup-push: 512 B, 100 B/s"},
		{3 * GiB, 2 * GiB, 2.5 * GiB, "backup-push: 3.0 GiB, 2.5 GiB/s"}, // past an estimate
		{GiB, 4 * GiB, 0, "backup-push: 1.0 GiB of 4.0 GiB (25%), 0 B/s"},
		{10 * GiB, 1000 * GiB, 10 * MiB, "backup-push: 10.0 GiB of 1000.0 GiB (1%), 10 MiB/s, ETA 28h09m36s"},
	} {
		if got := Line("backup-push", c.done, c.total, c.rate); got != c.want {
			t.Errorf("Line(%d, %d, %v) = %q, want %q", c.done, c.total, c.rate, got, c.want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Bytes(0), "0 B"}, {Bytes(1023), "1023 B"}, {Bytes(1536), "1.5 KiB"},
		{Bytes(5 << 40), "5.0 TiB"},
		{Rate(9.5 * (1 << 20)), "9.5 MiB/s"}, {Rate(180.4 * (1 << 20)), "180 MiB/s"},
		{Duration(59400 * time.Millisecond), "59s"}, {Duration(184 * time.Second), "3m04s"},
		{Duration(3723 * time.Second), "1h02m03s"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// TestLinesMode: without a terminal, a line with bytes, total, rate and
// ETA every interval while bytes move, none while they do not, and a last
// line at Stop.
func TestLinesMode(t *testing.T) {
	var recs records
	r := New(Options{Op: "backup-fetch", Mode: Lines, Log: slog.New(&recs), Interval: 20 * time.Millisecond, Total: 1 << 20})
	if r.Mode() != Lines {
		t.Fatalf("mode %v", r.Mode())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				r.Add(1000)
			}
		}
	})
	waitFor(t, "three progress lines", func() bool { m, _ := recs.snapshot(); return len(m) >= 3 })
	close(stop)
	wg.Wait()

	line := regexp.MustCompile(`^backup-fetch: \d+(\.\d)? (B|KiB) of 1\.0 MiB \(\d+%\), \d+(\.\d)? (B|KiB|MiB)/s, ETA \d+s$`)
	msgs, args := recs.snapshot()
	var prev int64
	for i, m := range msgs {
		if !line.MatchString(m) {
			t.Errorf("line %d: %q", i, m)
		}
		b := args[i]["bytes"].Int64()
		if b <= prev || args[i]["total"].Int64() != 1<<20 || args[i]["bytes_per_second"].Int64() <= 0 {
			t.Errorf("line %d attributes %v (previous bytes %d)", i, args[i], prev)
		}
		prev = b
	}

	// Once a line has reported every byte, nothing moves: no more lines.
	waitFor(t, "a line with every byte", func() bool {
		_, a := recs.snapshot()
		return a[len(a)-1]["bytes"].Int64() == r.Done()
	})
	before, _ := recs.snapshot()
	time.Sleep(100 * time.Millisecond)
	if after, _ := recs.snapshot(); len(after) != len(before) {
		t.Errorf("lines while no bytes moved: %q", after[len(before):])
	}

	r.Stop()
	r.Stop() // idempotent
	msgs, args = recs.snapshot()
	last := msgs[len(msgs)-1]
	if !regexp.MustCompile(`^backup-fetch: \d+\.\d KiB in \d+s, \d+(\.\d)? (B|KiB|MiB)/s$`).MatchString(last) {
		t.Errorf("final line %q", last)
	}
	if got := args[len(args)-1]["bytes"].Int64(); got != r.Done() {
		t.Errorf("final line says %d bytes, counted %d", got, r.Done())
	}
}

func TestLinesWithoutTotal(t *testing.T) {
	var recs records
	r := New(Options{Op: "backup-push", Mode: Lines, Log: slog.New(&recs), Interval: 10 * time.Millisecond})
	r.Add(5000)
	waitFor(t, "a line", func() bool { m, _ := recs.snapshot(); return len(m) >= 1 })
	r.SetTotal(20000)
	r.Add(5000)
	waitFor(t, "a second line", func() bool { m, _ := recs.snapshot(); return len(m) >= 2 })
	r.Stop()
	msgs, _ := recs.snapshot()
	if !regexp.MustCompile(`^backup-push: 4\.9 KiB, \d+(\.\d)? (B|KiB|MiB)/s$`).MatchString(msgs[0]) {
		t.Errorf("line without a total: %q", msgs[0])
	}
	if !strings.Contains(msgs[1], "9.8 KiB of 19.5 KiB (50%)") || !strings.Contains(msgs[1], "ETA") {
		t.Errorf("line after SetTotal: %q", msgs[1])
	}
}

// TestAddConcurrent counts from many goroutines while the display reads.
func TestAddConcurrent(t *testing.T) {
	for _, mode := range []Mode{Bar, Lines, Off} {
		t.Run(mode.String(), func(t *testing.T) {
			var out syncBuffer
			r := New(Options{Op: "x", Mode: mode, Out: &out, Log: slog.New(slog.DiscardHandler), Interval: time.Millisecond, Total: 8 * 20000 * 3})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 20000 {
						r.Add(int64(1 + (g+i)%5))
					}
				})
			}
			wg.Wait()
			r.Stop()
			var want int64
			for g := range 8 {
				for i := range 20000 {
					want += int64(1 + (g+i)%5)
				}
			}
			if r.Done() != want {
				t.Fatalf("Done = %d, want %d", r.Done(), want)
			}
		})
	}
}

// TestOff: nothing on the terminal, nothing in the log.
func TestOff(t *testing.T) {
	var out syncBuffer
	var recs records
	r := New(Options{Op: "backup-push", Mode: Off, Out: &out, Log: slog.New(&recs), Interval: time.Millisecond, Total: 100})
	r.Add(50)
	time.Sleep(20 * time.Millisecond)
	r.Add(50)
	r.Stop()
	if out.String() != "" {
		t.Errorf("output with progress off: %q", out.String())
	}
	if m, _ := recs.snapshot(); len(m) != 0 {
		t.Errorf("log lines with progress off: %q", m)
	}
	if r.Done() != 100 {
		t.Errorf("Done = %d", r.Done())
	}
	l := slog.New(&recs)
	if r.Logger(l) != l {
		t.Error("Logger changed the logger with no bar")
	}

	var nilR *Reporter // what a command holds when it shows nothing
	nilR.Add(1)
	nilR.SetTotal(1)
	nilR.Stop()
	if nilR.Done() != 0 || nilR.Mode() != Off || nilR.Logger(l) != l {
		t.Error("nil Reporter")
	}
}

func TestAutoMode(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, out := range []any{&bytes.Buffer{}, f} {
		if m := ResolveMode(Auto, out.(interface{ Write([]byte) (int, error) })); m != Lines {
			t.Errorf("Auto on %T = %v, want lines", out, m)
		}
	}
	if m := ResolveMode(Off, f); m != Off {
		t.Errorf("Off resolved to %v", m)
	}
}

// TestBarMode draws a bar with bytes and total, raises a short estimate
// instead of finishing early, and puts log records on their own line.
func TestBarMode(t *testing.T) {
	var out syncBuffer
	r := New(Options{Op: "backup-push", Mode: Bar, Out: &out, Total: 4 << 20})
	r.Add(1 << 20)
	waitFor(t, "the bar", func() bool { return strings.Contains(out.String(), "1.0/4.0 MiB") })
	if !strings.Contains(out.String(), "backup-push") || !strings.Contains(out.String(), "25%") {
		t.Fatalf("bar: %q", out.String())
	}

	log := r.Logger(slog.New(slog.NewTextHandler(&out, nil)))
	log.Info("tar uploaded")
	s := out.String()
	i := strings.Index(s, "time=")
	if i < 0 {
		t.Fatalf("no log record in %q", s)
	}
	// The record starts a line the bar's text was wiped from: right after
	// "\r<spaces>\r".
	before := s[:i]
	if !strings.HasSuffix(before, "\r") {
		t.Fatalf("log record written after the bar: %q", before)
	}
	wiped := before[strings.LastIndex(before[:len(before)-1], "\r")+1 : len(before)-1]
	if wiped == "" || strings.Trim(wiped, " ") != "" {
		t.Errorf("the bar's line was not wiped before the record: %q", before)
	}

	r.Add(4 << 20) // past the estimate
	waitFor(t, "the bar past its estimate", func() bool { return strings.Contains(out.String(), "5.0/5.1 MiB") })
	if strings.Contains(out.String(), "100%") {
		t.Errorf("the bar reached 100%% before the work finished: %q", out.String())
	}
	r.Finish()
	r.Stop()
	s = out.String()
	if !regexp.MustCompile(`100% \|█{30}\| \(5\.0/5\.0 MiB[^)]*\)( \[[^]]*\])?\n$`).MatchString(s) {
		t.Errorf("finished bar: %q", s[max(0, len(s)-120):])
	}
	if strings.Count(s, "\n") != 2 { // the log record's and the bar's
		t.Errorf("%d newlines: %q", strings.Count(s, "\n"), s)
	}
	// After the bar's line ended, records are written as they are.
	n := len(s)
	log.Info("backup-fetch: restored")
	if s := out.String(); !strings.HasPrefix(s[n:], "time=") {
		t.Errorf("record after Stop: %q", s[n:])
	}
}

// TestBarStopUnfinished: a failed transfer's bar stays where it stopped.
func TestBarStopUnfinished(t *testing.T) {
	var out syncBuffer
	r := New(Options{Op: "backup-push", Mode: Bar, Out: &out, Total: 4 << 20})
	r.Add(1 << 20)
	r.Stop()
	s := out.String()
	if !strings.Contains(s, "25%") || strings.Contains(s, "100%") || !strings.HasSuffix(s, "\n") {
		t.Errorf("stopped bar: %q", s)
	}
}

// TestAddDoesNotAllocate: counting costs the data path no allocation,
// whatever the display.
func TestAddDoesNotAllocate(t *testing.T) {
	for _, mode := range []Mode{Bar, Lines, Off} {
		var out syncBuffer
		r := New(Options{Op: "x", Mode: mode, Out: &out, Interval: time.Millisecond, Total: 1 << 40})
		if a := testing.AllocsPerRun(10000, func() { r.Add(256 << 10) }); a != 0 {
			t.Errorf("%v: Add allocates %v times", mode, a)
		}
		r.Stop()
	}
}

// TestBarMemory measures what a drawing bar keeps on the heap: a few KiB,
// not growing with the bytes counted nor with the frames drawn.
func TestBarMemory(t *testing.T) {
	var ms runtime.MemStats
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	r := New(Options{Op: "backup-push", Mode: Bar, Out: io.Discard, Total: 1 << 40})
	for range 10 {
		r.Add(1 << 30)
		r.redraw(time.Now())
	}
	held := heap() - before
	for range 10000 {
		r.Add(1 << 20)
		r.redraw(time.Now())
	}
	grown := heap() - before - held
	r.Stop()
	t.Logf("bar reporter heap: %d bytes after 10 frames, %+d after 10000 more", held, grown)
	if held > 64<<10 {
		t.Errorf("a bar reporter holds %d bytes", held)
	}
	if grown > 64<<10 { // measurement noise is about 30 KiB; a leak of 7 bytes a frame shows
		t.Errorf("heap grew by %d bytes over 10000 frames", grown)
	}
}

func BenchmarkAdd(b *testing.B) {
	r := New(Options{Op: "x", Mode: Lines, Log: slog.New(slog.DiscardHandler), Interval: time.Millisecond})
	defer r.Stop()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Add(256 << 10)
		}
	})
}

// TestStopBeforeAnyByte: a transfer that failed before it moved a byte
// leaves no summary line and no bar, whatever the display.
func TestStopBeforeAnyByte(t *testing.T) {
	var recs records
	r := New(Options{Op: "backup-push", Mode: Lines, Log: slog.New(&recs), Interval: time.Hour})
	r.Stop()
	if msgs, _ := recs.snapshot(); len(msgs) != 0 {
		t.Errorf("lines logged for a transfer that moved nothing: %q", msgs)
	}

	var out syncBuffer
	b := New(Options{Op: "backup-push", Mode: Bar, Out: &out, Total: 4 << 20})
	waitFor(t, "the bar", func() bool { return strings.Contains(out.String(), "backup-push") })
	b.Stop()
	s := out.String()
	if tail := s[strings.LastIndex(s, "\r")+1:]; tail != "" || strings.Contains(s, "\n") {
		t.Errorf("the bar of a transfer that moved nothing was left on screen: %q", s)
	}

	// Finished work that moved nothing still says so.
	recs = records{}
	f := New(Options{Op: "backup-fetch", Mode: Lines, Log: slog.New(&recs), Interval: time.Hour})
	f.Finish()
	if msgs, _ := recs.snapshot(); len(msgs) != 1 || !strings.HasPrefix(msgs[0], "backup-fetch: 0 B in ") {
		t.Errorf("finished transfer: %q", msgs)
	}
}

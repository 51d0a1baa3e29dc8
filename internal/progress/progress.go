// Package progress shows how far a long transfer (backup-push,
// backup-fetch) has come: a bar with bytes, rate and ETA on a terminal, a
// log line every few seconds otherwise. The work only counts bytes with
// Add; drawing happens on a ticker goroutine of its own, so the cost to
// the data path is one atomic add, whatever the display does.
package progress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Mode selects the display.
type Mode int

const (
	// Auto draws a bar when Out is a terminal and logs lines otherwise.
	Auto Mode = iota
	// Bar draws a bar on Out.
	Bar
	// Lines logs one line every Interval.
	Lines
	// Off shows nothing (machine-readable output, --json).
	Off
)

func (m Mode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Bar:
		return "bar"
	case Lines:
		return "lines"
	case Off:
		return "off"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DefaultInterval is how often Lines mode logs.
const DefaultInterval = 5 * time.Second

// barRefresh is how often the bar is redrawn: often enough to look live,
// rare enough that drawing costs nothing measurable.
const barRefresh = 200 * time.Millisecond

// Options configure a Reporter.
type Options struct {
	// Op names the operation; it starts every line ("backup-push: ...").
	Op   string
	Mode Mode
	// Out is where the bar is drawn; nil means os.Stderr. Auto looks at
	// whether it is a terminal.
	Out io.Writer
	// Log receives the lines in Lines mode (at Info); nil discards them.
	Log *slog.Logger
	// Interval between lines in Lines mode; 0 means DefaultInterval.
	Interval time.Duration
	// Total is the expected number of bytes; 0 when not known yet
	// (SetTotal can give it later). Without it there is no percentage and
	// no ETA.
	Total int64
}

// Reporter counts bytes and displays them. Add, SetTotal and Done are safe
// for concurrent use and never allocate; all methods accept a nil
// Reporter, which counts nothing.
type Reporter struct {
	done  atomic.Int64
	total atomic.Int64

	op       string
	mode     Mode
	out      io.Writer
	log      *slog.Logger
	interval time.Duration
	start    time.Time

	// mu serialises everything written to out: bar redraws, and log
	// records when the logger from Logger shares the terminal.
	mu       sync.Mutex
	bar      *progressbar.ProgressBar
	barTotal int64 // the bar's max as last set, -1 while unknown
	complete bool  // Finish: the bar may reach 100%
	stopped  bool  // the bar's line is ended: log records need no clearing

	stopOnce sync.Once
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// ResolveMode turns Auto into Bar or Lines for out.
func ResolveMode(m Mode, out io.Writer) Mode {
	if m != Auto {
		return m
	}
	if f, ok := out.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(f.Fd())) {
		return Bar
	}
	return Lines
}

// New starts a Reporter; Stop ends its display.
func New(o Options) *Reporter {
	if o.Out == nil {
		o.Out = os.Stderr
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	r := &Reporter{
		op: o.Op, mode: ResolveMode(o.Mode, o.Out), out: o.Out, log: o.Log,
		interval: o.Interval, start: time.Now(), barTotal: -1,
	}
	r.total.Store(max(o.Total, 0))
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	switch r.mode {
	case Bar:
		r.bar = r.newBar()
		r.wg.Go(func() { r.loop(ctx, barRefresh, r.redraw) })
	case Lines:
		last, lastAt := int64(0), r.start
		rate := 0.0
		r.wg.Go(func() {
			r.loop(ctx, r.interval, func(now time.Time) {
				last, lastAt, rate = r.logLine(now, last, lastAt, rate)
			})
		})
	}
	return r
}

// Mode is the display in use (never Auto).
func (r *Reporter) Mode() Mode {
	if r == nil {
		return Off
	}
	return r.mode
}

// Add counts n more bytes.
func (r *Reporter) Add(n int64) {
	if r != nil {
		r.done.Add(n)
	}
}

// SetTotal sets the expected number of bytes (0: unknown).
func (r *Reporter) SetTotal(n int64) {
	if r != nil {
		r.total.Store(max(n, 0))
	}
}

// Done is the number of bytes counted so far.
func (r *Reporter) Done() int64 {
	if r == nil {
		return 0
	}
	return r.done.Load()
}

// Total is the expected number of bytes (0: unknown).
func (r *Reporter) Total() int64 {
	if r == nil {
		return 0
	}
	return r.total.Load()
}

// Finish ends the display of work that completed: the bar shows 100%
// whatever the estimated total was. Otherwise it is Stop.
func (r *Reporter) Finish() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.complete = true
	r.mu.Unlock()
	r.Stop()
}

// Stop ends the display: the bar is left as it is on its own line, and in
// Lines mode a last line gives the bytes moved, the time taken and the
// average rate; when nothing was counted and Finish was not called, the
// bar is wiped and no last line is logged. Further Adds are still counted. Stop may be called more
// than once; after Finish it does nothing.
func (r *Reporter) Stop() {
	if r == nil {
		return
	}
	r.stopOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
		elapsed := time.Since(r.start)
		done := r.done.Load()
		// A transfer that failed before its first byte (a stopped server,
		// a missing backup) shows nothing: its error says all there is.
		r.mu.Lock()
		ran := done > 0 || r.complete
		r.mu.Unlock()
		switch r.mode {
		case Bar:
			r.mu.Lock()
			if ran {
				r.redrawLocked()
				if !r.bar.IsFinished() {
					_ = r.bar.Exit() // prints the newline that ends the bar's line
				} // else reaching 100% printed it
			} else {
				_ = r.bar.Clear()
			}
			r.stopped = true
			r.mu.Unlock()
		case Lines:
			if !ran {
				break
			}
			r.log.Info(fmt.Sprintf("%s: %s in %s, %s", r.op, Bytes(done), Duration(elapsed), Rate(float64(done)/max(elapsed.Seconds(), 1e-3))),
				"bytes", done, "seconds", math.Round(elapsed.Seconds()*10)/10)
		}
	})
}

func (r *Reporter) loop(ctx context.Context, every time.Duration, tick func(time.Time)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			tick(now)
		}
	}
}

// logLine logs one line if bytes moved since the last one (a wait, such as
// pg_backup_stop's for WAL archiving, stays quiet). rate is smoothed over
// the last few lines so one slow interval does not swing the ETA.
func (r *Reporter) logLine(now time.Time, last int64, lastAt time.Time, rate float64) (int64, time.Time, float64) {
	done := r.done.Load()
	if done == last {
		return last, lastAt, rate
	}
	cur := float64(done-last) / max(now.Sub(lastAt).Seconds(), 1e-3)
	if rate == 0 {
		rate = cur
	} else {
		rate = 0.5*rate + 0.5*cur
	}
	total := r.total.Load()
	args := []any{"bytes", done, "bytes_per_second", int64(rate)}
	if total > 0 {
		args = append(args, "total", total)
	}
	r.log.Info(Line(r.op, done, total, rate), args...)
	return done, now, rate
}

// Line is the text of one progress line:
// "backup-push: 1.2 GiB of 3.4 GiB (35%), 180 MiB/s, ETA 12s". Without a
// total it is "backup-push: 1.2 GiB, 180 MiB/s". Past an estimated total
// it shows the bytes alone.
func Line(op string, done, total int64, rate float64) string {
	if total <= 0 || done > total {
		return fmt.Sprintf("%s: %s, %s", op, Bytes(done), Rate(rate))
	}
	s := fmt.Sprintf("%s: %s of %s (%d%%), %s", op, Bytes(done), Bytes(total), done*100/total, Rate(rate))
	if rate > 0 {
		s += ", ETA " + Duration(time.Duration(float64(total-done)/rate*float64(time.Second)))
	}
	return s
}

// newBar makes the bar. It draws whenever it is handed the counters: the
// ticker sets the pace, and Stop's last draw must not be skipped.
func (r *Reporter) newBar() *progressbar.ProgressBar {
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(r.out),
		progressbar.OptionSetDescription(r.op),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		// The library's own spinner goroutine (started for a bar without
		// a total) reads the bar's state without its lock; the ticker
		// redraws often enough.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionOnCompletion(func() { io.WriteString(r.out, "\n") }),
	)
}

func (r *Reporter) redraw(time.Time) {
	r.mu.Lock()
	r.redrawLocked()
	r.mu.Unlock()
}

// redrawLocked hands the counters to the bar. The bar must never reach its
// max while work goes on (it would consider itself finished and stop
// drawing), so an estimated total that turns out short is raised just
// above what was done.
func (r *Reporter) redrawLocked() {
	done, total := r.done.Load(), r.total.Load()
	switch {
	case r.complete:
		total = done
	case total > 0 && done >= total:
		total = done + done/100 + 1
	}
	if total > 0 && total != r.barTotal {
		r.bar.ChangeMax64(total)
		r.barTotal = total
	}
	_ = r.bar.Set64(done) // drawing errors (a closed terminal) are not the backup's
}

// Logger returns log, changed so that in Bar mode each record first clears
// the bar's line (the next redraw puts the bar back under it) instead of
// being written into the middle of the bar. In other modes it returns log.
func (r *Reporter) Logger(log *slog.Logger) *slog.Logger {
	if r == nil || r.mode != Bar {
		return log
	}
	return slog.New(clearingHandler{h: log.Handler(), r: r})
}

type clearingHandler struct {
	h slog.Handler
	r *Reporter
}

func (c clearingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return c.h.Enabled(ctx, l)
}

func (c clearingHandler) Handle(ctx context.Context, rec slog.Record) error {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if !c.r.stopped {
		_ = c.r.bar.Clear()
	}
	return c.h.Handle(ctx, rec)
}

func (c clearingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return clearingHandler{c.h.WithAttrs(as), c.r}
}

func (c clearingHandler) WithGroup(name string) slog.Handler {
	return clearingHandler{c.h.WithGroup(name), c.r}
}

// Bytes formats n in IEC units: "512 B", "1.2 GiB".
func Bytes(n int64) string {
	v, unit := scale(float64(n))
	if unit == "B" {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// Rate formats bytes per second: "180 MiB/s", "2.5 GiB/s".
func Rate(bps float64) string {
	v, unit := scale(bps)
	if unit == "B" || v >= 10 {
		// Whole units: tenths of a fast rate are noise.
		return fmt.Sprintf("%d %s/s", int64(math.Round(v)), unit)
	}
	return fmt.Sprintf("%.1f %s/s", v, unit)
}

// scale expresses n in the largest IEC unit it reaches.
func scale(n float64) (float64, string) {
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return n, units[i]
}

// Duration formats d to the second: "12s", "3m04s", "1h02m03s".
func Duration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm%02ds", s/3600, s/60%60, s%60)
	}
}

package report

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// series is one line of a plot.
type series struct {
	name string
	xy   plotter.XYs
}

func lineOf(samples []Sample, y func(Sample) float64) plotter.XYs {
	xy := make(plotter.XYs, 0, len(samples))
	for _, s := range samples {
		xy = append(xy, plotter.XY{X: s.T, Y: y(s)})
	}
	return xy
}

func savePlot(path, title, ylabel string, lines []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the burst started"
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	top := 0.0
	for _, l := range lines {
		for _, pt := range l.xy {
			top = max(top, pt.Y)
		}
	}
	// Headroom above the data keeps the legend from hiding it.
	p.Y.Max = max(top*1.35, 1)
	for i, l := range lines {
		if len(l.xy) == 0 {
			continue
		}
		ln, err := plotter.NewLine(l.xy)
		if err != nil {
			return fmt.Errorf("plot %s, line %s: %w", path, l.name, err)
		}
		ln.LineStyle.Color = plotutil.Color(i)
		ln.LineStyle.Width = vg.Points(1.2)
		p.Add(ln)
		p.Legend.Add(l.name, ln)
	}
	if err := p.Save(20*vg.Centimeter, 11*vg.Centimeter, path); err != nil {
		return fmt.Errorf("saving plot %s: %w", path, err)
	}
	return nil
}

// Plots writes PNGs into dir: committed memory, RSS and the .ready backlog of
// every archiver over time, and one memory plot per archiver. It returns the
// files written.
func Plots(dir string, byArchiver map[string][]Sample, order []string) ([]string, error) {
	toMiB := func(v uint64) float64 { return float64(v) / MiB }
	var files []string
	overview := []struct {
		file, title, ylabel string
		y                   func(Sample) float64
	}{
		{"committed.png", "Committed memory, sum of archiver processes", "MiB", func(s Sample) float64 { return toMiB(s.Committed) }},
		{"rss.png", "RSS, sum of archiver processes", "MiB", func(s Sample) float64 { return toMiB(s.RSS) }},
		{"backlog.png", ".ready backlog", "segments", func(s Sample) float64 { return float64(s.Ready) }},
	}
	for _, o := range overview {
		var lines []series
		for _, name := range order {
			lines = append(lines, series{name, lineOf(byArchiver[name], o.y)})
		}
		path := filepath.Join(dir, o.file)
		if err := savePlot(path, o.title, o.ylabel, lines); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	for _, name := range order {
		s := byArchiver[name]
		if len(s) == 0 {
			continue
		}
		lines := []series{
			{"committed, sum", lineOf(s, func(s Sample) float64 { return toMiB(s.Committed) })},
			{"RSS, sum", lineOf(s, func(s Sample) float64 { return toMiB(s.RSS) })},
			{"VmHWM, largest process", lineOf(s, func(s Sample) float64 { return toMiB(s.MaxProcHWM) })},
			{"committed, resident", lineOf(s, func(s Sample) float64 { return toMiB(s.ResidentCommitted) })},
			{"RSS, resident", lineOf(s, func(s Sample) float64 { return toMiB(s.ResidentRSS) })},
		}
		path := filepath.Join(dir, name+"-memory.png")
		if err := savePlot(path, name+": memory", "MiB", lines); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

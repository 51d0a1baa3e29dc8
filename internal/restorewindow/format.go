package restorewindow

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// pgTimeLayout is how PostgreSQL prints a timestamptz in UTC; it is
// accepted as is by recovery_target_time and backup-fetch --target-time.
const pgTimeLayout = "2006-01-02 15:04:05.999999-07"

func pgTime(t time.Time) string {
	if t.IsZero() {
		return "time unknown"
	}
	return t.UTC().Format(pgTimeLayout)
}

// WriteText prints the report for people: per timeline its ranges, gaps
// and restore points.
func WriteText(w io.Writer, rep *Report) error {
	if len(rep.Timelines) == 0 {
		_, err := fmt.Fprintln(w, "no backups and no WAL in storage")
		return err
	}
	for i, tl := range rep.Timelines {
		if i > 0 {
			fmt.Fprintln(w)
		}
		switch {
		case tl.Parent != 0:
			fmt.Fprintf(w, "timeline %d (from timeline %d at %s)\n", tl.ID, tl.Parent, tl.Begins)
		case tl.HistoryMissing:
			fmt.Fprintf(w, "timeline %d (history file not archived: ancestors unknown)\n", tl.ID)
		default:
			fmt.Fprintf(w, "timeline %d\n", tl.ID)
		}
		if len(tl.Ranges) == 0 {
			fmt.Fprintln(w, "  no restorable range (no backup with the WAL to reach consistency)")
		}
		for _, r := range tl.Ranges {
			fmt.Fprintf(w, "  range %s (%s) to %s (%s), backups %v\n",
				r.Start.LSN, pgTime(r.Start.Time), r.End.LSN, pgTime(r.End.Time), r.Backups)
		}
		for _, g := range tl.Gaps {
			fmt.Fprintf(w, "  gap %s\n", g)
		}
		for _, rp := range tl.RestorePoints {
			note := ""
			if !rp.Reachable {
				note = " (outside every range)"
			}
			fmt.Fprintf(w, "  restore point %q at %s (%s)%s\n", rp.Name, rp.LSN, pgTime(rp.Time), note)
		}
	}
	return nil
}

type jsonReport struct {
	Timelines []jsonTimeline `json:"timelines"`
}

type jsonTimeline struct {
	Timeline       uint32             `json:"timeline"`
	Parent         uint32             `json:"parent,omitempty"`
	BeginsAt       string             `json:"begins_at,omitempty"`
	HistoryMissing bool               `json:"history_missing,omitempty"`
	Ranges         []jsonRange        `json:"ranges"`
	Gaps           []jsonGap          `json:"gaps"`
	RestorePoints  []jsonRestorePoint `json:"restore_points"`
}

type jsonRange struct {
	StartLSN     string     `json:"start_lsn"`
	StartTime    *time.Time `json:"start_time"`
	EndLSN       string     `json:"end_lsn"`
	EndTime      *time.Time `json:"end_time"`
	StartSegment string     `json:"start_segment"`
	EndSegment   string     `json:"end_segment"`
	Backups      []string   `json:"backups"`
}

type jsonGap struct {
	StartSegment string `json:"start_segment"`
	EndSegment   string `json:"end_segment"`
	LSN          string `json:"lsn"`
	Reason       string `json:"reason"`
}

type jsonRestorePoint struct {
	Name      string    `json:"name"`
	LSN       string    `json:"lsn"`
	Time      time.Time `json:"time"`
	Reachable bool      `json:"reachable"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// WriteJSON prints the report as one JSON document (see the README).
func WriteJSON(w io.Writer, rep *Report) error {
	out := jsonReport{Timelines: []jsonTimeline{}}
	for _, tl := range rep.Timelines {
		j := jsonTimeline{Timeline: tl.ID, Parent: tl.Parent, HistoryMissing: tl.HistoryMissing,
			Ranges: []jsonRange{}, Gaps: []jsonGap{}, RestorePoints: []jsonRestorePoint{}}
		if tl.Parent != 0 {
			j.BeginsAt = tl.Begins.String()
		}
		for _, r := range tl.Ranges {
			j.Ranges = append(j.Ranges, jsonRange{StartLSN: r.Start.LSN.String(), StartTime: timePtr(r.Start.Time),
				EndLSN: r.End.LSN.String(), EndTime: timePtr(r.End.Time),
				StartSegment: r.StartSegment, EndSegment: r.EndSegment, Backups: r.Backups})
		}
		for _, g := range tl.Gaps {
			j.Gaps = append(j.Gaps, jsonGap{StartSegment: g.StartSegment, EndSegment: g.EndSegment, LSN: g.At.String(), Reason: g.Reason})
		}
		for _, rp := range tl.RestorePoints {
			j.RestorePoints = append(j.RestorePoints, jsonRestorePoint{Name: rp.Name, LSN: rp.LSN.String(), Time: rp.Time.UTC(), Reachable: rp.Reachable})
		}
		out.Timelines = append(out.Timelines, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

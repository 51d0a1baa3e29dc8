package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/tusk-pg/tusk/internal/storage"
)

// Detail is a listed backup with its metadata.json (backup-list --detail).
type Detail struct {
	Info
	Meta Metadata
}

// Details fetches metadata.json of every listed backup and orders them as
// WAL-G's detailed list does: by start_time when every backup has one,
// otherwise by sentinel modification time.
func Details(ctx context.Context, store storage.Storage, infos []Info) ([]Detail, error) {
	out := make([]Detail, 0, len(infos))
	for _, b := range infos {
		m, err := FetchMetadata(ctx, store, b.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, Detail{Info: b, Meta: *m})
	}
	SortDetails(out)
	return out, nil
}

// SortDetails orders details by metadata start time, or by sentinel time if
// any backup lacks a start time. Ties keep name order.
func SortDetails(ds []Detail) {
	byStart := true
	for _, d := range ds {
		if d.Meta.StartTime.IsZero() {
			byStart = false
		}
	}
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].ModTime, ds[j].ModTime
		if byStart {
			a, b = ds[i].Meta.StartTime, ds[j].Meta.StartTime
		}
		if !a.Equal(b) {
			return a.Before(b)
		}
		return ds[i].Name < ds[j].Name
	})
}

// ListFormat selects backup-list's output.
type ListFormat struct {
	// Pretty draws an ASCII table with RFC 850 times, or indents JSON.
	Pretty bool
	// JSON prints a JSON array.
	JSON bool
}

// field is one column: its plain header and value, and its --pretty forms.
type field struct {
	name, prettyName string
	value, pretty    string
}

func (b Info) fields() []field {
	return []field{
		{"backup_name", "Backup name", b.Name, b.Name},
		{"modified", "Modified", formatTime(b.ModTime, time.RFC3339), formatTime(b.ModTime, time.RFC850)},
		{"wal_file_name", "WAL file name", b.WalFileName, b.WalFileName},
		{"storage_name", "Storage name", b.StorageName, b.StorageName},
	}
}

func (d Detail) fields() []field {
	m := d.Meta
	pg := strconv.Itoa(m.PgVersion)
	start, finish := m.StartLSN.String(), m.FinishLSN.String()
	perm := strconv.FormatBool(m.IsPermanent)
	return append(d.Info.fields(),
		field{"start_time", "Start time", formatTime(m.StartTime, time.RFC3339), formatTime(m.StartTime, time.RFC850)},
		field{"finish_time", "Finish time", formatTime(m.FinishTime, time.RFC3339), formatTime(m.FinishTime, time.RFC850)},
		field{"hostname", "Hostname", m.Hostname, m.Hostname},
		field{"data_dir", "Datadir", m.DataDir, m.DataDir},
		field{"pg_version", "PG version", pg, pg},
		field{"start_lsn", "Start LSN", start, start},
		field{"finish_lsn", "Finish LSN", finish, finish},
		field{"is_permanent", "Permanent", perm, perm},
	)
}

// formatTime is WAL-G's: "-" for an unknown time.
func formatTime(t time.Time, layout string) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(layout)
}

// infoJSON has backup-list --json's keys, in order.
type infoJSON struct {
	BackupName  string    `json:"backup_name"`
	Time        time.Time `json:"time"`
	WalFileName string    `json:"wal_file_name"`
	StorageName string    `json:"storage_name"`
}

func (b Info) jsonValue() infoJSON {
	return infoJSON{b.Name, b.ModTime, b.WalFileName, b.StorageName}
}

// detailJSON is infoJSON followed by every metadata.json key.
type detailJSON struct {
	infoJSON
	metadataFields
}

// WriteList prints backups as backup-list does.
func WriteList(w io.Writer, infos []Info, f ListFormat) error {
	if f.JSON {
		vals := make([]infoJSON, len(infos))
		for i, b := range infos {
			vals[i] = b.jsonValue()
		}
		return writeJSON(w, vals, f.Pretty)
	}
	rows := make([][]field, len(infos))
	for i, b := range infos {
		rows[i] = b.fields()
	}
	return writeTable(w, rows, f.Pretty)
}

// WriteDetails prints backups as backup-list --detail does.
func WriteDetails(w io.Writer, ds []Detail, f ListFormat) error {
	if f.JSON {
		vals := make([]detailJSON, len(ds))
		for i, d := range ds {
			m := metadataFields(d.Meta)
			ud, err := genericJSON(m.UserData)
			if err != nil {
				return fmt.Errorf("backup %s: user_data: %w", d.Name, err)
			}
			m.UserData = ud
			vals[i] = detailJSON{d.Info.jsonValue(), m}
		}
		return writeJSON(w, vals, f.Pretty)
	}
	rows := make([][]field, len(ds))
	for i, d := range ds {
		rows[i] = d.fields()
	}
	return writeTable(w, rows, f.Pretty)
}

// genericJSON re-encodes user data the way WAL-G prints it after decoding
// it into a generic value: object keys sorted, numbers as float64.
func genericJSON(raw json.RawMessage) (json.RawMessage, error) {
	if normaliseRaw(raw) == nil {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// writeJSON is WAL-G's listing encoder: one line, or indented by four
// spaces with --pretty; always a trailing newline; [] when empty.
func writeJSON(w io.Writer, v any, pretty bool) error {
	enc := json.NewEncoder(w)
	if pretty {
		enc.SetIndent("", "    ")
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode backup list: %w", err)
	}
	return nil
}

func writeTable(w io.Writer, rows [][]field, pretty bool) error {
	if len(rows) == 0 {
		return nil
	}
	if pretty {
		return writeASCIITable(w, rows)
	}
	// WAL-G: text/tabwriter, min width 0, padding 1, spaces.
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(vals []string) error {
		_, err := io.WriteString(tw, strings.Join(vals, "\t")+"\n")
		return err
	}
	names := make([]string, len(rows[0]))
	for i, f := range rows[0] {
		names[i] = f.name
	}
	if err := line(names); err != nil {
		return err
	}
	for _, r := range rows {
		vals := make([]string, len(r))
		for i, f := range r {
			vals[i] = f.value
		}
		if err := line(vals); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// writeASCIITable draws the table WAL-G's --pretty prints (go-pretty's
// default style): a right-aligned "#" index column counting from 0,
// upper-case headers, left-aligned text, '+' '-' '|' borders.
func writeASCIITable(w io.Writer, rows [][]field) error {
	cells := make([][]string, 0, len(rows)+1)
	head := []string{"#"}
	for _, f := range rows[0] {
		head = append(head, strings.ToUpper(cellText(f.prettyName)))
	}
	cells = append(cells, head)
	for i, r := range rows {
		row := []string{strconv.Itoa(i)}
		for _, f := range r {
			row = append(row, cellText(f.pretty))
		}
		cells = append(cells, row)
	}
	widths := make([]int, len(head))
	for _, row := range cells {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	sep := func() {
		for _, wd := range widths {
			b.WriteString("+" + strings.Repeat("-", wd+2))
		}
		b.WriteString("+\n")
	}
	line := func(row []string) {
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i == 0 {
				b.WriteString("| " + pad + c + " ") // numbers align right
			} else {
				b.WriteString("| " + c + pad + " ")
			}
		}
		b.WriteString("|\n")
	}
	sep()
	line(cells[0])
	sep()
	for _, row := range cells[1:] {
		line(row)
	}
	sep()
	_, err := io.WriteString(w, b.String())
	return err
}

// cellText is how go-pretty shows a value: tabs as four spaces, CR LF as LF.
func cellText(s string) string {
	s = strings.ReplaceAll(s, "\t", "    ")
	return strings.ReplaceAll(s, "\r\n", "\n")
}

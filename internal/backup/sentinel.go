// Package backup is WAL-G's base-backup format, shared by push, restore
// and the commands that only read the catalogue: backup names and storage
// keys, the stop sentinel, metadata.json and files_metadata.json, wi1 page
// increments, tar partition names, delta chains, and the catalogue and
// listing of the backups in storage.
//
// It never writes to local disk. Taking a backup lives in backup/push and
// restoring one in backup/restore; both import this package, never the
// reverse. Memory: sentinels and metadata are read whole but bounded (a
// few MiB at most); files_metadata.json is streamed (ScanFilesMetadata).
package backup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/pg"
)

// DateFmt is the constant WAL-G stores in DateFmt / date_fmt.
const DateFmt = "%Y-%m-%dT%H:%M:%S.%fZ"

// SentinelVersion is the Version WAL-G writes into every new sentinel.
const SentinelVersion = 2

// Sentinel is the backup stop sentinel `<name>_backup_stop_sentinel.json`
// as WAL-G v3 writes it ("V2": the classic sentinel fields followed by the
// extended metadata fields). Field order is the emitted key order.
//
// Reading is tolerant like WAL-G's: keys match case-insensitively (so WAL-E's
// lowercase "spec" is read into Spec), unknown keys are ignored, a null LSN
// (pre-delta sentinels) reads as 0, and the legacy keys DeltaFromLSN, Files,
// TarFileSets and DatabasesByNames are read into DeltaLSN and Legacy.
type Sentinel struct {
	// LSN is the backup start LSN. 0 only for pre-delta-era sentinels, which
	// stored null; such a backup can never be a delta base.
	LSN pg.LSN `json:"LSN"`
	// DeltaLSN is the start LSN of the direct base (parent) of a delta.
	DeltaLSN pg.LSN `json:"DeltaLSN,omitempty"`
	// DeltaFrom names the direct base backup; non-empty iff this is a delta.
	DeltaFrom string `json:"DeltaFrom,omitempty"`
	// DeltaFullName names the full backup at the root of the delta chain.
	DeltaFullName string `json:"DeltaFullName,omitempty"`
	// DeltaCount is the position in the chain: first delta = 1.
	DeltaCount int `json:"DeltaCount,omitempty"`
	// PgVersion is server_version_num, e.g. 150004.
	PgVersion int `json:"PgVersion"`
	// FinishLSN is the LSN returned by pg_backup_stop.
	FinishLSN pg.LSN `json:"FinishLSN"`
	// SystemIdentifier can exceed 2^53: always an integer, never a float.
	SystemIdentifier *uint64 `json:"SystemIdentifier,omitempty"`
	UncompressedSize int64   `json:"UncompressedSize"`
	CompressedSize   int64   `json:"CompressedSize"`
	DataCatalogSize  int64   `json:"DataCatalogSize,omitempty"`
	// Spec is present only when the cluster has user tablespaces.
	Spec *TablespaceSpec `json:"Spec,omitempty"`
	// UserData is arbitrary JSON from --add-user-data; nil when absent.
	UserData              json.RawMessage `json:"UserData,omitempty"`
	FilesMetadataDisabled bool            `json:"FilesMetadataDisabled,omitempty"`
	// ChkpNum is OrioleDB's checkpoint number; WAL-G always emits the key
	// (null for plain PostgreSQL).
	ChkpNum      *uint32 `json:"ChkpNum"`
	DeltaChkpNum *uint32 `json:"DeltaChkpNum,omitempty"`

	Version     int       `json:"Version"`
	StartTime   time.Time `json:"StartTime"`
	FinishTime  time.Time `json:"FinishTime"`
	DateFmt     string    `json:"DateFmt"`
	Hostname    string    `json:"Hostname"`
	DataDir     string    `json:"DataDir"`
	IsPermanent bool      `json:"IsPermanent"`

	// Legacy holds files metadata that old WAL-G versions embedded in the
	// sentinel; nil when the sentinel has none. Never written.
	Legacy *FilesMetadata `json:"-"`
	// UnnamedBase marks a delta from a base that is no stored backup: a
	// catch-up backup, whose base is the standby at DeltaLSN. WAL-G writes
	// DeltaFrom and DeltaFullName for it as empty strings, and its
	// catchup-fetch applies page increments only when DeltaFrom is present
	// (BackupSentinelDto.IsIncremental). IsDelta stays false: there is no
	// chain to follow.
	UnnamedBase bool `json:"-"`
}

// IsDelta reports whether the backup is a delta (has a base backup).
func (s *Sentinel) IsDelta() bool { return s.DeltaFrom != "" }

// Validate checks the invariants WAL-G relies on: a delta names its parent,
// its parent's LSN, the chain's full backup and its position.
func (s *Sentinel) Validate() error {
	if s.DeltaFrom != "" && (s.DeltaLSN == 0 || s.DeltaFullName == "" || s.DeltaCount == 0) {
		return fmt.Errorf("inconsistent sentinel: DeltaFrom %q without DeltaLSN, DeltaFullName or DeltaCount", s.DeltaFrom)
	}
	if s.UnnamedBase && (s.DeltaLSN == 0 || s.DeltaCount == 0) {
		return fmt.Errorf("inconsistent sentinel: an empty DeltaFrom without DeltaLSN or DeltaCount")
	}
	if s.Spec != nil {
		if err := s.Spec.Validate(); err != nil {
			return fmt.Errorf("sentinel Spec: %w", err)
		}
	}
	return nil
}

// sentinelFields has Sentinel's fields without its methods, so decoding into
// it does not recurse into Sentinel.UnmarshalJSON.
type sentinelFields Sentinel

// UnmarshalJSON reads current and legacy sentinels.
func (s *Sentinel) UnmarshalJSON(data []byte) error {
	var aux struct {
		sentinelFields
		DeltaFromLSN *pg.LSN `json:"DeltaFromLSN"`
		// Shadows sentinelFields.DeltaFrom, to tell an empty name (WAL-G's
		// catch-up backups) from none.
		DeltaFrom *string `json:"DeltaFrom"`
		FilesMetadata
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	*s = Sentinel(aux.sentinelFields)
	if aux.DeltaFrom != nil {
		s.DeltaFrom = *aux.DeltaFrom
		s.UnnamedBase = *aux.DeltaFrom == ""
	}
	if s.DeltaLSN == 0 && aux.DeltaFromLSN != nil {
		s.DeltaLSN = *aux.DeltaFromLSN
	}
	if len(aux.Files) > 0 || len(aux.TarFileSets) > 0 || len(aux.DatabasesByNames) > 0 {
		fm := aux.FilesMetadata
		s.Legacy = &fm
	}
	s.UserData = normaliseRaw(s.UserData)
	return nil
}

// ParseSentinel decodes and validates a sentinel document.
func ParseSentinel(data []byte) (*Sentinel, error) {
	var s Sentinel
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode backup sentinel: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// EncodeSentinel renders s exactly as WAL-G's json.Marshal does: keys in
// field order, times in RFC 3339 with nanoseconds, no trailing newline.
func EncodeSentinel(s *Sentinel) ([]byte, error) {
	c := *s
	c.UserData = normaliseRaw(c.UserData)
	b, err := json.Marshal(sentinelFields(c))
	if err != nil {
		return nil, fmt.Errorf("encode backup sentinel: %w", err)
	}
	if c.UnnamedBase {
		return withEmptyBaseNames(&c, b)
	}
	return b, nil
}

// withEmptyBaseNames adds `"DeltaFrom":"","DeltaFullName":""` to the
// encoding b of an UnnamedBase sentinel where WAL-G has them: right after
// LSN and DeltaLSN, the first two keys (omitempty leaves the empty names
// out of b).
func withEmptyBaseNames(s *Sentinel, b []byte) ([]byte, error) {
	if s.DeltaFrom != "" || s.DeltaFullName != "" || s.DeltaLSN == 0 || s.DeltaCount == 0 {
		return nil, fmt.Errorf("encode backup sentinel: a delta from an unnamed base needs DeltaLSN and DeltaCount and no base names (DeltaFrom %q)", s.DeltaFrom)
	}
	head, err := json.Marshal(struct {
		LSN      pg.LSN `json:"LSN"`
		DeltaLSN pg.LSN `json:"DeltaLSN"`
	}{s.LSN, s.DeltaLSN})
	if err != nil {
		return nil, fmt.Errorf("encode backup sentinel: %w", err)
	}
	head = append(head[:len(head)-1], ',')
	if !bytes.HasPrefix(b, head) {
		return nil, fmt.Errorf("encode backup sentinel: unexpected key order in %.40s", b)
	}
	out := make([]byte, 0, len(b)+32)
	out = append(out, head...)
	out = append(out, `"DeltaFrom":"","DeltaFullName":"",`...)
	return append(out, b[len(head):]...), nil
}

// Metadata is `<name>/metadata.json` (WAL-G's ExtendedMetadataDto). After
// backup-mark it, not the sentinel, holds the truth about permanence and
// user data.
type Metadata struct {
	StartTime   time.Time `json:"start_time"`
	FinishTime  time.Time `json:"finish_time"`
	DateFmt     string    `json:"date_fmt"`
	Hostname    string    `json:"hostname"`
	DataDir     string    `json:"data_dir"`
	PgVersion   int       `json:"pg_version"`
	StartLSN    pg.LSN    `json:"start_lsn"`
	FinishLSN   pg.LSN    `json:"finish_lsn"`
	IsPermanent bool      `json:"is_permanent"`
	// SystemIdentifier is emitted as null when unknown.
	SystemIdentifier *uint64         `json:"system_identifier"`
	UncompressedSize int64           `json:"uncompressed_size"`
	CompressedSize   int64           `json:"compressed_size"`
	UserData         json.RawMessage `json:"user_data,omitempty"`
}

type metadataFields Metadata

// UnmarshalJSON treats "user_data": null as absent, as WAL-G does.
func (m *Metadata) UnmarshalJSON(data []byte) error {
	var f metadataFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	*m = Metadata(f)
	m.UserData = normaliseRaw(m.UserData)
	return nil
}

// ParseMetadata decodes a metadata.json document.
func ParseMetadata(data []byte) (*Metadata, error) {
	var m Metadata
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode backup metadata.json: %w", err)
	}
	return &m, nil
}

// EncodeMetadata renders m as WAL-G does (json.Marshal, key order as above).
func EncodeMetadata(m *Metadata) ([]byte, error) {
	c := *m
	c.UserData = normaliseRaw(c.UserData)
	b, err := json.Marshal(metadataFields(c))
	if err != nil {
		return nil, fmt.Errorf("encode backup metadata.json: %w", err)
	}
	return b, nil
}

// MetadataFromSentinel builds the metadata.json WAL-G writes next to a
// sentinel: every shared field copied.
func MetadataFromSentinel(s *Sentinel) *Metadata {
	return &Metadata{
		StartTime:        s.StartTime,
		FinishTime:       s.FinishTime,
		DateFmt:          s.DateFmt,
		Hostname:         s.Hostname,
		DataDir:          s.DataDir,
		PgVersion:        s.PgVersion,
		StartLSN:         s.LSN,
		FinishLSN:        s.FinishLSN,
		IsPermanent:      s.IsPermanent,
		SystemIdentifier: s.SystemIdentifier,
		UncompressedSize: s.UncompressedSize,
		CompressedSize:   s.CompressedSize,
		UserData:         s.UserData,
	}
}

// FilesMetadata is `<name>/files_metadata.json`. It can be large (one entry
// per file of the cluster); use EncodeFilesMetadata to stream it out.
type FilesMetadata struct {
	// Files maps tar member names ("/base/5/16384") to their description.
	Files map[string]FileDescription `json:"Files,omitempty"`
	// TarFileSets maps tar object names ("part_001.tar.lz4") to the member
	// names they hold. pg_control.tar.* is not listed.
	TarFileSets map[string][]string `json:"TarFileSets,omitempty"`
	// DatabasesByNames supports partial restore; absent when disabled.
	DatabasesByNames map[string]DatabaseObjectsInfo `json:"DatabasesByNames,omitempty"`
}

// FileDescription describes one regular file of a backup.
type FileDescription struct {
	// IsIncremented: stored in the wi1 page-increment format.
	IsIncremented bool
	// IsSkipped: not stored; unchanged since the base backup.
	IsSkipped bool
	// MTime was taken before the file was read.
	MTime         time.Time
	CorruptBlocks *CorruptBlocks `json:",omitempty"`
	UpdatesCount  uint64
}

// CorruptBlocks records page-checksum failures found by --verify.
type CorruptBlocks struct {
	CorruptBlocksCount int
	SomeCorruptBlocks  []uint32
}

// DatabaseObjectsInfo is one database's entry in DatabasesByNames.
type DatabaseObjectsInfo struct {
	Oid    uint32               `json:"oid"`
	Tables map[string]TableInfo `json:"tables_new,omitempty"`
}

// TableInfo is one relation, keyed "schema.name"; partitions nest.
type TableInfo struct {
	Oid         uint32               `json:"oid"`
	Relfilenode uint32               `json:"relfilenode"`
	SubTables   map[string]TableInfo `json:"subtables,omitempty"`
}

// ParseFilesMetadata decodes a files_metadata.json document.
func ParseFilesMetadata(data []byte) (*FilesMetadata, error) {
	var fm FilesMetadata
	if err := json.Unmarshal(data, &fm); err != nil {
		return nil, fmt.Errorf("decode backup files_metadata.json: %w", err)
	}
	return &fm, nil
}

// EncodeFilesMetadata streams fm to w in the shape WAL-G's encoder writes
// (no HTML escaping, empty maps omitted), entry by entry so that the
// document is never held in memory whole. Map keys are sorted; WAL-G's
// order is arbitrary, and readers must not depend on it.
func EncodeFilesMetadata(w interface{ Write([]byte) (int, error) }, fm *FilesMetadata) error {
	ew := &errWriter{w: w}
	enc := json.NewEncoder(ew)
	enc.SetEscapeHTML(false)
	value := func(v any) {
		if ew.err == nil {
			// Encoder.Encode appends a newline; harmless whitespace in JSON.
			ew.err = enc.Encode(v)
		}
	}
	ew.str("{")
	first := true
	section := func(name string) {
		if !first {
			ew.str(",")
		}
		first = false
		ew.str(`"` + name + `":{`)
	}
	if len(fm.Files) > 0 {
		section("Files")
		for i, k := range sortedKeys(fm.Files) {
			if i > 0 {
				ew.str(",")
			}
			value(k)
			ew.str(":")
			value(fm.Files[k])
		}
		ew.str("}")
	}
	if len(fm.TarFileSets) > 0 {
		section("TarFileSets")
		for i, k := range sortedKeys(fm.TarFileSets) {
			if i > 0 {
				ew.str(",")
			}
			value(k)
			ew.str(":")
			names := fm.TarFileSets[k]
			if names == nil {
				names = []string{} // json/v2 writes nil slices as []
			}
			value(names)
		}
		ew.str("}")
	}
	if len(fm.DatabasesByNames) > 0 {
		section("DatabasesByNames")
		for i, k := range sortedKeys(fm.DatabasesByNames) {
			if i > 0 {
				ew.str(",")
			}
			value(k)
			ew.str(":")
			value(fm.DatabasesByNames[k])
		}
		ew.str("}")
	}
	ew.str("}")
	if ew.err != nil {
		return fmt.Errorf("encode backup files_metadata.json: %w", ew.err)
	}
	return nil
}

type errWriter struct {
	w   interface{ Write([]byte) (int, error) }
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) str(s string) {
	if e.err == nil {
		_, e.err = e.w.Write([]byte(s))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TablespaceSpec is the sentinel's Spec and the --restore-spec file:
//
//	{"16385":{"loc":"/mnt/tbs1","link":"pg_tblspc/16385"},
//	 "base_prefix":"/var/lib/pgsql/data","tablespaces":["16385"]}
type TablespaceSpec struct {
	// BasePrefix is PGDATA at backup time, without a trailing slash.
	BasePrefix string
	// Tablespaces in the order of the "tablespaces" list.
	Tablespaces []Tablespace
}

// Tablespace is one entry of a TablespaceSpec.
type Tablespace struct {
	// Name is the symlink name in pg_tblspc: the tablespace OID.
	Name string
	// Location is the physical directory the symlink pointed to ("loc").
	Location string
	// Link is the symlink path relative to PGDATA ("link"),
	// normally "pg_tblspc/<Name>".
	Link string
}

type tablespaceLocation struct {
	Location string `json:"loc"`
	Link     string `json:"link"`
}

// MarshalJSON writes the object WAL-G writes (keys sorted, as Go sorts map
// keys: OIDs first, then base_prefix, then tablespaces).
func (t TablespaceSpec) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(t.Tablespaces)+2)
	names := make([]string, 0, len(t.Tablespaces))
	for _, ts := range t.Tablespaces {
		m[ts.Name] = tablespaceLocation{Location: ts.Location, Link: ts.Link}
		names = append(names, ts.Name)
	}
	m["base_prefix"] = t.BasePrefix
	m["tablespaces"] = names
	return json.Marshal(m)
}

// UnmarshalJSON reads the spec; base_prefix is required and every listed
// tablespace must have its entry.
func (t *TablespaceSpec) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	bp, ok := raw["base_prefix"]
	if !ok {
		return fmt.Errorf("tablespace spec: base_prefix is missing")
	}
	var spec TablespaceSpec
	if err := json.Unmarshal(bp, &spec.BasePrefix); err != nil {
		return fmt.Errorf("tablespace spec: base_prefix: %w", err)
	}
	spec.BasePrefix = strings.TrimRight(spec.BasePrefix, "/")
	if spec.BasePrefix == "" {
		// "/" trimmed to "" would make every link relative to the root.
		return fmt.Errorf("tablespace spec: base_prefix is empty")
	}
	var names []string
	if ns, ok := raw["tablespaces"]; ok {
		if err := json.Unmarshal(ns, &names); err != nil {
			return fmt.Errorf("tablespace spec: tablespaces: %w", err)
		}
	}
	for _, n := range names {
		entry, ok := raw[n]
		if !ok || n == "base_prefix" || n == "tablespaces" {
			return fmt.Errorf("tablespace spec: no location for tablespace %q", n)
		}
		var loc tablespaceLocation
		if err := json.Unmarshal(entry, &loc); err != nil {
			return fmt.Errorf("tablespace spec: tablespace %q: %w", n, err)
		}
		spec.Tablespaces = append(spec.Tablespaces, Tablespace{Name: n, Location: loc.Location, Link: loc.Link})
	}
	*t = spec
	return nil
}

// Validate rejects specs that cannot be restored safely: an OID that is not
// a plain name, a link other than pg_tblspc/<name>, a relative location, or
// a duplicate.
func (t *TablespaceSpec) Validate() error {
	seen := make(map[string]bool, len(t.Tablespaces))
	for _, ts := range t.Tablespaces {
		if ts.Name == "" || strings.ContainsAny(ts.Name, "/\\\x00") || ts.Name == "." || ts.Name == ".." {
			return fmt.Errorf("tablespace name %q is not a pg_tblspc entry", ts.Name)
		}
		if seen[ts.Name] {
			return fmt.Errorf("tablespace %q listed twice", ts.Name)
		}
		seen[ts.Name] = true
		if ts.Link != "pg_tblspc/"+ts.Name {
			return fmt.Errorf("tablespace %q: link %q is not pg_tblspc/%s", ts.Name, ts.Link, ts.Name)
		}
		if !strings.HasPrefix(ts.Location, "/") {
			return fmt.Errorf("tablespace %q: location %q is not an absolute path", ts.Name, ts.Location)
		}
	}
	return nil
}

// Find returns the tablespace named name.
func (t *TablespaceSpec) Find(name string) (Tablespace, bool) {
	for _, ts := range t.Tablespaces {
		if ts.Name == name {
			return ts, true
		}
	}
	return Tablespace{}, false
}

// ParseTablespaceSpec decodes and validates a spec (e.g. --restore-spec).
func ParseTablespaceSpec(data []byte) (*TablespaceSpec, error) {
	var t TablespaceSpec
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decode tablespace spec: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// UserDataEqual compares two user-data documents as WAL-G does: decoded
// into generic Go values (numbers as float64) and compared deeply. Absent
// and null are equal to each other.
func UserDataEqual(a, b json.RawMessage) (bool, error) {
	a, b = normaliseRaw(a), normaliseRaw(b)
	if a == nil || b == nil {
		return a == nil && b == nil, nil
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false, fmt.Errorf("decode user data: %w", err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false, fmt.Errorf("decode user data: %w", err)
	}
	return reflect.DeepEqual(va, vb), nil
}

// normaliseRaw maps empty and JSON null to nil, so omitempty drops them as
// WAL-G drops a nil interface.
func normaliseRaw(r json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(r)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	return r
}

package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tusk-pg/tusk/internal/fsutil"
)

// Status is the one place that reads and writes WAL status files for the
// one-shot wal-push look-ahead and the daemon alike: PostgreSQL's
// archive_status/<name>.ready and .done beside the WAL files, and WAL-G's
// walg_archive_status markers ("uploaded in the background; the next
// wal-push of it only acknowledges").
type Status struct {
	// Dir is PostgreSQL's archive_status directory.
	Dir string
	// MarkerDir is WAL-G's marker directory (see MarkerDir); empty: no
	// markers.
	MarkerDir string
}

// StatusFor returns the Status of the WAL directory holding walPath.
func StatusFor(walPath, markerDir string) Status {
	return Status{Dir: filepath.Join(filepath.Dir(walPath), "archive_status"), MarkerDir: markerDir}
}

// IsReady reports whether PostgreSQL marked name ready for archiving.
func (s Status) IsReady(name string) bool {
	_, err := os.Stat(filepath.Join(s.Dir, name+".ready"))
	return err == nil
}

// Ready lists the archivable names PostgreSQL marked ready, in the order
// its archiver takes them: timeline history files first, then by name
// (segments in WAL order).
func (s Status) Ready() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	var ready []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".ready"); ok && IsArchivableName(name) {
			ready = append(ready, name)
		}
	}
	slices.SortFunc(ready, func(a, b string) int {
		ha, hb := strings.HasSuffix(a, ".history"), strings.HasSuffix(b, ".history")
		if ha != hb {
			if ha {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return ready, nil
}

// MarkDone renames name's .ready to .done (PG_READY_RENAME), as the
// archiver would after a successful archive_command.
func (s Status) MarkDone(name string) error {
	ready := filepath.Join(s.Dir, name+".ready")
	if err := os.Rename(ready, filepath.Join(s.Dir, name+".done")); err != nil {
		return fmt.Errorf("rename %s to .done: %w", ready, err)
	}
	return nil
}

func (s Status) marker(name string) string {
	return filepath.Join(s.MarkerDir, MarkerName(name))
}

// HasMarker reports whether a background upload of name left its marker.
func (s Status) HasMarker(name string) bool {
	if s.MarkerDir == "" {
		return false
	}
	_, err := os.Lstat(s.marker(name))
	return err == nil
}

// WriteMarker records that name is stored. It is called only after the
// upload succeeded; the marker never follows a planted symlink.
func (s Status) WriteMarker(name string) error {
	if s.MarkerDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.MarkerDir, 0o700); err != nil {
		return fmt.Errorf("create marker directory: %w", err)
	}
	f, err := fsutil.Create(s.marker(name), 0o600)
	if errors.Is(err, fs.ErrExist) {
		if st, lerr := os.Lstat(s.marker(name)); lerr == nil && st.Mode().IsRegular() {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	return f.Close()
}

// TakeMarker consumes name's marker: true when there was one, so the file
// is already stored and need not be uploaded again.
func (s Status) TakeMarker(name string) (bool, error) {
	if s.MarkerDir == "" {
		return false, nil
	}
	err := os.Remove(s.marker(name))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("remove marker: %w", err)
}

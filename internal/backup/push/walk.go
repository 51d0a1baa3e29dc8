package push

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pgdata"
)

// entryKind says what a walked object becomes in the tar.
type entryKind int

const (
	entryDir     entryKind = iota // a directory entry (contents follow separately)
	entryFile                     // a regular file with its content
	entrySymlink                  // a symbolic link other than a tablespace's
)

// walkEntry is one object of the backup, in walk order.
type walkEntry struct {
	path string      // where it is on disk
	name string      // tar member name: "/" + path relative to PGDATA ("/pg_tblspc/<oid>/..." in tablespaces)
	info fs.FileInfo // from Lstat during the walk (directories and links keep it)
	kind entryKind
	// paged marks main-fork relation files, whose pages carry checksums;
	// segment numbers their blocks (block = segment × blocks per segment +
	// index in the file).
	paged   bool
	segment uint32
	link    string // symlink target
}

// walker lists PGDATA the way WAL-G does (filepath.Walk: lexical order,
// directories before their contents; tablespaces walked when pg_tblspc is
// reached, their files named through the pg_tblspc/<oid> symlink), applying
// WAL-G's exclusions and PostgreSQL's own base-backup exclusions.
type walker struct {
	root string // PGDATA, absolute, symlinks resolved
	log  *slog.Logger
	// catchup leaves the configuration files out too (catchup-push).
	catchup bool
	emit    func(walkEntry) error

	// Results.
	catalogSize int64 // WAL-G's DataCatalogSize: Lstat sizes of everything visited
	spec        []backup.Tablespace
	pgControl   *walkEntry // global/pg_control, held back to be stored last
}

// walk visits the whole tree.
func (w *walker) walk(ctx context.Context) error {
	info, err := os.Lstat(w.root)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", w.root, err)
	}
	return w.visit(ctx, w.root, "", info, nil)
}

// visit handles one object; rel is its slash path relative to PGDATA ("" for
// PGDATA itself). unlogged holds the relfilenodes with an init fork when
// the object is inside a database directory.
func (w *walker) visit(ctx context.Context, p, rel string, info fs.FileInfo, unlogged map[string]bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.catalogSize += info.Size()
	base := path.Base(rel)
	name := "/" + rel
	mode := info.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		return w.visitSymlink(p, rel, name, info)
	case mode.IsDir():
		if rel != "" && (isTempPrefixed(base)) {
			return nil
		}
		if rel == "pg_tblspc" {
			if err := w.walkTablespaces(ctx, p); err != nil {
				return err
			}
		}
		if err := w.emit(walkEntry{path: p, name: name, info: info, kind: entryDir}); err != nil {
			return err
		}
		if rel != "" && backup.Excluded(base) {
			return nil // stored empty, as WAL-G does
		}
		return w.walkDir(ctx, p, rel)
	case mode.IsRegular():
		if backup.Excluded(base) || pgExcludedFile(base) || isTempPrefixed(base) || (w.catchup && catchupExcluded(base)) {
			return nil
		}
		e := walkEntry{path: p, name: name, info: info, kind: entryFile}
		if dir := path.Dir(rel); pgdata.IsDatabaseDir(dir) || dir == "global" {
			if isTempRelation(base) {
				return nil
			}
			if rf, ok := pgdata.ParseRelFile(base); ok && unlogged[rf.Node] && rf.Fork != "init" {
				return nil
			}
		}
		e.segment, e.paged = pgdata.PagedFile(rel)
		if rel == "global/pg_control" {
			w.pgControl = &e
			return nil
		}
		return w.emit(e)
	default:
		w.log.Warn("skipping an object that is neither file, directory nor symlink", "path", p, "mode", mode.String())
		return nil
	}
}

func (w *walker) visitSymlink(p, rel, name string, info fs.FileInfo) error {
	dir, base := path.Dir(rel), path.Base(rel)
	if dir == "pg_tblspc" {
		return nil // a tablespace: its contents were walked under this name already
	}
	if backup.Excluded(base) || pgExcludedFile(base) || isTempPrefixed(base) {
		if rel == "pg_wal" || rel == "pg_xlog" {
			// pg_wal is often a symlink to another disk. WAL-G stores
			// nothing for it then, and the restored cluster lacks the
			// directory; store it as the empty directory it must be.
			di, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			return w.emit(walkEntry{path: p, name: name, info: di, kind: entryDir})
		}
		return nil
	}
	target, err := os.Readlink(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read symlink %s: %w", p, err)
	}
	return w.emit(walkEntry{path: p, name: name, info: info, kind: entrySymlink, link: target})
}

// walkDir visits a directory's children in lexical order. A directory that
// vanished (a dropped database) is skipped.
func (w *walker) walkDir(ctx context.Context, p, rel string) error {
	names, err := readDirNames(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("directory removed during the backup", "path", p)
			return nil
		}
		return fmt.Errorf("read directory %s: %w", p, err)
	}
	var unlogged map[string]bool
	if pgdata.IsDatabaseDir(rel) {
		unlogged = unloggedNodes(names)
	}
	for _, n := range names {
		cp := filepath.Join(p, n)
		info, err := os.Lstat(cp)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted during the walk, as WAL-G tolerates
			}
			return fmt.Errorf("stat %s: %w", cp, err)
		}
		crel := n
		if rel != "" {
			crel = rel + "/" + n
		}
		if err := w.visit(ctx, cp, crel, info, unlogged); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists a directory's names, sorted. Names only: a directory
// of many files costs a string each, not a FileInfo each.
func readDirNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// walkTablespaces walks every symlink in pg_tblspc, recording it in the
// spec. The tablespace directory itself gets no tar entry (the restore
// recreates the symlink from the spec); its contents are named
// /pg_tblspc/<oid>/... Directories in pg_tblspc (in-place tablespaces) are
// ordinary PGDATA contents.
func (w *walker) walkTablespaces(ctx context.Context, dir string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", dir, err)
	}
	for _, n := range names {
		link := filepath.Join(dir, n)
		info, err := os.Lstat(link)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("stat %s: %w", link, err)
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(link)
		if err != nil {
			return fmt.Errorf("read tablespace symlink %s: %w", link, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		target = filepath.Clean(target)
		w.spec = append(w.spec, backup.Tablespace{Name: n, Location: target, Link: "pg_tblspc/" + n})
		ti, err := os.Lstat(target)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				w.log.Warn("tablespace symlink points nowhere", "link", link, "target", target)
				continue
			}
			return fmt.Errorf("tablespace %s: %w", target, err)
		}
		if !ti.IsDir() {
			return fmt.Errorf("tablespace %s: %s is not a directory", link, target)
		}
		w.catalogSize += ti.Size()
		if err := w.walkDir(ctx, target, "pg_tblspc/"+n); err != nil {
			return err
		}
	}
	return nil
}

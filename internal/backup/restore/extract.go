package restore

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/wal"
)

// PgControlPath is where pg_control lives in a data directory.
const PgControlPath = "global/pg_control"

// pgControlTemp holds pg_control until every other file is in place, so a
// restore that fails midway leaves a directory PostgreSQL refuses to start
// instead of one it would crash-recover from the wrong checkpoint.
const pgControlTemp = PgControlPath + ".tusk-restore"

// ExtractBufferSize is the copy buffer each extracting worker reuses.
const ExtractBufferSize = 64 << 10

// Extractor writes the members of backup tars into a restore destination.
// Storage may be hostile, so every member name is confined: names are
// relative to the data directory (WAL-G writes them with a leading '/'),
// may not climb out of it, and are resolved through os.Root, which refuses
// any path that would leave the directory through a symlink. Tar members
// cannot create symlinks or hard links; the only symlinks are the
// pg_tblspc/<oid> links the Extractor makes from the tablespace spec, and
// files under them are written through a root opened at the tablespace's
// location instead.
//
// Extract may be called from several goroutines at once (one per tar).
type Extractor struct {
	dest        string
	root        *os.Root
	tablespaces map[string]*tablespaceRoot
	fsync       bool
	// skip names members not to restore (e.g. tablespace_map when the
	// tablespaces are remapped).
	skip     map[string]bool
	progress backup.Progress
	// existing is set on a data directory brought up to date in place
	// (catch-up): a regular file is then written under a temporary name
	// and renamed over the old one, so a crash leaves either whole.
	existing bool
	// layer describes the backup whose tars are being extracted; it
	// changes only between layers of a delta chain, never during one.
	layer extractLayer
	// blockLists reuses the block lists of page increments (*[]uint32),
	// up to 512 KiB each for a 1 GiB segment, across files and workers.
	blockLists sync.Pool

	mu       sync.Mutex
	dirModes map[dirKey]fs.FileMode // directories named in the tars

	files, bytes atomic.Int64
}

type tablespaceRoot struct {
	backup.Tablespace
	root *os.Root
}

type dirKey struct {
	tablespace string // "" for the data directory
	rel        string
}

// ExtractorOptions configure NewExtractor.
type ExtractorOptions struct {
	// Tablespaces to restore outside the data directory; nil for none.
	Tablespaces *backup.TablespaceSpec
	// NoFsync skips fsync of files and directories (WALG_TAR_DISABLE_FSYNC).
	NoFsync bool
	// Skip lists member names (without leading '/') not to restore.
	Skip []string
	// Progress, when set, is told every byte written to a restored file.
	Progress backup.Progress
	// Existing restores onto a data directory that is already there
	// (catchup-fetch): dest must hold global/pg_control, its tablespaces
	// are those its pg_tblspc links point to (Tablespaces is ignored), and
	// a page increment for a file it lacks creates the file (pages the
	// increment does not carry stay zero, as in WAL-G).
	Existing bool
}

// extractLayer says how to extract one backup of a delta chain.
type extractLayer struct {
	// increments are the members (cleaned names) stored as wi1 page
	// increments, applied onto the file an older layer restored.
	increments map[string]bool
	// createMissing lets an increment create its file (catch-up).
	createMissing bool
	// only, when non-nil, are the regular files to restore from this
	// layer: an ancestor of the requested backup supplies only the files
	// the requested backup still has.
	only map[string]bool
}

// setLayer switches to the next backup of a chain; no Extract may run.
func (e *Extractor) setLayer(l extractLayer) { e.layer = l }

// NewExtractor prepares dest for a restore: dest must be absent or an empty
// directory; every tablespace location must be absent or empty; the
// pg_tblspc/<oid> links are created.
func NewExtractor(dest string, opts ExtractorOptions) (*Extractor, error) {
	if opts.Existing {
		return existingExtractor(dest, opts)
	}
	if err := prepareEmptyDir(dest); err != nil {
		return nil, err
	}
	root, err := fsutil.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("open restore destination: %w", err)
	}
	e := &Extractor{
		dest:        dest,
		root:        root,
		tablespaces: map[string]*tablespaceRoot{},
		fsync:       !opts.NoFsync,
		skip:        map[string]bool{},
		dirModes:    map[dirKey]fs.FileMode{},
		progress:    opts.Progress,
	}
	for _, s := range opts.Skip {
		e.skip[s] = true
	}
	if opts.Tablespaces != nil {
		if err := opts.Tablespaces.Validate(); err != nil {
			e.Close()
			return nil, err
		}
		if err := checkLocations(dest, opts.Tablespaces.Tablespaces); err != nil {
			e.Close()
			return nil, err
		}
		for _, ts := range opts.Tablespaces.Tablespaces {
			if err := e.addTablespace(ts); err != nil {
				e.Close()
				return nil, err
			}
		}
	}
	return e, nil
}

// existingExtractor opens a data directory to bring up to date in place.
func existingExtractor(dest string, opts ExtractorOptions) (*Extractor, error) {
	if fi, err := os.Lstat(dest); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory (catch-up needs the standby's data directory): %v", dest, err)
	}
	root, err := fsutil.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("open data directory: %w", err)
	}
	e := &Extractor{
		dest: dest, root: root, tablespaces: map[string]*tablespaceRoot{}, fsync: !opts.NoFsync,
		skip: map[string]bool{}, dirModes: map[dirKey]fs.FileMode{}, progress: opts.Progress,
		layer: extractLayer{createMissing: true}, existing: true,
	}
	for _, s := range opts.Skip {
		e.skip[s] = true
	}
	if fi, err := root.Lstat(PgControlPath); err != nil || !fi.Mode().IsRegular() {
		e.Close()
		return nil, fmt.Errorf("%s has no %s: not a PostgreSQL data directory", dest, PgControlPath)
	}
	if _, err := root.Lstat("postmaster.pid"); err == nil {
		// Files changed under a running server would be overwritten by
		// its buffers, and its pg_control by its next checkpoint.
		e.Close()
		return nil, fmt.Errorf("%s has a postmaster.pid: stop the server first (or remove the file if the server is not running)", dest)
	}
	links, err := os.ReadDir(filepath.Join(dest, "pg_tblspc"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.Close()
		return nil, fmt.Errorf("read %s/pg_tblspc: %w", dest, err)
	}
	var spec []backup.Tablespace
	for _, l := range links {
		if l.Type()&fs.ModeSymlink == 0 {
			continue // an in-place tablespace: part of the data directory
		}
		loc, err := os.Readlink(filepath.Join(dest, "pg_tblspc", l.Name()))
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("tablespace link %s: %w", l.Name(), err)
		}
		spec = append(spec, backup.Tablespace{Name: l.Name(), Location: filepath.Clean(loc), Link: "pg_tblspc/" + l.Name()})
	}
	if err := checkLocations(dest, spec); err != nil {
		e.Close()
		return nil, err
	}
	for _, ts := range spec {
		r, err := fsutil.OpenRoot(ts.Location)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("tablespace %s: %w", ts.Name, err)
		}
		e.tablespaces[ts.Name] = &tablespaceRoot{Tablespace: ts, root: r}
	}
	return e, nil
}

// prepareEmptyDir creates dir (mode 0700) or checks that it is an empty
// directory.
func prepareEmptyDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore destination: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink: restore into the directory itself", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("restore destination: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%s is not empty (it holds %q): restore into an empty or new directory", dir, names[0])
	}
	return nil
}

// checkLocations applies DEST's rules to the tablespace locations, which
// come from the sentinel (storage, so possibly hostile) or --restore-spec:
// each is an absolute, clean path, and none lies inside DEST or another
// location, contains DEST, or equals either. Otherwise a tar part could
// write into the data directory past the Extractor's rules, pg_control
// included, through a tablespace's root. Paths are compared with the
// symlinks of their existing parents resolved.
func checkLocations(dest string, tablespaces []backup.Tablespace) error {
	seen := []struct{ name, path string }{{"the restore destination", realPath(dest)}}
	for _, ts := range tablespaces {
		what := fmt.Sprintf("tablespace %s location %q", ts.Name, ts.Location)
		if !filepath.IsAbs(ts.Location) || filepath.Clean(ts.Location) != ts.Location || ts.Location == "/" {
			return fmt.Errorf("%s is not a clean absolute path (use --restore-spec to restore it elsewhere)", what)
		}
		p := realPath(ts.Location)
		for _, o := range seen {
			if overlaps(p, o.path) {
				return fmt.Errorf("%s overlaps %s (use --restore-spec to restore it elsewhere)", what, o.name)
			}
		}
		seen = append(seen, struct{ name, path string }{"tablespace " + ts.Name, p})
	}
	return nil
}

// realPath is p with the symlinks of its longest existing prefix resolved.
func realPath(p string) string {
	rest := ""
	for cur := p; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		if cur == filepath.Dir(cur) {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

// overlaps reports whether a and b are the same directory or one holds
// the other.
func overlaps(a, b string) bool {
	within := func(x, y string) bool { return x == y || strings.HasPrefix(x, strings.TrimSuffix(y, "/")+"/") }
	return within(a, b) || within(b, a)
}

func (e *Extractor) addTablespace(ts backup.Tablespace) error {
	if err := prepareEmptyDir(ts.Location); err != nil {
		return fmt.Errorf("tablespace %s location (use --restore-spec to restore it elsewhere): %w", ts.Name, err)
	}
	r, err := fsutil.OpenRoot(ts.Location)
	if err != nil {
		return fmt.Errorf("tablespace %s: %w", ts.Name, err)
	}
	e.tablespaces[ts.Name] = &tablespaceRoot{Tablespace: ts, root: r}
	if err := e.root.MkdirAll("pg_tblspc", 0o700); err != nil {
		return fmt.Errorf("create %s/pg_tblspc: %w", e.dest, err)
	}
	if err := e.root.Symlink(ts.Location, ts.Link); err != nil {
		return fmt.Errorf("link tablespace %s: %w", ts.Name, err)
	}
	return nil
}

// Close releases the directory handles.
func (e *Extractor) Close() error {
	for _, ts := range e.tablespaces {
		ts.root.Close()
	}
	return e.root.Close()
}

// Stats reports the regular files and bytes written so far.
func (e *Extractor) Stats() (files, bytes int64) { return e.files.Load(), e.bytes.Load() }

// target is where one member goes: a root and a path inside it.
type target struct {
	root       *os.Root
	tablespace string
	rel        string // "." for the root itself
}

// CleanMemberName turns a tar member name into a path relative to the data
// directory: leading slashes (WAL-G's convention) removed, cleaned, and
// refused if it is empty, contains NUL or climbs out with "..".
func CleanMemberName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("tar member with an empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("tar member name %q contains NUL", name)
	}
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("tar member %q points outside the restore directory", name)
	}
	return rel, nil
}

// resolve maps a cleaned member name to its root. isLink reports the
// pg_tblspc/<oid> entry of a known tablespace itself.
func (e *Extractor) resolve(rel string) (t target, isLink bool) {
	if rest, ok := strings.CutPrefix(rel, "pg_tblspc/"); ok {
		oid, inner, _ := strings.Cut(rest, "/")
		if ts, ok := e.tablespaces[oid]; ok {
			if inner == "" {
				return target{root: ts.root, tablespace: oid, rel: "."}, true
			}
			return target{root: ts.root, tablespace: oid, rel: inner}, false
		}
	}
	return target{root: e.root, rel: rel}, false
}

// Extract restores every member of the tar stream r. buf is the caller's
// reusable copy buffer. It reads r to the end of the tar archive only.
func (e *Extractor) Extract(r io.Reader, buf []byte) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := e.member(hdr, tr, buf); err != nil {
			return err
		}
	}
}

func (e *Extractor) member(hdr *tar.Header, r io.Reader, buf []byte) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if isSparse(hdr) {
		// A sparse member expands to its declared size without input:
		// hostile storage could fill the disk. WAL-G never writes them.
		return fmt.Errorf("refusing sparse tar member %q", hdr.Name)
	}
	rel, err := CleanMemberName(hdr.Name)
	if err != nil {
		return err
	}
	if e.skip[rel] {
		return nil
	}
	if rel == pgControlTemp || (rel == PgControlPath && hdr.Typeflag != tar.TypeReg) {
		// pg_control appears only through Finish's rename.
		return fmt.Errorf("refusing tar member %q: only a regular file may be %s", hdr.Name, PgControlPath)
	}
	t, isLink := e.resolve(rel)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return e.dir(t, hdr)
	case tar.TypeReg: // archive/tar reports old-style '\x00' entries as TypeReg too
		if t.rel == "." || isLink {
			return fmt.Errorf("tar member %q: a regular file cannot replace a directory or tablespace link", hdr.Name)
		}
		if e.layer.only != nil && !e.layer.only[rel] {
			return nil
		}
		if e.layer.increments[rel] {
			if rel == PgControlPath {
				return fmt.Errorf("refusing tar member %q: %s cannot be a page increment", hdr.Name, PgControlPath)
			}
			return e.increment(t, hdr, r, buf)
		}
		return e.file(t, rel, hdr, r, buf)
	case tar.TypeSymlink:
		// PostgreSQL's own base tars carry pg_tblspc/<oid> as symlinks;
		// the links come from the tablespace spec instead.
		if isLink {
			return nil
		}
		if strings.HasPrefix(rel, "pg_tblspc/") && !strings.Contains(strings.TrimPrefix(rel, "pg_tblspc/"), "/") {
			return fmt.Errorf("tar member %q links tablespace to %q, which the tablespace spec does not list: restore with --restore-spec naming it", hdr.Name, hdr.Linkname)
		}
		return fmt.Errorf("refusing symlink %q -> %q in backup: only pg_tblspc tablespace links are restored", hdr.Name, hdr.Linkname)
	case tar.TypeLink:
		return fmt.Errorf("refusing hard link %q -> %q in backup", hdr.Name, hdr.Linkname)
	default:
		return fmt.Errorf("refusing tar member %q of type %q", hdr.Name, hdr.Typeflag)
	}
}

func (e *Extractor) dir(t target, hdr *tar.Header) error {
	if t.rel != "." {
		if err := t.root.MkdirAll(t.rel, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", e.display(t), err)
		}
	}
	e.mu.Lock()
	e.dirModes[dirKey{t.tablespace, t.rel}] = dirMode(hdr.Mode)
	e.mu.Unlock()
	return nil
}

func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// dirMode keeps the archived permission bits but always lets the owner
// (PostgreSQL) in; special bits from storage are never applied.
func dirMode(m int64) fs.FileMode { return fs.FileMode(m)&0o777 | 0o700 }

// fileMode keeps the archived permission bits, owner read/write always on.
func fileMode(m int64) fs.FileMode { return fs.FileMode(m)&0o777 | 0o600 }

func (e *Extractor) file(t target, rel string, hdr *tar.Header, r io.Reader, buf []byte) error {
	name := t.rel
	if t.tablespace == "" && rel == PgControlPath {
		name = pgControlTemp
	}
	if dir := path.Dir(name); dir != "." {
		if err := t.root.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create directory for %s: %w", e.display(t), err)
		}
	}
	final := ""
	if e.existing && name != pgControlTemp {
		final, name = name, path.Join(path.Dir(name), "."+path.Base(name)+".tusk-restore")
	}
	f, err := e.create(t.root, name)
	if err != nil {
		return fmt.Errorf("create %s: %w", e.display(t), err)
	}
	// The wrappers hide ReadFrom/WriteTo so the copy uses buf rather than
	// a buffer allocated per file.
	var w io.Writer = struct{ io.Writer }{f}
	if e.progress != nil {
		w = progressWriter{f, e.progress}
	}
	n, err := io.CopyBuffer(w, struct{ io.Reader }{r}, buf)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("tar member is %d bytes, header says %d", n, hdr.Size)
	}
	if err == nil {
		err = f.Chmod(fileMode(hdr.Mode))
	}
	if err == nil && e.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && final != "" {
		// Renaming replaces whatever is at final, a planted symlink
		// included, rather than writing through it.
		err = t.root.Rename(name, final)
	}
	if err != nil {
		if final != "" {
			t.root.Remove(name)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return err // already names the file
		}
		return fmt.Errorf("write %s: %w", e.display(t), err)
	}
	e.files.Add(1)
	e.bytes.Add(n)
	return nil
}

// create makes name a new, empty regular file. A regular file already
// there (from a retried tar or an older layer of a delta chain) is
// replaced; anything else, such as a symlink planted during the restore,
// is refused, never written through. The new file is created with O_EXCL,
// so a link planted in between makes the restore fail as well.
func (e *Extractor) create(root *os.Root, name string) (*os.File, error) {
	if fi, err := root.Lstat(name); err == nil {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("a %v is in the way (not created by this restore)", fi.Mode().Type())
		}
		if err := root.Remove(name); err != nil {
			return nil, err
		}
	}
	return fsutil.CreateIn(root, name, 0o600)
}

// increment applies a wi1 member onto the file an older layer restored.
func (e *Extractor) increment(t target, hdr *tar.Header, r io.Reader, buf []byte) error {
	f, err := fsutil.OpenIn(t.root, t.rel, os.O_RDWR)
	if errors.Is(err, fs.ErrNotExist) && e.layer.createMissing {
		if dir := path.Dir(t.rel); dir != "." {
			if err := t.root.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("create directory for %s: %w", e.display(t), err)
			}
		}
		f, err = e.create(t.root, t.rel)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("page increment %s: the base backups did not restore the file it applies to", hdr.Name)
	}
	if err != nil {
		return fmt.Errorf("open %s for its page increment: %w", e.display(t), err)
	}
	var w backup.IncrementTarget = f
	if e.progress != nil {
		w = progressWriterAt{f, e.progress}
	}
	lr := &io.LimitedReader{R: r, N: hdr.Size}
	bl, _ := e.blockLists.Get().(*[]uint32)
	if bl == nil {
		bl = new([]uint32)
	}
	*bl, err = backup.ApplyIncrement(w, lr, buf, (*bl)[:0])
	e.blockLists.Put(bl)
	if err == nil && lr.N != 0 {
		err = fmt.Errorf("%d bytes of the tar member left after the increment", lr.N)
	}
	if err == nil && e.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("apply page increment %s to %s: %w", hdr.Name, e.display(t), err)
	}
	e.files.Add(1)
	e.bytes.Add(hdr.Size)
	return nil
}

// progressWriterAt reports the pages an increment writes.
type progressWriterAt struct {
	*os.File
	p backup.Progress
}

func (w progressWriterAt) WriteAt(b []byte, off int64) (int, error) {
	n, err := w.File.WriteAt(b, off)
	if n > 0 {
		w.p.Add(int64(n))
	}
	return n, err
}

func (e *Extractor) display(t target) string {
	if t.tablespace == "" {
		return filepath.Join(e.dest, filepath.FromSlash(t.rel))
	}
	return filepath.Join(e.tablespaces[t.tablespace].Location, filepath.FromSlash(t.rel))
}

// Finish completes a restore once every tar is extracted: archived
// directory modes are applied and (unless disabled) every directory is
// fsynced, the parents of the destination and of the tablespace locations
// included; only then does pg_control move into place, so it never
// exists before everything else of every location is written and synced.
func (e *Extractor) Finish() error {
	fi, err := e.root.Lstat(pgControlTemp)
	if err != nil {
		return fmt.Errorf("the backup holds no %s: %w", PgControlPath, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", filepath.Join(e.dest, pgControlTemp))
	}
	if e.existing {
		if err := e.dropStaleWAL(); err != nil {
			return err
		}
	}
	e.mu.Lock()
	keys := make([]dirKey, 0, len(e.dirModes))
	for k := range e.dirModes {
		keys = append(keys, k)
	}
	e.mu.Unlock()
	// Deepest first, so no directory loses its owner's access before its
	// children are done.
	sort.Slice(keys, func(i, j int) bool { return strings.Count(keys[i].rel, "/") > strings.Count(keys[j].rel, "/") })
	for _, k := range keys {
		root := e.root
		if k.tablespace != "" {
			root = e.tablespaces[k.tablespace].root
		}
		if err := root.Chmod(k.rel, e.dirModes[k]); err != nil {
			return fmt.Errorf("chmod directory %s: %w", e.display(target{root, k.tablespace, k.rel}), err)
		}
	}
	if e.fsync {
		if err := syncTree(e.root); err != nil {
			return err
		}
		parents := []string{filepath.Dir(e.dest)}
		for _, ts := range e.tablespaces {
			if err := syncTree(ts.root); err != nil {
				return err
			}
			parents = append(parents, filepath.Dir(ts.Location))
		}
		for _, p := range parents {
			if err := fsutil.SyncDir(p); err != nil {
				return err
			}
		}
	}
	if err := e.root.Rename(pgControlTemp, PgControlPath); err != nil {
		return fmt.Errorf("move %s into place: %w", PgControlPath, err)
	}
	if e.fsync {
		return fsutil.SyncDirIn(e.root, path.Dir(PgControlPath))
	}
	return nil
}

// dropStaleWAL removes from a caught-up standby's pg_wal (PostgreSQL 17+
// matters most) what a base backup would not hold and what lies before the
// catch-up: WAL segments older than the one its backup_label starts in
// (unless still marked .ready for archiving) and the WAL summaries
// (pg_wal/summaries/*.summary). The standby replays from that start on and
// never reads them. Left there, its WAL summarizer, which begins at the
// oldest segment in pg_wal (or the newest summary's end), reads up to the
// end of the old WAL and waits forever for the gap the catch-up jumped,
// while PostgreSQL keeps every segment from there on for it: pg_wal grows
// without bound. pg_wal is followed when it is a symlink, as PostgreSQL
// follows it.
func (e *Extractor) dropStaleWAL() error {
	label, err := e.root.ReadFile("backup_label")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read backup_label: %w", err)
	}
	start, ok := labelStartSegment(label)
	if !ok {
		return fmt.Errorf("%s: no START WAL LOCATION with its segment file name", filepath.Join(e.dest, "backup_label"))
	}
	dir := filepath.Join(e.dest, "pg_wal")
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open the standby's WAL directory: %w", err)
	}
	defer root.Close()
	removed := 0
	remove := func(name string) error {
		if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", filepath.Join(dir, name), err)
		}
		removed++
		return nil
	}
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, d := range entries {
		// Segment names sort by position after their timeline (8 hex
		// digits), whatever the segment size.
		n := d.Name()
		if !d.Type().IsRegular() || !wal.IsSegmentName(n) || n[8:] >= start[8:] {
			continue
		}
		if _, err := root.Lstat(path.Join("archive_status", n+".ready")); err == nil {
			continue // not archived yet: not ours to drop
		}
		if err := remove(n); err != nil {
			return err
		}
	}
	summaries, err := fs.ReadDir(root.FS(), "summaries")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list %s/summaries: %w", dir, err)
	}
	for _, d := range summaries {
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".summary") {
			if err := remove(path.Join("summaries", d.Name())); err != nil {
				return err
			}
		}
	}
	if removed > 0 && e.fsync {
		if err := fsutil.SyncDirIn(root, "."); err != nil {
			return err
		}
		if len(summaries) > 0 {
			return fsutil.SyncDirIn(root, "summaries")
		}
	}
	return nil
}

// labelStartSegment is the segment file a backup_label's START WAL
// LOCATION line names ("START WAL LOCATION: 0/B000028 (file 00000001000000000000000B)").
func labelStartSegment(label []byte) (string, bool) {
	for line := range strings.SplitSeq(string(label), "\n") {
		rest, ok := strings.CutPrefix(line, "START WAL LOCATION: ")
		if !ok {
			continue
		}
		_, file, ok := strings.Cut(rest, "(file ")
		if !ok {
			return "", false
		}
		name, ok := strings.CutSuffix(strings.TrimSpace(file), ")")
		return name, ok && wal.IsSegmentName(name)
	}
	return "", false
}

// syncTree fsyncs every directory under root (not following symlinks);
// files were synced as they were written.
func syncTree(root *os.Root) error {
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("sync %s: %w", filepath.Join(root.Name(), p), err)
		}
		if d.IsDir() {
			return fsutil.SyncDirIn(root, p)
		}
		return nil
	})
}

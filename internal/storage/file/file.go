// Package file is the storage backend for a local (or mounted) directory,
// selected by WALG_FILE_PREFIX. Object keys map to files under the root
// directory; '/' in a key becomes a directory separator.
//
// Semantics worth knowing:
//   - Put writes to a hidden temporary file next to the target
//     (".<name>.tmp-<random>"), fsyncs it, renames it over the target and
//     fsyncs the directory, so a reader sees either nothing or the whole object.
//     Temporary files are never listed.
//   - An object is a regular file (symlinks are followed). A key whose path
//     does not exist, passes through a regular file (ENOTDIR: "a/b" when "a" is
//     an object) or names a directory is "not found", exactly as the same key
//     would be on an object store where "a" and "a/" are unrelated names. Every
//     other failure (permissions, I/O errors, symlink loops, over-long names) is
//     reported as an error that does not wrap storage.ErrNotFound.
//   - List streams directory entries as it reads them; the order is the file
//     system's, not sorted, so that a directory with a million WAL segments does
//     not have to be held in memory.
//   - Delete removes directories left empty by the deletion, up to the root.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
)

const (
	// tempMarker separates the target name from the random suffix of a
	// temporary file; List skips names starting with '.' that contain it.
	tempMarker = ".tmp-"
	// copyBufferSize is the chunk size used to copy a Put's reader to disk; one
	// buffer per concurrent Put, reused through a pool.
	copyBufferSize = 128 << 10
	// maxTempBase caps the part of the target name copied into a temporary
	// name so the temporary name stays below NAME_MAX (255 bytes).
	maxTempBase = 200
	// maxDepth stops List from descending forever through a symlink loop.
	maxDepth = 64
	// mkdirRetries bounds how often Put recreates a directory that a
	// concurrent Delete removed because it had become empty.
	mkdirRetries = 5
)

// Storage is a storage.Storage over a directory tree.
type Storage struct {
	root string // absolute and clean
	bufs sync.Pool
}

var _ storage.Storage = (*Storage)(nil)

// New returns a Storage rooted at prefix, which is an absolute path or a
// file URL of the form file:///abs/path or file://localhost/abs/path (the
// forms WALG_FILE_PREFIX accepts). The directory need not exist yet: Put
// creates it.
func New(prefix string) (*Storage, error) {
	root, err := parsePrefix(prefix)
	if err != nil {
		return nil, err
	}
	s := &Storage{root: root}
	s.bufs.New = func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}
	return s, nil
}

func parsePrefix(prefix string) (string, error) {
	p := prefix
	if rest, ok := strings.CutPrefix(p, "file://"); ok {
		if r, ok := strings.CutPrefix(rest, "localhost/"); ok {
			rest = "/" + r
		}
		if !strings.HasPrefix(rest, "/") {
			return "", fmt.Errorf("file storage prefix %q: want file:///absolute/path or file://localhost/absolute/path", prefix)
		}
		p = rest
	}
	if p == "" {
		return "", errors.New("file storage prefix is empty")
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("file storage prefix %q is not an absolute path", prefix)
	}
	return filepath.Clean(p), nil
}

// Root returns the absolute root directory.
func (s *Storage) Root() string { return s.root }

// String returns the root as a file URL, e.g. "file:///var/backups/pg".
func (s *Storage) String() string { return "file://" + filepath.ToSlash(s.root) }

// objectError names the object in an error message.
func (s *Storage) objectError(key, op string, err error) error {
	return fmt.Errorf("%s/%s: %s: %w", s.String(), key, op, err)
}

// cleanKey applies storage.CleanKey and refuses a key ending in '/', which
// would name a directory.
func cleanKey(key string) (string, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(k, "/") {
		return "", fmt.Errorf("%w %q: ends with '/'", storage.ErrInvalidKey, key)
	}
	return k, nil
}

func (s *Storage) path(k string) string {
	return filepath.Join(s.root, filepath.FromSlash(k))
}

// isNotExist reports whether err means "no object at this path": ENOENT, or
// ENOTDIR when a path component is a regular file (an object), see the
// package comment.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker)
}

// Put stores r under key atomically (see the package comment). When size >= 0
// it must equal the number of bytes r yields, otherwise Put fails.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

// Create is Put that fails with storage.ErrExists when key exists: the
// complete temporary file is hard-linked to the target name, which the
// kernel refuses atomically when the name is taken (link(2) never
// replaces), so of concurrent Creates exactly one wins.
func (s *Storage) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, true)
}

func (s *Storage) put(ctx context.Context, key string, r io.Reader, size int64, noReplace bool) error {
	k, err := cleanKey(key)
	if err != nil {
		return fmt.Errorf("%s: put: %w", s.String(), err)
	}
	base := k[strings.LastIndexByte(k, '/')+1:]
	if isTempName(base) {
		return s.objectError(k, "put", fmt.Errorf("%w: name clashes with the temporary file pattern .*%s*", storage.ErrInvalidKey, tempMarker))
	}
	if err := ctx.Err(); err != nil {
		return s.objectError(k, "put", err)
	}
	p := s.path(k)
	dir := filepath.Dir(p)

	var f *os.File
	for attempt := 0; ; attempt++ {
		err = mkdirAllSync(dir)
		if err == nil {
			f, err = createTemp(dir, base)
		}
		if err == nil {
			break
		}
		// A concurrent Delete may remove a directory between our mkdir and
		// create; make it again.
		if errors.Is(err, fs.ErrNotExist) && attempt < mkdirRetries {
			continue
		}
		return s.objectError(k, "put", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()

	n, err := s.copy(ctx, f, r)
	if err != nil {
		return s.objectError(k, "put", err)
	}
	if size >= 0 && n != size {
		return s.objectError(k, "put", fmt.Errorf("source yielded %d bytes, expected %d", n, size))
	}
	// Close before rename so a close error (e.g. deferred write-back failure on
	// a network file system) is not silently published.
	done = true
	if err := fsutil.SyncClose(f); err != nil {
		_ = os.Remove(tmp)
		return s.objectError(k, "put", fmt.Errorf("fsync and close %s: %w", tmp, err))
	}
	if err := ctx.Err(); err != nil {
		_ = os.Remove(tmp)
		return s.objectError(k, "put", err)
	}
	if noReplace {
		err = publishNoReplace(tmp, p)
		_ = os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return s.objectError(k, "create", fmt.Errorf("%w", storage.ErrExists))
		}
		if err != nil {
			return s.objectError(k, "create", err)
		}
	} else if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return s.objectError(k, "put", err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return s.objectError(k, "put", fmt.Errorf("object renamed into place but directory not synced: %w", err))
	}
	return nil
}

// publishNoReplace gives the file tmp the name p unless p exists. link(2)
// is atomic and never replaces; file systems without hard links get
// renameat2(RENAME_NOREPLACE), which is as atomic. The caller removes tmp.
func publishNoReplace(tmp, p string) error {
	err := os.Link(tmp, p)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return renameNoReplace(tmp, p)
	}
	return err
}

// readError marks failures of the caller's reader so messages tell them apart
// from disk errors; it unwraps to the reader's error.
type readError struct{ err error }

func (e readError) Error() string { return "read source: " + e.err.Error() }
func (e readError) Unwrap() error { return e.err }

func (s *Storage) copy(ctx context.Context, f *os.File, r io.Reader) (int64, error) {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			w, werr := f.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, readError{rerr}
		}
	}
}

// createTemp creates a new hidden file next to the target. Unlike
// os.CreateTemp it asks for mode 0666 so the umask decides permissions, as for
// any other file the operator's tools create.
func createTemp(dir, base string) (*os.File, error) {
	if len(base) > maxTempBase {
		base = base[:maxTempBase]
	}
	for range 100 {
		name := filepath.Join(dir, "."+base+tempMarker+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create temporary file in %s: too many name collisions", dir)
}

// mkdirAllSync creates dir and its missing parents, fsyncing each parent after
// adding an entry so the new directories survive a crash together with the
// object.
func mkdirAllSync(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o777); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // created concurrently
		}
		return err
	}
	return fsutil.SyncDir(parent)
}

// Get opens the object for reading.
func (s *Storage) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := cleanKey(key)
	if err != nil {
		return nil, fmt.Errorf("%s: get: %w", s.String(), err)
	}
	if err := ctx.Err(); err != nil {
		return nil, s.objectError(k, "get", err)
	}
	p := s.path(k)
	// Stat first so a FIFO or device is refused instead of blocking in open.
	if _, err := s.statPath(k, p); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if isNotExist(err) {
			return nil, storage.NotFoundError(s.String(), k)
		}
		return nil, s.objectError(k, "get", err)
	}
	return f, nil
}

// Stat returns the object's size and modification time.
func (s *Storage) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := cleanKey(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("%s: stat: %w", s.String(), err)
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, s.objectError(k, "stat", err)
	}
	fi, err := s.statPath(k, s.path(k))
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Key: k, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s *Storage) statPath(k, p string) (fs.FileInfo, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if isNotExist(err) {
			return nil, storage.NotFoundError(s.String(), k)
		}
		return nil, s.objectError(k, "stat", err)
	}
	if fi.IsDir() {
		return nil, storage.NotFoundError(s.String(), k)
	}
	if !fi.Mode().IsRegular() {
		return nil, s.objectError(k, "stat", fmt.Errorf("%s is not a regular file (mode %v)", p, fi.Mode()))
	}
	return fi, nil
}

// List calls fn for every object whose key starts with prefix. A prefix need
// not end at a '/': "basebackups_005/base_" matches every name starting so in
// that directory, and everything below matching directories.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	p := strings.TrimLeft(prefix, "/")
	if err := storage.CheckPrefix(p); err != nil {
		return fmt.Errorf("%s: list: %w", s.String(), err)
	}
	i := strings.LastIndexByte(p, '/')
	dirKey, namePrefix := p[:i+1], p[i+1:]
	return s.walk(ctx, s.path(dirKey), dirKey, namePrefix, fn, 0)
}

func (s *Storage) walk(ctx context.Context, dir, keyPrefix, namePrefix string, fn func(storage.ObjectInfo) error, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s/%s: list: directories nested deeper than %d (symlink loop?)", s.String(), keyPrefix, maxDepth)
	}
	d, err := os.Open(dir)
	if err != nil {
		if isNotExist(err) {
			return nil // nothing stored under this prefix (yet)
		}
		return fmt.Errorf("%s/%s: list: %w", s.String(), keyPrefix, err)
	}
	defer d.Close()
	for {
		// Read a bounded batch at a time instead of the whole directory.
		entries, rerr := d.ReadDir(256)
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%s/%s: list: %w", s.String(), keyPrefix, err)
			}
			name := e.Name()
			if !strings.HasPrefix(name, namePrefix) || isTempName(name) {
				continue
			}
			full := filepath.Join(dir, name)
			key := keyPrefix + name
			var fi fs.FileInfo
			var err error
			if e.Type()&fs.ModeSymlink != 0 {
				fi, err = os.Stat(full)
			} else {
				fi, err = e.Info()
			}
			if err != nil {
				if isNotExist(err) {
					continue // deleted meanwhile, or a dangling symlink
				}
				return fmt.Errorf("%s/%s: list: %w", s.String(), key, err)
			}
			switch {
			case fi.IsDir():
				if err := s.walk(ctx, full, key+"/", "", fn, depth+1); err != nil {
					return err
				}
			case fi.Mode().IsRegular():
				if err := fn(storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("%s/%s: list: %w", s.String(), keyPrefix, rerr)
		}
	}
}

// Delete removes the objects; missing ones (and directories) are skipped.
// Directories emptied by the deletion are removed too.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	var errs []error
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: delete: %w", s.String(), err)
		}
		k, err := cleanKey(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: delete: %w", s.String(), err))
			continue
		}
		p := s.path(k)
		fi, err := os.Lstat(p)
		if err != nil {
			if !isNotExist(err) {
				errs = append(errs, s.objectError(k, "delete", err))
			}
			continue
		}
		if fi.IsDir() {
			continue // not an object
		}
		if err := os.Remove(p); err != nil {
			if !isNotExist(err) {
				errs = append(errs, s.objectError(k, "delete", err))
			}
			continue
		}
		s.removeEmptyDirs(filepath.Dir(p))
	}
	return errors.Join(errs...)
}

// removeEmptyDirs removes dir and its parents below the root while they are
// empty. Failure just means a directory is not empty (or is busy): harmless.
func (s *Storage) removeEmptyDirs(dir string) {
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if err := syscall.Rmdir(dir); err != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// Traits: Put writes straight to a temporary file, so callers need not
// learn an object's length first.
var Traits = storage.Traits{StreamsUnknownSize: true}

// Memory: one copy buffer per Put in flight, whatever the body; Get hands
// out the open file.
var Memory = memplan.Storage{Name: "file", Upload: copyBufferSize, Note: "file storage copy buffer"}

var _ storage.Creator = (*Storage)(nil)

// Registration declares the backend: WALG_FILE_PREFIX selects it, and a
// local directory has no transient failures worth retrying.
func Registration() storage.Registration {
	return storage.Registration{Kind: "file", Name: "file", Prefix: "WALG_FILE_PREFIX", SkipRetry: true}
}

// Configure checks prefix (a path or file://localhost/path) without I/O.
func Configure(prefix string) (storage.Configured, error) {
	s, err := New(prefix)
	if err != nil {
		return storage.Configured{}, err
	}
	return storage.Configured{
		Registration: Registration(),
		Root:         s.String(),
		Traits:       Traits,
		Memory:       Memory,
		Connect: func(context.Context, *slog.Logger) (storage.Storage, error) {
			return New(prefix)
		},
	}, nil
}

// Backend is the file backend for a storage.Registry.
func Backend() storage.Backend {
	r := Registration()
	return storage.Backend{Registration: r, Configure: func(setting func(string) (string, bool)) (storage.Configured, error) {
		prefix, _ := setting(r.Prefix)
		return Configure(prefix)
	}}
}

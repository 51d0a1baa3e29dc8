// Package fsutil holds the few file system steps every writer in tusk must
// take the same way: make a directory entry durable, create a file without
// ever following a symlink someone planted at its name, and replace a file
// atomically (temporary name, fsync, rename, directory fsync) so a reader
// sees the old file or the whole new one, never half of it.
//
// Nothing here buffers: memory use is the caller's.
package fsutil

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// SyncDir fsyncs a directory so the entries created, renamed or removed in
// it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return syncClose(d, dir)
}

// SyncDirIn is SyncDir for a directory inside root ("." for root itself).
func SyncDirIn(root *os.Root, name string) error {
	d, err := root.Open(name)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", filepath.Join(root.Name(), name), err)
	}
	return syncClose(d, filepath.Join(root.Name(), name))
}

func syncClose(d *os.File, name string) error {
	if err := SyncClose(d); err != nil {
		return fmt.Errorf("sync directory %s: %w", name, err)
	}
	return nil
}

// SyncClose fsyncs f, then closes it, and returns the first error: a
// write-back error reported only at close (network file systems) is not
// lost. f is closed whatever happens.
func SyncClose(f *os.File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Commit gives a fully written temporary file f its final name: fsync,
// close, rename over final, fsync of final's directory, so a reader of
// final sees the whole file or none of it, even after a crash. Nothing is
// renamed when the fsync or the close fails. f is closed whatever happens;
// on error the temporary file is left for the caller to remove.
func Commit(f *os.File, final string) error {
	if err := SyncClose(f); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(final))
}

// createFlags create a new file and fail if anything, a symlink included,
// already has its name: O_EXCL never follows a link at the last component,
// and O_NOFOLLOW says so explicitly for readers of strace.
const createFlags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// Create creates the file path for writing with mode perm (before the
// umask). It fails if path exists in any form, so a symlink planted at
// path is never followed.
func Create(path string, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(path, createFlags, perm)
}

// CreateIn is Create for a name inside root: no component of name may
// lead out of root, and the file itself must not exist.
func CreateIn(root *os.Root, name string, perm fs.FileMode) (*os.File, error) {
	return root.OpenFile(name, createFlags, perm)
}

// CreateReadWriteIn is CreateIn for a file read back after it is written
// (a spool).
func CreateReadWriteIn(root *os.Root, name string, perm fs.FileMode) (*os.File, error) {
	return root.OpenFile(name, createFlags&^os.O_WRONLY|os.O_RDWR, perm)
}

// Options tune Replace.
type Options struct {
	// Perm is the new file's mode; 0 means 0600. The mode is set with
	// fchmod, so the umask does not narrow it.
	Perm fs.FileMode
	// NoSync skips the fsync of the file and of its directory
	// (WALG_TAR_DISABLE_FSYNC).
	NoSync bool
}

// Replace writes the file name inside root atomically: write fills a new
// temporary file in the same directory (created with CreateIn under a
// random name, so nothing planted there is followed), which is then
// fsynced, closed and renamed over name, and the directory is fsynced.
// Renaming replaces a symlink at name rather than writing through it.
// On any error the temporary file is removed and name is untouched.
func Replace(root *os.Root, name string, opts Options, write func(f *os.File) error) (err error) {
	perm := opts.Perm
	if perm == 0 {
		perm = 0o600
	}
	dir, base := filepath.Split(name)
	var f *os.File
	var tmp string
	for range 10 {
		tmp = filepath.Join(dir, "."+base+".tmp-"+randomSuffix())
		f, err = CreateIn(root, tmp, perm)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	display := filepath.Join(root.Name(), name)
	if err != nil {
		return fmt.Errorf("write %s: %w", display, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
			err = fmt.Errorf("write %s: %w", display, err)
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	// Close before the rename: a close error (write-back on a network
	// file system) must not be published under the final name.
	if opts.NoSync {
		err = f.Close()
	} else {
		err = SyncClose(f)
	}
	if err != nil {
		f = nil // closed already
		return err
	}
	if err = root.Rename(tmp, name); err != nil {
		return err
	}
	if opts.NoSync {
		return nil
	}
	if dir == "" {
		dir = "."
	}
	return SyncDirIn(root, dir)
}

// WriteFile is Replace for a path, with the directory of path as root.
func WriteFile(path string, opts Options, write func(f *os.File) error) error {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer root.Close()
	return Replace(root, filepath.Base(path), opts, write)
}

func randomSuffix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// OpenRoot opens the directory dir as an os.Root. dir itself must not be
// a symlink (its parents may be), and a swap of dir between the check and
// the open is detected, so a link planted at dir by someone who can write
// its parent is never followed.
func OpenRoot(dir string) (*os.Root, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symlink: give the directory itself", dir)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	if st, err := r.Stat("."); err != nil || !os.SameFile(fi, st) {
		r.Close()
		return nil, fmt.Errorf("%s was replaced while it was opened", dir)
	}
	return r, nil
}

// OpenIn opens the existing regular file name inside root with flag
// (os.O_RDONLY, os.O_RDWR...), refusing a symlink or any other kind of
// file at name. os.Root follows a symlink that stays inside the root; this
// does not, and notices a swap between the check and the open.
func OpenIn(root *os.Root, name string, flag int) (*os.File, error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(root.Name(), name), Err: errNotRegular}
	}
	// O_NONBLOCK: a FIFO swapped in after the check must not hang the open.
	f, err := root.OpenFile(name, flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !os.SameFile(fi, st) {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(root.Name(), name), Err: errReplaced}
	}
	return f, nil
}

var (
	errNotRegular = errors.New("not a regular file (refusing to follow a symlink or open a special file)")
	errReplaced   = errors.New("replaced while it was opened")
)

// CheckPrivateDir refuses to let a file holding secrets be created in the
// directory root when group or others may write it (sticky bit or not):
// any of them could plant, swap or remove the file. The directory's owner
// is not checked: whoever owns the parent of a restore destination can
// rename the destination itself, so is trusted with it already.
func CheckPrivateDir(root *os.Root) error {
	fi, err := root.Stat(".")
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o)", root.Name(), fi.Mode().Perm())
	}
	return nil
}

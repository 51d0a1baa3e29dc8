// Package sftp is the storage backend for a directory on an SSH server
// (WALG_SSH_PREFIX=ssh://host/path), over SFTP with pkg/sftp and
// golang.org/x/crypto/ssh. The server's host key must be in a known_hosts
// file unless the configuration explicitly accepts any key.
//
// Semantics, as on file storage:
//   - Put writes a temporary file next to the target, named as WAL-G names
//     its own (<name>.tmp.<UTC time>-<16 hex>, never listed by either),
//     fsyncs it where the server offers fsync@openssh.com, and renames it
//     over the target with posix-rename@openssh.com: a reader sees the
//     whole object or nothing. A failed or cancelled Put removes it.
//   - Create links the temporary file to the target with
//     hardlink@openssh.com, which fails when the target exists, then
//     removes the temporary name (plain SFTP rename, which refuses an
//     existing target, where the extension is missing).
//   - Objects are regular files; a directory, or a path through a file, is
//     "not found".
//
// Memory: one SSH connection per Storage (packet buffers of about 35 KiB
// each way; the channel buffers only responses to requests in flight), an
// upload holds Options.Requests chunks of 32 KiB in flight, a download
// reads 32 KiB at a time into the caller's buffer. List holds one
// directory's entries at a time (pkg/sftp reads a directory whole) and the
// names of directories still to visit.
package sftp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/pkg/sftp"

	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
)

// Storage is a storage.Storage on one directory of an SSH server.
type Storage struct {
	o    Options
	d    *dialer
	root string // "ssh://host:port/path"
}

var (
	_ storage.Storage = (*Storage)(nil)
	_ storage.Creator = (*Storage)(nil)
)

// New checks o; the connection is made on first use (and again after the
// server dropped it), so a command that never reaches storage never
// connects.
func New(o Options) (*Storage, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Storage{o: o, d: &dialer{o: o}, root: "ssh://" + o.addr() + o.Path}, nil
}

// Registration declares the backend: WALG_SSH_PREFIX selects it, WAL-G's
// SSH_* settings and tusk's host key settings configure it, and it is
// retried by storage.Retry (pkg/sftp does not retry).
func Registration() storage.Registration {
	return storage.Registration{Kind: "ssh", Name: "SSH", Prefix: "WALG_SSH_PREFIX", Settings: []string{
		"SSH_PORT", "SSH_USERNAME", "SSH_PASSWORD", "SSH_PRIVATE_KEY_PATH",
		"TUSK_SSH_KNOWN_HOSTS", "TUSK_SSH_INSECURE_IGNORE_HOST_KEY",
	}}
}

// Configure checks o without I/O and states what the backend is.
func Configure(o Options) (storage.Configured, error) {
	s, err := New(o)
	if err != nil {
		return storage.Configured{}, err
	}
	return storage.Configured{
		Registration: Registration(),
		Root:         s.String(),
		Traits:       storage.Traits{StreamsUnknownSize: true},
		Memory:       s.Memory(),
		Connect: func(_ context.Context, log *slog.Logger) (storage.Storage, error) {
			if s.o.InsecureIgnoreHostKey && log != nil {
				log.Warn("TUSK_SSH_INSECURE_IGNORE_HOST_KEY is on: the SSH server's identity is not checked", "storage", s.root)
			}
			return s, nil
		},
	}, nil
}

// Memory is what one transfer holds: an upload's chunks in flight, a
// download's one request, and a share of the connection's packet buffers.
func (s *Storage) Memory() memplan.Storage {
	const conn = 2 * (packetSize + 3<<10)
	return memplan.Storage{Name: "SSH", Upload: int64(s.o.Requests*packetSize) + conn, Download: packetSize + conn,
		Note: fmt.Sprintf("SFTP: up to %d chunks of 32 KiB in flight per upload", s.o.Requests)}
}

// String returns "ssh://host:port/path".
func (s *Storage) String() string { return s.root }

func (s *Storage) path(key string) string { return s.o.Path + "/" + key }

// connectError is a failure to connect, which the dialer has classified
// and whose message names the server (callers name the storage): kept
// apart from objectError, where a missing file means a missing object.
func (s *Storage) connectError(err error) error { return err }

// objectError wraps err with the object's name and classifies it:
// missing is ErrNotFound, refused permission is permanent.
func (s *Storage) objectError(key, op string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s/%s: %w", op, s.root, key, storage.ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return storage.Permanent(fmt.Errorf("%s %s/%s: %w", op, s.root, key, err))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%s %s/%s: %w", op, s.root, key, err)
}

// Put stores r under key atomically (see the package comment).
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

// Create stores r under key only if key is free: exactly one of concurrent
// Creates succeeds, the others fail with ErrExists.
func (s *Storage) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, true)
}

func (s *Storage) put(ctx context.Context, key string, r io.Reader, size int64, create bool) error {
	k, err := storage.CleanKey(key)
	if err != nil {
		return err
	}
	c, err := s.d.client(ctx)
	if err != nil {
		return s.connectError(err)
	}
	target := s.path(k)
	if err := c.MkdirAll(path.Dir(target)); err != nil {
		return s.objectError(k, "put", fmt.Errorf("create directory %s: %w", path.Dir(target), err))
	}
	tmp := target + tmpTag()
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return s.objectError(k, "put", fmt.Errorf("create %s: %w", tmp, err))
	}
	err = write(ctx, f, r, size, s.o.Requests)
	if err == nil {
		// Durable before it gets its name, where the server can tell.
		if serr := f.Sync(); serr != nil && !unsupported(serr) {
			err = fmt.Errorf("fsync %s: %w", tmp, serr)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", tmp, cerr)
	}
	if err == nil {
		err = s.publish(c, tmp, target, create)
	}
	// The temporary name goes in every case: after a link it is the
	// second name of the object, otherwise a leftover.
	if rerr := c.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil && create {
		err = fmt.Errorf("remove %s: %w", tmp, rerr)
	}
	if errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("%s/%s: %w", s.root, k, err)
	}
	if err != nil {
		return s.objectError(k, "put", err)
	}
	return nil
}

// write copies r into f with requests in flight, checking size (when
// known) and ctx: a cancelled context stops the copy at the next read.
func write(ctx context.Context, f *sftp.File, r io.Reader, size int64, requests int) error {
	src := &ctxReader{ctx: ctx, r: r}
	var lr *io.LimitedReader
	var body io.Reader = src
	if size >= 0 {
		// One byte more than declared shows a longer body.
		lr = &io.LimitedReader{R: src, N: size + 1}
		body = lr
	}
	n, err := f.ReadFromWithConcurrency(body, requests)
	if src.err != nil {
		return src.err // the body's own failure, or the cancellation
	}
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("body is %s bytes, declared %d", lenText(n, size), size)
	}
	return nil
}

func lenText(n, size int64) string {
	if n > size {
		return fmt.Sprintf("more than %d", size)
	}
	return fmt.Sprint(n)
}

// ctxReader fails once ctx is done, and remembers the first error of the
// body (pkg/sftp reports a failed read without wrapping it).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// publish gives tmp the name target: replacing it (posix-rename), or only
// if it is free (hardlink, else SFTP rename, which never replaces).
func (s *Storage) publish(c *sftp.Client, tmp, target string, create bool) error {
	if !create {
		err := c.PosixRename(tmp, target)
		if unsupported(err) {
			// SFTP's own rename refuses an existing target: not atomic
			// then, but never a partial object.
			if rerr := c.Remove(target); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				return fmt.Errorf("replace %s: %w", target, rerr)
			}
			err = c.Rename(tmp, target)
		}
		if err != nil {
			return fmt.Errorf("rename %s to %s: %w", tmp, target, err)
		}
		return nil
	}
	var err error
	if _, ok := c.HasExtension("hardlink@openssh.com"); ok {
		err = c.Link(tmp, target)
	} else {
		err = c.Rename(tmp, target)
	}
	if err == nil {
		return nil
	}
	// Both fail with a generic status when target exists.
	if _, serr := c.Lstat(target); serr == nil {
		return storage.ErrExists
	}
	return fmt.Errorf("link %s to %s: %w", tmp, target, err)
}

// unsupported reports an SFTP server without the requested extension.
func unsupported(err error) bool {
	var st *sftp.StatusError
	return err != nil && (errors.As(err, &st) && st.FxCode() == sftp.ErrSSHFxOpUnsupported ||
		strings.Contains(err.Error(), "not supported") || strings.HasPrefix(err.Error(), "sftp: unimplemented packet type"))
}

// tmpTag is WAL-G's temporary suffix, .tmp.<UTC time>-<16 hex>, so
// neither tool lists the other's unfinished files.
func tmpTag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return ".tmp." + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

var tmpName = regexp.MustCompile(`\.tmp\.\d{8}T\d{6}Z-[0-9a-f]{16}$`)

// Get opens the object for streaming.
func (s *Storage) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return nil, err
	}
	c, err := s.d.client(ctx)
	if err != nil {
		return nil, s.connectError(err)
	}
	f, err := c.Open(s.path(k))
	if err != nil {
		return nil, s.objectError(k, "get", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		f.Close()
		return nil, s.objectError(k, "get", err)
	}
	return &reader{ctx: ctx, f: f}, nil
}

// reader streams one object; a cancelled context stops it at the next
// read.
type reader struct {
	ctx context.Context
	f   *sftp.File
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.f.Read(p)
}

func (r *reader) Close() error { return r.f.Close() }

// Stat returns the object's size and time.
func (s *Storage) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := storage.CleanKey(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	c, err := s.d.client(ctx)
	if err != nil {
		return storage.ObjectInfo{}, s.connectError(err)
	}
	st, err := c.Stat(s.path(k))
	if err == nil && !st.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return storage.ObjectInfo{}, s.objectError(k, "stat", err)
	}
	return storage.ObjectInfo{Key: k, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// List walks the directories under prefix depth first, one directory in
// memory at a time.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.CheckPrefix(prefix); err != nil {
		return err
	}
	prefix = strings.TrimLeft(prefix, "/")
	c, err := s.d.client(ctx)
	if err != nil {
		return s.connectError(err)
	}
	// Start at the deepest directory the prefix names whole.
	start := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	pending := []string{start}
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		entries, err := c.ReadDir(s.dirPath(dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return s.objectError(dir, "list", err)
		}
		for _, e := range entries {
			key := e.Name()
			if dir != "" {
				key = dir + "/" + key
			}
			switch {
			case e.IsDir():
				if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
					pending = append(pending, key)
				}
			case e.Mode().IsRegular() && strings.HasPrefix(key, prefix) && !tmpName.MatchString(key):
				if err := fn(storage.ObjectInfo{Key: key, Size: e.Size(), ModTime: e.ModTime()}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *Storage) dirPath(dir string) string {
	if dir == "" {
		return s.o.Path
	}
	return s.path(dir)
}

// Delete removes the objects; missing ones are not an error.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	c, err := s.d.client(ctx)
	if err != nil {
		return s.connectError(err)
	}
	for _, key := range keys {
		k, err := storage.CleanKey(key)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.Remove(s.path(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.objectError(k, "delete", err)
		}
	}
	return nil
}

// Backend is the SFTP backend for a storage.Registry.
func Backend() storage.Backend {
	return storage.Backend{Registration: Registration(), Configure: storage.ConfigureWith(OptionsFromSettings, Configure)}
}

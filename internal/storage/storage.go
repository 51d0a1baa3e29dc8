// Package storage defines the one small interface every storage backend
// implements (file, S3, later GCS and Azure). Keys are relative to the
// backend's configured prefix and always use '/' as separator.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// How a storage failure is classified. Every caller decides "retry or not"
// with IsTransient, the one place that knows the classes:
//   - not found (ErrNotFound): the object is absent; never retried;
//   - permanent (ErrInvalidKey, ErrExists, anything wrapped by Permanent,
//     cancellation): retrying cannot help;
//   - transient: everything else a backend returns (unreachable, timing
//     out, 5xx, throttled): worth retrying within the caller's bounds.
var (
	// ErrNotFound is wrapped by every backend when an object does not
	// exist, so callers can tell "missing" (exit 74 for wal-fetch) from
	// "unreachable".
	ErrNotFound = errors.New("object not found")
	// ErrInvalidKey is wrapped when a key cannot name an object (empty,
	// "..", NUL): a caller's mistake, never retried.
	ErrInvalidKey = errors.New("invalid key")
	// ErrExists is wrapped by Creator.Create when the key is taken.
	ErrExists = errors.New("object already exists")
	// ErrPermanent is wrapped (see Permanent) by backends for refusals that
	// a retry cannot change: access denied, no such bucket, bad request.
	ErrPermanent = errors.New("permanent storage error")
)

// Permanent marks err as not worth retrying; its message is unchanged.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() []error { return []error{e.err, ErrPermanent} }

// IsTransient reports whether err, returned by a backend (or by reading an
// object body), may go away when the operation is tried again.
func IsTransient(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrNotFound),
		errors.Is(err, ErrInvalidKey),
		errors.Is(err, ErrExists),
		errors.Is(err, ErrPermanent),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string // relative to the storage prefix
	Size    int64
	ModTime time.Time
	// Storage names the storage holding the object when several are used
	// together (failover storages); empty otherwise.
	Storage string
}

// Storage is what tusk needs from an object store.
//
// Put must be atomic from a reader's point of view: an object appears under
// key only once all of r has been stored durably; a failed or cancelled Put
// never leaves a partial object under key. size is the exact length of r when
// known, or -1; backends must not buffer r whole to learn it.
type Storage interface {
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object for streaming; the error wraps ErrNotFound when it
	// does not exist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's info; the error wraps ErrNotFound when absent.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, recursively,
	// without holding the whole listing in memory. Returning an error from fn
	// stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the objects; missing ones are not an error.
	Delete(ctx context.Context, keys ...string) error
	// String names the storage root for messages, e.g. "s3://bucket/prefix".
	String() string
}

// Exists reports whether key exists, distinguishing "absent" from an error.
func Exists(ctx context.Context, s Storage, key string) (bool, error) {
	_, err := s.Stat(ctx, key)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// CleanKey is the key rule every backend applies: leading slashes are
// stripped (as WAL-G does); an empty key, a NUL byte or a "." or ".."
// element is refused with ErrInvalidKey, so no key can step outside the
// storage prefix, whatever the server does with such paths.
func CleanKey(key string) (string, error) {
	k := strings.TrimLeft(key, "/")
	if k == "" {
		return "", fmt.Errorf("%w %q: empty", ErrInvalidKey, key)
	}
	if err := CheckPrefix(key); err != nil {
		return "", err
	}
	return k, nil
}

// CheckPrefix applies CleanKey's element rules to a listing prefix, which
// may be empty.
func CheckPrefix(prefix string) error {
	if strings.IndexByte(prefix, 0) >= 0 {
		return fmt.Errorf("%w %q: contains a NUL byte", ErrInvalidKey, prefix)
	}
	for seg := range strings.SplitSeq(strings.TrimLeft(prefix, "/"), "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w %q: contains a %q path element", ErrInvalidKey, prefix, seg)
		}
	}
	return nil
}

// NotFoundError builds the error backends return for a missing object.
func NotFoundError(root, key string) error {
	return fmt.Errorf("%s/%s: %w", root, key, ErrNotFound)
}

// Traits are the facts about a backend that decide how callers feed it,
// known from its configuration alone (a memory plan is computed offline,
// and must come to the same decision as the running process).
type Traits struct {
	// StreamsUnknownSize: Put stores a stream of unknown length without
	// buffering it (local files), so callers need not learn the length
	// first.
	StreamsUnknownSize bool
	// SignsPayload: request bodies are hashed before they are sent (S3
	// over plain HTTP), so a body regenerated for each read must be
	// byte-identical every time.
	SignsPayload bool
}

// Creator is implemented by backends that can store an object only when its
// key is free, atomically: of concurrent Creates of one key exactly one
// succeeds, and the others fail with an error wrapping ErrExists, whatever
// their timing. Put's atomicity rules apply. Overwrite prevention
// (WALG_PREVENT_WAL_OVERWRITE) relies on it; without it a check and a Put
// can race.
type Creator interface {
	Create(ctx context.Context, key string, r io.Reader, size int64) error
}

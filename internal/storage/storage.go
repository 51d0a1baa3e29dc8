// Package storage defines the one small interface every storage backend
// implements (file, S3, later GCS and Azure). Keys are relative to the
// backend's configured prefix and always use '/' as separator.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is wrapped by every backend when an object does not exist, so
// callers can tell "missing" (exit 74 for wal-fetch) from "unreachable".
var ErrNotFound = errors.New("object not found")

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string // relative to the storage prefix
	Size    int64
	ModTime time.Time
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

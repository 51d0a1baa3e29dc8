package storage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/ratelimit"
)

// The wrappers below are Storages around a Storage. Each keeps Creator
// when the backend has it (see withCreate), so overwrite prevention stays
// atomic through them, and holds no buffer of its own.

// RateLimit charges every byte written by Put and Create and read from
// Get's body to one budget of bytesPerSecond (WAL-G's LimitedFolder).
// bytesPerSecond <= 0 returns s unchanged.
func RateLimit(s Storage, bytesPerSecond int64) Storage {
	l := ratelimit.New(bytesPerSecond)
	if l == nil {
		return s
	}
	return withCreate(&limited{Storage: s, l: l})
}

type limited struct {
	Storage
	l *ratelimit.Limiter
}

func (s *limited) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.Storage.Put(ctx, key, s.l.Reader(ctx, r), size)
}

func (s *limited) create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.Storage.(Creator).Create(ctx, key, s.l.Reader(ctx, r), size)
}

func (s *limited) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Storage.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return readCloser{s.l.Reader(ctx, rc), rc}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// RetryPolicy bounds the retries of one operation: Attempts tries in all,
// waiting a jittered, doubling delay from Base up to Max between them.
type RetryPolicy struct {
	Attempts  int
	Base, Max time.Duration
}

// DefaultRetry is the policy of backends without one of their own: a
// dropped connection or a server restart is ridden out within about
// fifteen seconds; longer outages are the callers' to wait out
// (WALG_DOWNLOAD_FILE_RETRIES, PostgreSQL's archive_command retries).
func DefaultRetry() RetryPolicy {
	return RetryPolicy{Attempts: 5, Base: 250 * time.Millisecond, Max: 8 * time.Second}
}

// Retry tries each operation again while IsTransient says it may succeed,
// within p (DefaultRetry() when zero). What is retried: opening a Get (not
// reading its body: callers retry whole downloads), Stat, Delete, a List
// that has not yet called fn, and a Put or Create whose body is an
// io.Seeker, rewound first; any other body is consumed by the first try.
func Retry(s Storage, p RetryPolicy, log *slog.Logger) Storage {
	if p == (RetryPolicy{}) {
		p = DefaultRetry()
	}
	if log == nil {
		log = slog.Default()
	}
	return withCreate(&retrying{Storage: s, p: p, log: log})
}

type retrying struct {
	Storage
	p   RetryPolicy
	log *slog.Logger
}

// do runs op until it succeeds, fails for good, or the attempts run out.
// again says whether another attempt may be made at all.
func (s *retrying) do(ctx context.Context, what, key string, again func() bool, op func() error) error {
	delay := s.p.Base
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !IsTransient(err) || attempt >= s.p.Attempts || ctx.Err() != nil || !again() {
			return err
		}
		wait := delay/2 + rand.N(delay/2+1)
		s.log.Warn("storage: "+what+" failed; retrying", "key", key, "attempt", attempt, "in", wait, "error", err)
		if serr := ratelimit.Sleep(ctx, wait); serr != nil {
			return errors.Join(err, serr)
		}
		delay = min(2*delay, s.p.Max)
	}
}

func always() bool { return true }

// rewind returns a func that seeks r back to where it started, reporting
// whether it could: only then may a body be sent again.
func rewind(r io.Reader) func() bool {
	sk, ok := r.(io.Seeker)
	if !ok {
		return func() bool { return false }
	}
	start, err := sk.Seek(0, io.SeekCurrent)
	return func() bool {
		if err != nil {
			return false
		}
		_, serr := sk.Seek(start, io.SeekStart)
		return serr == nil
	}
}

func (s *retrying) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.do(ctx, "upload", key, rewind(r), func() error { return s.Storage.Put(ctx, key, r, size) })
}

func (s *retrying) create(ctx context.Context, key string, r io.Reader, size int64) error {
	c := s.Storage.(Creator)
	return s.do(ctx, "upload", key, rewind(r), func() error { return c.Create(ctx, key, r, size) })
}

func (s *retrying) Get(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = s.do(ctx, "download", key, always, func() error {
		rc, err = s.Storage.Get(ctx, key)
		return err
	})
	return rc, err
}

func (s *retrying) Stat(ctx context.Context, key string) (info ObjectInfo, err error) {
	err = s.do(ctx, "stat", key, always, func() error {
		info, err = s.Storage.Stat(ctx, key)
		return err
	})
	return info, err
}

func (s *retrying) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	called := false
	// Once fn has seen an object, a second listing would show it again.
	return s.do(ctx, "list", prefix, func() bool { return !called }, func() error {
		return s.Storage.List(ctx, prefix, func(o ObjectInfo) error {
			called = true
			return fn(o)
		})
	})
}

func (s *retrying) Delete(ctx context.Context, keys ...string) error {
	key := ""
	if len(keys) > 0 {
		key = keys[0]
	}
	return s.do(ctx, "delete", key, always, func() error { return s.Storage.Delete(ctx, keys...) })
}

// creating is a wrapper that can pass Create on.
type creating interface {
	Storage
	create(ctx context.Context, key string, r io.Reader, size int64) error
	inner() Storage
}

func (s *limited) inner() Storage  { return s.Storage }
func (s *retrying) inner() Storage { return s.Storage }

// withCreate gives w a Create method exactly when the Storage it wraps
// has one, so a type assertion on storage.Creator keeps its meaning.
func withCreate(w creating) Storage {
	if _, ok := w.inner().(Creator); ok {
		return creatorWrapper{w}
	}
	return w
}

type creatorWrapper struct{ creating }

func (c creatorWrapper) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return c.create(ctx, key, r, size)
}

// Remap shows the objects under the key prefix to as if they were under
// from: catchup-push and catchup-fetch store and read WAL-G's catchup_005/
// folder with the code that writes and reads basebackups_005/. Keys
// outside from pass through unchanged.
func Remap(s Storage, from, to string) Storage {
	return withCreate(&remapped{Storage: s, from: from, to: to})
}

type remapped struct {
	Storage
	from, to string
}

func (s *remapped) inner() Storage { return s.Storage }

func (s *remapped) key(k string) string {
	if rest, ok := strings.CutPrefix(k, s.from); ok {
		return s.to + rest
	}
	return k
}

func (s *remapped) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.Storage.Put(ctx, s.key(key), r, size)
}

func (s *remapped) create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.Storage.(Creator).Create(ctx, s.key(key), r, size)
}

func (s *remapped) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.Storage.Get(ctx, s.key(key))
}

func (s *remapped) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	oi, err := s.Storage.Stat(ctx, s.key(key))
	oi.Key = key
	return oi, err
}

// List maps a prefix under from; the keys it reports are mapped back, and
// the objects really under from are hidden, as Get cannot reach them.
func (s *remapped) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if strings.HasPrefix(prefix, s.from) {
		return s.Storage.List(ctx, s.key(prefix), func(oi ObjectInfo) error {
			oi.Key = s.from + strings.TrimPrefix(oi.Key, s.to)
			return fn(oi)
		})
	}
	mapBack := func(oi ObjectInfo) error {
		switch {
		case strings.HasPrefix(oi.Key, s.from):
			return nil
		case strings.HasPrefix(oi.Key, s.to):
			oi.Key = s.from + strings.TrimPrefix(oi.Key, s.to)
			if !strings.HasPrefix(oi.Key, prefix) {
				return nil
			}
		}
		return fn(oi)
	}
	if err := s.Storage.List(ctx, prefix, mapBack); err != nil {
		return err
	}
	if strings.HasPrefix(s.from, prefix) && !strings.HasPrefix(s.to, prefix) {
		return s.Storage.List(ctx, s.to, mapBack)
	}
	return nil
}

func (s *remapped) Delete(ctx context.Context, keys ...string) error {
	mapped := make([]string, len(keys))
	for i, k := range keys {
		mapped[i] = s.key(k)
	}
	return s.Storage.Delete(ctx, mapped...)
}

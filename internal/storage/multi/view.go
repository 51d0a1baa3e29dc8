package multi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tusk-pg/tusk/internal/storage"
)

// view is a Storage over some of the set's storages, with WAL-G's
// policies:
//   - one storage (a writing command, or --target-storage): every
//     operation goes to it;
//   - follow (the daemon): one storage, the first alive one at each
//     operation;
//   - several (a reading command): Get and Stat take the first storage
//     that has the object; List gives every storage's objects (unite,
//     each tagged with its storage) or each key once, from the first
//     storage that has it (merge); Put updates the object where it is
//     first found, else writes to the first storage; Delete deletes
//     from all.
//
// Every operation's result feeds the status cache.
type view struct {
	set     *Set
	members []Member // nil: follow the first alive storage (or all, with every)
	unite   bool
	every   bool
}

var (
	_ storage.Storage = (*view)(nil)
	_ storage.Creator = (*view)(nil)
)

// Writer is the storage a writing command uses (wal-push, backup-push):
// target when set, else the first alive one, chosen now. It returns the
// chosen storage's name.
func (s *Set) Writer(ctx context.Context, target string) (storage.Storage, string, error) {
	var m Member
	var err error
	if target != "" {
		m, err = s.Specific(ctx, target)
	} else {
		m, err = s.FirstAlive(ctx)
	}
	if err != nil {
		return nil, "", err
	}
	return &view{set: s, members: []Member{m}}, m.Name, nil
}

// Follower is a storage that sends each operation to the storage first
// alive at that moment: for a long-running archiver (the daemon), which
// moves to a failover storage when the primary dies and back when it
// recovers.
func (s *Set) Follower() storage.Storage { return &view{set: s} }

// ReadFollower is a merged reader over the storages alive at each
// operation: the daemon's wal-fetch, as WAL-G's daemon reads.
func (s *Set) ReadFollower() storage.Storage { return &view{set: s, every: true} }

// Reader is the storage a reading command uses: target alone when set,
// else every alive storage in order. unite lists every storage's objects
// (backup-list, backup-fetch, delete: WAL-G's UniteAllStorages); without
// it each key is listed once (wal-fetch: MergeAllStorages). It returns
// the names of the storages used.
func (s *Set) Reader(ctx context.Context, target string, unite bool) (storage.Storage, []string, error) {
	var ms []Member
	if target != "" {
		m, err := s.Specific(ctx, target)
		if err != nil {
			return nil, nil, err
		}
		ms = []Member{m}
	} else {
		var err error
		if ms, err = s.AllAlive(ctx); err != nil {
			return nil, nil, err
		}
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return &view{set: s, members: ms, unite: unite}, names, nil
}

func (v *view) use(ctx context.Context) ([]Member, error) {
	if v.members != nil {
		return v.members, nil
	}
	if v.every {
		return v.set.AllAlive(ctx)
	}
	m, err := v.set.FirstAlive(ctx)
	if err != nil {
		return nil, err
	}
	return []Member{m}, nil
}

func (v *view) String() string {
	if len(v.members) == 1 {
		return v.members[0].Store.String()
	}
	if v.members == nil && v.every {
		return "alive of " + strings.Join(v.set.Names(), ", ")
	}
	if v.members == nil {
		return "first alive of " + strings.Join(v.set.Names(), ", ")
	}
	var out []string
	for _, m := range v.members {
		out = append(out, m.Name+"="+m.Store.String())
	}
	return strings.Join(out, ", ")
}

// Put writes where WAL-G's policy says (see view).
func (v *view) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	m, err := v.putTarget(ctx, key)
	if err != nil {
		return err
	}
	// r goes to the backend as is: wrapping it would hide io.Seeker,
	// which lets a backend measure or resend a body without buffering it.
	err = m.Store.Put(ctx, key, r, size)
	v.set.report(m, weightSized(size), err)
	return named(m, err)
}

// Create is Put only when key is free. A storage without Create gets a
// Stat then a Put, which is not atomic.
func (v *view) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	m, err := v.putTarget(ctx, key)
	if err != nil {
		return err
	}
	c, ok := m.Store.(storage.Creator)
	if !ok {
		if _, err := v.stat(ctx, m, key); err == nil {
			return fmt.Errorf("%s/%s: %w", m.Store, key, storage.ErrExists)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		return v.Put(ctx, key, r, size)
	}
	err = c.Create(ctx, key, r, size)
	rep := err
	if errors.Is(err, storage.ErrExists) {
		rep = nil // the storage answered
	}
	v.set.report(m, weightSized(size), rep)
	return named(m, err)
}

// putTarget is the storage a Put goes to: the only one, or the first
// holding key, or the first.
func (v *view) putTarget(ctx context.Context, key string) (Member, error) {
	ms, err := v.use(ctx)
	if err != nil {
		return Member{}, err
	}
	if len(ms) == 1 {
		return ms[0], nil
	}
	for _, m := range ms {
		_, err := v.stat(ctx, m, key)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return Member{}, err
		}
	}
	return ms[0], nil
}

func (v *view) stat(ctx context.Context, m Member, key string) (storage.ObjectInfo, error) {
	info, err := m.Store.Stat(ctx, key)
	v.set.report(m, weightExists, err)
	info.Storage = m.Name
	return info, named(m, err)
}

// Stat returns the object's info from the first storage holding it;
// ObjectInfo.Storage names that storage.
func (v *view) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	ms, err := v.use(ctx)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	for _, m := range ms {
		info, err := v.stat(ctx, m, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		return info, err
	}
	return storage.ObjectInfo{}, v.notFound(ms, key)
}

// Get opens the object in the first storage holding it. A storage that
// fails (rather than answer "not found") fails the Get, as in WAL-G: the
// object might be there.
func (v *view) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	ms, err := v.use(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		rc, err := m.Store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			v.set.report(m, weightSized(0), nil)
			continue
		}
		if err != nil {
			v.set.report(m, weightSized(0), err)
			return nil, named(m, err)
		}
		return &reportingReader{rc: rc, set: v.set, m: m}, nil
	}
	return nil, v.notFound(ms, key)
}

func (v *view) notFound(ms []Member, key string) error {
	if len(ms) == 1 {
		return storage.NotFoundError(ms[0].Store.String(), key)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return fmt.Errorf("%s in storages %s: %w", key, strings.Join(names, ", "), storage.ErrNotFound)
}

// List lists every storage in order; see view for which objects it gives.
// Merging asks the earlier storages about each object of a later one,
// rather than remembering the earlier listings: memory stays bounded,
// and failover storages usually hold few objects.
func (v *view) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	ms, err := v.use(ctx)
	if err != nil {
		return err
	}
	for i, m := range ms {
		err := m.Store.List(ctx, prefix, func(o storage.ObjectInfo) error {
			if !v.unite {
				for _, earlier := range ms[:i] {
					_, err := v.stat(ctx, earlier, o.Key)
					if err == nil {
						return nil
					}
					if !errors.Is(err, storage.ErrNotFound) {
						return err
					}
				}
			}
			o.Storage = m.Name
			if err := fn(o); err != nil {
				return callerErr{err}
			}
			return nil
		})
		var ce callerErr
		var se storageErr
		switch {
		case errors.As(err, &ce):
			// The caller stopped the listing: not the storage's doing.
			v.set.report(m, weightList, nil)
			return ce.err
		case errors.As(err, &se):
			return err // an earlier storage's failure, reported there
		case err != nil:
			v.set.report(m, weightList, err)
			return named(m, err)
		}
		v.set.report(m, weightList, nil)
	}
	return nil
}

// Delete deletes from every storage used.
func (v *view) Delete(ctx context.Context, keys ...string) error {
	ms, err := v.use(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := m.Store.Delete(ctx, keys...)
		v.set.report(m, weightDeleteN(len(keys)), err)
		if err != nil {
			return named(m, err)
		}
	}
	return nil
}

// callerErr carries the error of List's fn through the backend's List.
type callerErr struct{ err error }

func (e callerErr) Error() string { return e.err.Error() }
func (e callerErr) Unwrap() error { return e.err }

// storageErr is an error a view already attributed to a storage.
type storageErr struct {
	name string
	err  error
}

func (e storageErr) Error() string { return "storage " + e.name + ": " + e.err.Error() }
func (e storageErr) Unwrap() error { return e.err }

// named attributes err to m's storage, once.
func named(m Member, err error) error {
	var se storageErr
	if err == nil || errors.Is(err, storage.ErrNotFound) || errors.As(err, &se) {
		return err
	}
	return storageErr{m.Name, err}
}

// reportingReader reports a download's result when it is closed: a
// failure if a read failed (other than by cancellation).
type reportingReader struct {
	rc  io.ReadCloser
	set *Set
	m   Member
	n   int64
	err error
}

func (r *reportingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *reportingReader) Close() error {
	err := r.rc.Close()
	r.set.report(r.m, weightSized(r.n), r.err)
	return err
}

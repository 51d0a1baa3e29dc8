package multi

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tusk-pg/tusk/internal/storage"
)

// CheckKey is the object the write check uploads and deletes (WAL-G's).
const CheckKey = "wal-g_storage_check"

var errStopListing = errors.New("stop listing")

// check runs the explicit checks of the named storages in parallel,
// within CheckTimeout together, and reports which passed. A storage
// passes the read check when its root can be listed, and the write check
// (commands that write) when CheckKey can be uploaded and deleted.
// When the caller's ctx ends first, nothing is learnt: its error is
// returned and no verdict is recorded.
func (s *Set) check(parent context.Context, which []string) (map[string]bool, error) {
	if err := parent.Err(); err != nil {
		return nil, err
	}
	if len(which) == 0 {
		return map[string]bool{}, nil
	}
	ctx, cancel := context.WithTimeout(parent, s.opts.CheckTimeout)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(which))
	for _, name := range which {
		m, err := s.Member(name)
		if err != nil {
			results <- result{name, err}
			continue
		}
		go func() { results <- result{name, s.checkOne(ctx, m.Store)} }()
	}
	out := make(map[string]bool, len(which))
	for range which {
		r := <-results
		out[r.name] = r.err == nil
		if r.err != nil {
			s.opts.Log.Error("storage is not alive", "storage", r.name, "error", r.err)
		}
	}
	if err := parent.Err(); err != nil {
		return nil, err
	}
	s.opts.Log.Debug("checked storages", "alive", out)
	return out, nil
}

func (s *Set) checkOne(ctx context.Context, st storage.Storage) error {
	err := st.List(ctx, "", func(storage.ObjectInfo) error { return errStopListing })
	if err != nil && !errors.Is(err, errStopListing) {
		return fmt.Errorf("read check: list %s: %w", st, err)
	}
	if !s.opts.CheckWrite {
		return nil
	}
	if err := st.Put(ctx, CheckKey, newNoise(s.opts.CheckSize), s.opts.CheckSize); err != nil {
		return fmt.Errorf("write check: put %s/%s: %w", st, CheckKey, err)
	}
	if err := st.Delete(ctx, CheckKey); err != nil {
		return fmt.Errorf("write check: delete %s/%s: %w", st, CheckKey, err)
	}
	return nil
}

// noise is size bytes of pseudo-random data made on the fly, seekable so
// that a backend can measure, sign or resend it without a copy.
type noise struct {
	size, off int64
	seed      uint64
}

func newNoise(size int64) *noise { return &noise{size: size, seed: 0x9e3779b97f4a7c15} }

func (n *noise) Read(p []byte) (int, error) {
	if n.off >= n.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), n.size-n.off)]
	for i := range p {
		// splitmix64 of the 8-byte word's index, one byte of it.
		z := uint64((n.off+int64(i))>>3) + n.seed
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		p[i] = byte(z >> (8 * ((n.off + int64(i)) & 7)))
	}
	n.off += int64(len(p))
	return len(p), nil
}

func (n *noise) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += n.off
	case io.SeekEnd:
		offset += n.size
	}
	if offset < 0 {
		return 0, errors.New("noise: negative position")
	}
	n.off = offset
	return offset, nil
}

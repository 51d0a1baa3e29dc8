// Package bufpool provides fixed-size chunks, allocated once and reused for
// the life of the process, and a Spool that holds one object's bytes in such
// chunks. Go's heap never unmaps what it has grown to, so committed memory is
// the high-water mark: reusing chunks keeps that mark at "what was in flight
// at the worst moment" instead of "what the garbage collector had not yet
// reclaimed".
package bufpool

import (
	"errors"
	"io"
	"sync"
)

// DefaultChunkSize is small enough that a spool wastes little on its last
// chunk and large enough that a 16 MiB segment needs few of them.
const DefaultChunkSize = 256 << 10

// Pool hands out chunks of one size. Chunks are allocated on demand and kept
// when released, so the pool's footprint is the peak number of chunks in use.
type Pool struct {
	chunkSize int

	mu        sync.Mutex
	free      [][]byte
	allocated int
}

// New returns a pool of chunkSize-byte chunks.
func New(chunkSize int) *Pool {
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	return &Pool{chunkSize: chunkSize}
}

// ChunkSize is the size of every chunk.
func (p *Pool) ChunkSize() int { return p.chunkSize }

// Get returns a chunk of ChunkSize bytes (contents undefined).
func (p *Pool) Get() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return c
	}
	p.allocated++
	return make([]byte, p.chunkSize)
}

// Put returns a chunk obtained from Get.
func (p *Pool) Put(c []byte) {
	if cap(c) != p.chunkSize {
		return // not ours; let the collector have it
	}
	p.mu.Lock()
	p.free = append(p.free, c[:p.chunkSize])
	p.mu.Unlock()
}

// Allocated is the number of chunks ever allocated: the pool's high-water
// mark, for memory reports and tests.
func (p *Pool) Allocated() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocated
}

// ErrSpoolFull is returned when a write would exceed a spool's limit.
var ErrSpoolFull = errors.New("object larger than the spool limit")

// Spool is an in-memory file made of pool chunks: written once, then read
// (and re-read, for retries) through Reader. It is not safe for concurrent
// use.
type Spool struct {
	pool   *Pool
	chunks [][]byte
	size   int64
	limit  int64
}

// NewSpool returns an empty spool drawing from pool. A positive limit caps
// its size so a hostile or unexpected input cannot grow it without bound.
func NewSpool(pool *Pool, limit int64) *Spool {
	return &Spool{pool: pool, limit: limit}
}

// Write appends p.
func (s *Spool) Write(p []byte) (int, error) {
	if s.limit > 0 && s.size+int64(len(p)) > s.limit {
		return 0, ErrSpoolFull
	}
	cs := int64(s.pool.chunkSize)
	written := 0
	for len(p) > 0 {
		off := int(s.size % cs)
		if off == 0 && s.size/cs == int64(len(s.chunks)) {
			s.chunks = append(s.chunks, s.pool.Get())
		}
		c := s.chunks[len(s.chunks)-1]
		n := copy(c[off:], p)
		p = p[n:]
		s.size += int64(n)
		written += n
	}
	return written, nil
}

// Size is the number of bytes written.
func (s *Spool) Size() int64 { return s.size }

// Reset empties the spool, returning its chunks to the pool.
func (s *Spool) Reset() {
	for i, c := range s.chunks {
		s.pool.Put(c)
		s.chunks[i] = nil
	}
	s.chunks = s.chunks[:0]
	s.size = 0
}

// Reader returns a reader over the spool's current contents. It stays valid
// until the next Write or Reset.
func (s *Spool) Reader() *SpoolReader {
	return &SpoolReader{s: s}
}

// SpoolReader reads a Spool; it is an io.ReadSeeker so storage clients can
// rewind it to retry a request.
type SpoolReader struct {
	s   *Spool
	off int64
}

func (r *SpoolReader) Read(p []byte) (int, error) {
	if r.off >= r.s.size {
		return 0, io.EOF
	}
	cs := int64(r.s.pool.chunkSize)
	n := 0
	for len(p) > 0 && r.off < r.s.size {
		c := r.s.chunks[r.off/cs]
		start := r.off % cs
		end := cs
		if rest := r.s.size - (r.off - start); rest < end {
			end = rest
		}
		m := copy(p, c[start:end])
		p = p[m:]
		r.off += int64(m)
		n += m
	}
	return n, nil
}

// Seek implements io.Seeker.
func (r *SpoolReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.s.size + offset
	default:
		return 0, errors.New("bufpool: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("bufpool: negative position")
	}
	r.off = abs
	return abs, nil
}

// Len is the number of unread bytes (lets HTTP clients learn the length).
func (r *SpoolReader) Len() int {
	if r.off >= r.s.size {
		return 0
	}
	return int(r.s.size - r.off)
}

package storage

import (
	"context"
	"fmt"
	"io"
)

// SourceError marks a failure of the caller's reader during a Put (as
// opposed to the server's); it unwraps to the reader's error.
type SourceError struct{ Err error }

func (e SourceError) Error() string { return "read source: " + e.Err.Error() }
func (e SourceError) Unwrap() error { return e.Err }

// Source wraps the body of a Put for backends whose client library pulls
// the body itself (GCS's writer, Azure's block uploader): reads stop once
// ctx is done, the reader's failures come back as SourceError, and a body
// longer or shorter than a stated size fails before its last byte is
// handed over, so the library never completes (commits) a wrong object.
type Source struct {
	ctx  context.Context
	r    io.Reader
	size int64 // -1: unknown
	read int64
}

// NewSource wraps r, of size bytes (-1 when unknown).
func NewSource(ctx context.Context, r io.Reader, size int64) *Source {
	return &Source{ctx: ctx, r: r, size: size}
}

// Read implements io.Reader.
func (s *Source) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	if s.size >= 0 && int64(len(p)) > s.size-s.read+1 {
		// Ask for at most one byte past the stated size: enough to see that
		// the body is too long without reading on.
		p = p[:s.size-s.read+1]
	}
	n, err := s.r.Read(p)
	s.read += int64(n)
	if s.size >= 0 && s.read > s.size {
		return 0, fmt.Errorf("source yields more than the expected %d bytes", s.size)
	}
	switch {
	case err == io.EOF && s.size >= 0 && s.read != s.size:
		return 0, fmt.Errorf("source yielded %d bytes, expected %d", s.read, s.size)
	case err != nil && err != io.EOF:
		return n, SourceError{err}
	}
	return n, err
}

// N is how many bytes have been read so far.
func (s *Source) N() int64 { return s.read }

package codec

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// gzipMethod reads gzip objects (RFC 1952, possibly several members). WAL-G
// cannot write gzip; neither can tusk.
type gzipMethod struct{}

func (gzipMethod) Name() string { return Gzip }
func (gzipMethod) Ext() string  { return "gz" }

func (gzipMethod) NewWriter(io.Writer) (io.WriteCloser, error) {
	return nil, errors.New("gzip: compression is not supported (WAL-G only reads gzip objects)")
}

func (gzipMethod) NewReader(r io.Reader) (io.ReadCloser, error) {
	return &gzipReader{src: r}, nil
}

// gzipReader opens the library reader on the first Read, because
// gzip.NewReader reads the member header at once. The library reader is kept
// across Reset: its 32 KiB window and Huffman tables are reused.
type gzipReader struct {
	src    io.Reader
	zr     *gzip.Reader
	opened bool
	err    error
}

func (r *gzipReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.opened {
		if r.src == nil {
			return 0, errors.New("gzip: read after Close")
		}
		var err error
		if r.zr == nil {
			r.zr, err = gzip.NewReader(r.src)
		} else {
			err = r.zr.Reset(r.src)
		}
		if err != nil {
			if err == io.EOF {
				err = errEmptyStream("gzip")
			} else {
				err = fmt.Errorf("gzip: %w", err)
			}
			r.err = err
			return 0, err
		}
		r.opened = true
	}
	n, err := r.zr.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("gzip: %w", err)
	}
	if err != nil {
		r.err = err
	}
	return n, err
}

func (r *gzipReader) Reset(src io.Reader) error {
	r.src, r.opened, r.err = src, false, nil
	return nil
}

func (r *gzipReader) Close() error {
	r.src, r.opened, r.err = nil, false, nil
	return nil
}

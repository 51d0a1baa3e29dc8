package codec

import (
	"errors"
	"io"
)

type noneMethod struct{}

func (noneMethod) Name() string { return None }
func (noneMethod) Ext() string  { return "" }

func (noneMethod) NewWriter(w io.Writer) (io.WriteCloser, error) {
	return &noneWriter{w: w}, nil
}

func (noneMethod) NewReader(r io.Reader) (io.ReadCloser, error) {
	return &noneReader{r: r}, nil
}

// noneWriter passes bytes through; Close does not close the destination.
type noneWriter struct{ w io.Writer }

func (n *noneWriter) Write(p []byte) (int, error) {
	if n.w == nil {
		return 0, errors.New("none: write after Close")
	}
	return n.w.Write(p)
}

func (n *noneWriter) Close() error        { n.w = nil; return nil }
func (n *noneWriter) Reset(dst io.Writer) { n.w = dst }

type noneReader struct{ r io.Reader }

func (n *noneReader) Read(p []byte) (int, error) {
	if n.r == nil {
		return 0, errors.New("none: read after Close")
	}
	return n.r.Read(p)
}

func (n *noneReader) Reset(src io.Reader) error { n.r = src; return nil }
func (n *noneReader) Close() error              { n.r = nil; return nil }

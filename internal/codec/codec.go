// Package codec holds the compression methods WAL-G writes and reads, with
// exactly its container formats and object-key extensions.
package codec

import "io"

// Method is one compression method.
type Method interface {
	// Name is the WALG_COMPRESSION_METHOD value ("lz4", "zstd", ...).
	Name() string
	// Ext is the object-key extension without the dot; "" for none.
	Ext() string
	// NewWriter returns a compressing writer over w. Close flushes the stream
	// but does not close w. Writers that can be reused implement Resetter.
	NewWriter(w io.Writer) (io.WriteCloser, error)
	// NewReader returns a decompressing reader over r.
	NewReader(r io.Reader) (io.ReadCloser, error)
}

// Resetter is implemented by writers that can be reused for another stream,
// so long-lived workers keep one encoder instead of allocating per object.
type Resetter interface {
	Reset(w io.Writer)
}

// Package pipe composes the object pipelines shared by WAL and backups:
// raw bytes → compress → encrypt on the way to storage, and decrypt →
// decompress on the way back, as streams (never a whole object in memory).
package pipe

import (
	"fmt"
	"io"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
)

// CopyBufferSize is the one buffer an Encoder copies through.
const CopyBufferSize = 64 << 10

// Encoder compresses and encrypts streams. It keeps its compressor and copy
// buffer between calls, so a long-lived worker allocates them once. It is not
// safe for concurrent use: give each worker its own.
//
// A stream is either copied whole (Encode) or written by the caller between
// Begin and Finish, as a tar builder does; both paths share the one
// compressor, so WAL and backups encode alike.
type Encoder struct {
	method  codec.Method
	crypter crypt.Crypter // nil: no encryption
	cw      io.WriteCloser
	enc     io.WriteCloser // the current stream's encryption, nil without
	buf     []byte
}

// NewEncoder returns an encoder for method and an optional crypter.
func NewEncoder(method codec.Method, crypter crypt.Crypter) *Encoder {
	return &Encoder{method: method, crypter: crypter}
}

// Method is the encoder's compression method (its Ext names objects).
func (e *Encoder) Method() codec.Method { return e.method }

// Begin starts a stream into dst and returns the writer for its raw bytes.
// Finish completes it; a stream abandoned without Finish (its dst failed)
// needs nothing more, the next Begin resets the compressor.
func (e *Encoder) Begin(dst io.Writer) (io.Writer, error) {
	out := dst
	e.enc = nil
	if e.crypter != nil {
		enc, err := e.crypter.Encrypt(dst)
		if err != nil {
			return nil, fmt.Errorf("start %s encryption: %w", e.crypter.Name(), err)
		}
		e.enc, out = enc, enc
	}
	if r, ok := e.cw.(codec.Resetter); ok {
		r.Reset(out)
		return e.cw, nil
	}
	cw, err := e.method.NewWriter(out)
	if err != nil {
		return nil, fmt.Errorf("start %s compression: %w", e.method.Name(), err)
	}
	e.cw = cw
	return cw, nil
}

// Finish flushes the compressor and the encryption of the stream Begin
// started.
func (e *Encoder) Finish() error {
	if err := e.cw.Close(); err != nil {
		return fmt.Errorf("finish %s compression: %w", e.method.Name(), err)
	}
	if e.enc != nil {
		enc := e.enc
		e.enc = nil
		if err := enc.Close(); err != nil {
			return fmt.Errorf("finish %s encryption: %w", e.crypter.Name(), err)
		}
	}
	return nil
}

// Encode reads src to EOF and writes its compressed, encrypted form to dst.
// It returns the number of raw bytes read.
func (e *Encoder) Encode(dst io.Writer, src io.Reader) (int64, error) {
	if e.buf == nil {
		e.buf = make([]byte, CopyBufferSize)
	}
	w, err := e.Begin(dst)
	if err != nil {
		return 0, err
	}
	// The anonymous structs hide ReadFrom/WriteTo so the copy goes through
	// our reused buffer instead of one the library or io.Copy allocates.
	n, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{src}, e.buf)
	if err != nil {
		return n, err
	}
	return n, e.Finish()
}

// Decode returns a reader of the raw bytes of an object read from r:
// decrypted when crypter is set, then decompressed with method (nil method:
// decrypt only, WAL-G's last probe for objects without an extension).
//
// Its Close must be called, and its error checked, before the bytes are
// trusted: OpenPGP checks integrity only at the end of the message, which a
// decompressor that stops at its own end marker may never read. Close does
// not close r.
func Decode(r io.Reader, method codec.Method, crypter crypt.Crypter) (io.ReadCloser, error) {
	var dec io.ReadCloser
	if crypter != nil {
		dr, err := crypter.Decrypt(r)
		if err != nil {
			return nil, fmt.Errorf("%s decryption: %w", crypter.Name(), err)
		}
		dec, r = dr, dr
	}
	if method == nil {
		if dec == nil {
			return io.NopCloser(r), nil
		}
		return dec, nil
	}
	rc, err := method.NewReader(r)
	if err != nil {
		if dec != nil {
			dec.Close()
		}
		return nil, fmt.Errorf("%s decompression: %w", method.Name(), err)
	}
	return &decoded{ReadCloser: rc, decrypt: dec, crypter: crypter}, nil
}

type decoded struct {
	io.ReadCloser // decompressor
	decrypt       io.ReadCloser
	crypter       crypt.Crypter
}

// Close closes the decompressor, then the decryption, whose Close verifies
// what the decompressor left unread.
func (d *decoded) Close() error {
	err := d.ReadCloser.Close()
	if d.decrypt != nil {
		if cerr := d.decrypt.Close(); cerr != nil {
			return fmt.Errorf("%s decryption: %w", d.crypter.Name(), cerr)
		}
	}
	return err
}

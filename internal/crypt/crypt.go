// Package crypt holds the encryptions WAL-G applies to objects: libsodium
// secretstream and OpenPGP. Encryption wraps the compressed stream.
package crypt

import "io"

// Crypter encrypts and decrypts object streams.
type Crypter interface {
	// Name is shown in logs ("libsodium", "openpgp").
	Name() string
	// Encrypt returns a writer that encrypts into w. Close finishes the
	// stream but does not close w.
	Encrypt(w io.Writer) (io.WriteCloser, error)
	// Decrypt returns a reader of the plaintext of r. Authentication failures
	// surface as errors from Read, never as garbage bytes.
	Decrypt(r io.Reader) (io.Reader, error)
}

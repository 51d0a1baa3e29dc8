// Package crypt holds the encryptions WAL-G applies to objects: libsodium
// secretstream and OpenPGP. Encryption wraps the compressed stream.
package crypt

import "io"

// Crypter encrypts and decrypts object streams.
type Crypter interface {
	// Name is shown in logs and errors ("libsodium", "openpgp").
	Name() string
	// Encrypt returns a writer that encrypts into w. Close finishes the
	// stream but does not close w. Nothing is written to w before the
	// first Write or Close.
	Encrypt(w io.Writer) (io.WriteCloser, error)
	// Decrypt returns a reader of the plaintext of r. Damage, truncation
	// and a wrong key surface as errors, never as a silently shorter
	// stream. libsodium authenticates each 8 KiB chunk before returning
	// it; OpenPGP returns plaintext as it decrypts and checks the
	// message's integrity code at the end, so its data is only trusted
	// once Read returned io.EOF. Close reads any part of r the consumer
	// left (a decompressor may stop at the end of its own stream) and
	// returns the error that part holds, if any; always call it and check
	// it before using the data. It does not close r.
	Decrypt(r io.Reader) (io.ReadCloser, error)
}

// Package crypt holds the encryptions WAL-G applies to objects: libsodium
// secretstream, OpenPGP and AWS KMS client-side encryption (a KMS-wrapped
// data key, then a DARE stream). Encryption wraps the compressed stream.
//
// Memory: each writer and reader holds a bounded buffer whatever the
// stream's length (libsodium one 8 KiB chunk, OpenPGP go-crypto's packet
// buffers, AWS KMS one 64 KiB DARE package); MemoryEstimate states the
// bounds and the tests measure them.
package crypt

import (
	"errors"
	"fmt"
	"io"
)

// Crypter encrypts and decrypts object streams.
type Crypter interface {
	// Name is shown in logs and errors ("libsodium", "openpgp", "aws-kms").
	Name() string
	// Encrypt returns a writer that encrypts into w. Close finishes the
	// stream but does not close w. Nothing is written to w before the
	// first Write or Close.
	Encrypt(w io.Writer) (io.WriteCloser, error)
	// Decrypt returns a reader of the plaintext of r. Damage, truncation
	// and a wrong key surface as errors, never as a silently shorter
	// stream. libsodium authenticates each 8 KiB chunk before returning
	// it, AWS KMS each 64 KiB package; OpenPGP returns plaintext as it decrypts and checks the
	// message's integrity code at the end, so its data is only trusted
	// once Read returned io.EOF. Close reads any part of r the consumer
	// left (a decompressor may stop at the end of its own stream) and
	// returns the error that part holds, if any; always call it and check
	// it before using the data. It does not close r.
	Decrypt(r io.Reader) (io.ReadCloser, error)
}

// openingReader is a decrypting reader that opens its stream on the first
// Read: opening reads the object's key material (which would block on a
// pipe nobody writes yet if done at creation) and, for KMS, makes a
// request. It keeps the first error, and Close reads the rest of the
// stream, so its integrity check runs even when the consumer stopped
// early. It does not close the source.
type openingReader struct {
	name string // error prefix
	src  io.Reader
	open func(src io.Reader) (io.Reader, error)
	body io.Reader
	err  error
}

func (r *openingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.body == nil {
		if r.src == nil {
			return 0, errors.New(r.name + ": read after Close")
		}
		if r.body, r.err = r.open(r.src); r.err != nil {
			return 0, r.err
		}
	}
	n, err := r.body.Read(p)
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("%s: %w (corrupted or tampered object)", r.name, err)
		}
		// Not every library remembers a failure itself (sio does not).
		r.err = err
	}
	return n, err
}

func (r *openingReader) Close() error {
	if r.src == nil {
		return nil
	}
	var buf [512]byte
	var err error
	for err == nil {
		_, err = r.Read(buf[:])
	}
	r.src = nil
	if err == io.EOF {
		return nil
	}
	return err
}

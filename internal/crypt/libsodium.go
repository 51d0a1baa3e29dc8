package crypt

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// libsodiumChunk is WAL-G's plaintext chunk size: every chunk but the last
// carries exactly this much, and the last one less (possibly nothing).
const libsodiumChunk = 8192

// libsodiumMinKey is WAL-G's minimum length of a key used as is
// (WALG_LIBSODIUM_KEY_TRANSFORM=none).
const libsodiumMinKey = 25

// KeyTransforms lists the WALG_LIBSODIUM_KEY_TRANSFORM values, the first
// being the default; the settings catalogue takes its list from here.
func KeyTransforms() []string { return []string{"none", "hex", "base64"} }

// LibsodiumKey derives the 32-byte key from the value of WALG_LIBSODIUM_KEY
// as WAL-G does for WALG_LIBSODIUM_KEY_TRANSFORM (none, hex or base64; ""
// means none): none uses the bytes as they are, which must be at least 25,
// truncated or zero-padded to 32; hex and base64 (standard, padded) must
// decode to exactly 32 bytes.
func LibsodiumKey(raw, transform string) ([]byte, error) {
	return libsodiumKey(raw, transform, "WALG_LIBSODIUM_KEY")
}

// LibsodiumKeyFile reads the key file named by WALG_LIBSODIUM_KEY_PATH,
// trims surrounding white space as WAL-G does, and applies the transform.
func LibsodiumKeyFile(path, transform string) ([]byte, error) {
	b, err := readKeyFile("WALG_LIBSODIUM_KEY_PATH", path)
	if err != nil {
		return nil, err
	}
	return libsodiumKey(strings.TrimSpace(string(b)), transform, "WALG_LIBSODIUM_KEY_PATH ("+path+")")
}

func libsodiumKey(raw, transform, source string) ([]byte, error) {
	var key []byte
	switch transform {
	case "", "none":
		if len(raw) < libsodiumMinKey {
			return nil, fmt.Errorf("%s: key is %d bytes, at least %d are required (WALG_LIBSODIUM_KEY_TRANSFORM=none)",
				source, len(raw), libsodiumMinKey)
		}
		key = make([]byte, ssKeySize)
		copy(key, raw)
		return key, nil
	case "hex":
		b, err := hex.DecodeString(raw)
		if err != nil {
			// encoding/hex names the offending character: part of the key.
			return nil, fmt.Errorf("%s: not valid hex (WALG_LIBSODIUM_KEY_TRANSFORM=hex): %s", source, decodeProblem(raw, err))
		}
		key = b
	case "base64":
		b, err := base64.StdEncoding.DecodeString(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: not valid base64 (WALG_LIBSODIUM_KEY_TRANSFORM=base64): %s", source, decodeProblem(raw, err))
		}
		key = b
	default:
		return nil, fmt.Errorf("WALG_LIBSODIUM_KEY_TRANSFORM: unknown key transform %q (accepted: %s)",
			transform, strings.Join(KeyTransforms(), ", "))
	}
	if len(key) != ssKeySize {
		return nil, fmt.Errorf("%s: decodes to %d bytes, the key must be exactly %d (WALG_LIBSODIUM_KEY_TRANSFORM=%s)",
			source, len(key), ssKeySize, transform)
	}
	return key, nil
}

// decodeProblem describes a hex or base64 decoding error of a key by
// position and length only: the decoders' own messages quote the bad
// character, which is key material.
func decodeProblem(raw string, err error) string {
	var bad hex.InvalidByteError
	var corrupt base64.CorruptInputError
	switch {
	case errors.As(err, &bad):
		return fmt.Sprintf("a character that is not a hex digit at position %d", strings.IndexByte(raw, byte(bad))+1)
	case errors.As(err, &corrupt):
		return fmt.Sprintf("invalid data at position %d", int64(corrupt)+1)
	case errors.Is(err, hex.ErrLength):
		return fmt.Sprintf("odd length (%d characters)", len(raw))
	}
	return fmt.Sprintf("cannot decode %d characters", len(raw))
}

// NewLibsodium returns WAL-G's libsodium encryption with a 32-byte key.
//
// Memory: a writer or reader holds one 8209-byte chunk buffer and the
// stream state, about 8.5 KiB, whatever the object size.
func NewLibsodium(key []byte) (Crypter, error) {
	if len(key) != ssKeySize {
		return nil, fmt.Errorf("libsodium: key must be %d bytes, got %d", ssKeySize, len(key))
	}
	c := &libsodium{}
	copy(c.key[:], key)
	return c, nil
}

type libsodium struct{ key [ssKeySize]byte }

func (*libsodium) Name() string { return "libsodium" }

func (c *libsodium) Encrypt(w io.Writer) (io.WriteCloser, error) {
	return &sodiumWriter{key: &c.key, dst: w}, nil
}

func (c *libsodium) Decrypt(r io.Reader) (io.ReadCloser, error) {
	return &sodiumReader{key: &c.key, src: r}, nil
}

// sodiumWriter buffers plaintext into buf[1:1+libsodiumChunk] and seals it
// in place, so one buffer serves both sides. As in WAL-G, the header is
// written on the first non-empty Write, a full chunk is sealed as soon as it
// fills (tag MESSAGE), and Close seals the remainder (0..8191 bytes) with
// tag FINAL. Unlike WAL-G, Close on a stream that got no data still writes
// the header, so the object decrypts (to nothing) with any reader.
type sodiumWriter struct {
	key     *[ssKeySize]byte
	dst     io.Writer
	st      secretStream
	buf     [libsodiumChunk + ssOverhead]byte
	n       int // plaintext bytes in buf[1:]
	started bool
	closed  bool
	err     error
}

func (w *sodiumWriter) start() error {
	var hdr [ssHeaderSize]byte
	if _, err := rand.Read(hdr[:]); err != nil {
		return fmt.Errorf("libsodium: random header: %w", err)
	}
	w.st.init(w.key, &hdr)
	w.started = true
	if _, err := w.dst.Write(hdr[:]); err != nil {
		return fmt.Errorf("libsodium: write header: %w", err)
	}
	return nil
}

func (w *sodiumWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("libsodium: write after Close")
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.started {
		if w.err = w.start(); w.err != nil {
			return 0, w.err
		}
	}
	written := 0
	for len(p) > 0 {
		k := copy(w.buf[1+w.n:1+libsodiumChunk], p)
		w.n += k
		written += k
		p = p[k:]
		if w.n == libsodiumChunk {
			if w.err = w.flush(tagMessage); w.err != nil {
				return written, w.err
			}
		}
	}
	return written, nil
}

func (w *sodiumWriter) flush(tag byte) error {
	w.st.seal(w.buf[:w.n+ssOverhead], w.buf[1:1+w.n], tag)
	_, err := w.dst.Write(w.buf[:w.n+ssOverhead])
	w.n = 0
	if err != nil {
		return fmt.Errorf("libsodium: write chunk: %w", err)
	}
	return nil
}

// Close writes the final chunk. It does not close the destination.
func (w *sodiumWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	if !w.started {
		if w.err = w.start(); w.err != nil {
			return w.err
		}
	}
	w.err = w.flush(tagFinal)
	return w.err
}

// Reset starts a new stream (with a new random header) into dst.
func (w *sodiumWriter) Reset(dst io.Writer) {
	key := w.key
	w.st = secretStream{}
	w.dst, w.key, w.n, w.started, w.closed, w.err = dst, key, 0, false, false, nil
}

// sodiumReader reads the header, then chunks of 8209 bytes; each chunk is
// authenticated before any of its bytes are returned. The stream must end
// with a chunk tagged FINAL that is shorter than a full chunk, as WAL-G
// writes it: a full-size FINAL chunk ("premature end", as WAL-G reports),
// a short chunk without the tag, or the end of input right after a full
// chunk are errors, so a truncated object never reads as a shorter one.
type sodiumReader struct {
	key   *[ssKeySize]byte
	src   io.Reader
	st    secretStream
	buf   [libsodiumChunk + ssOverhead]byte
	out   []byte // unread plaintext, inside buf
	chunk int    // chunks read, for messages
	state int
	err   error
}

const (
	readHeader = iota
	readChunks
	readDone
)

func (r *sodiumReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.src == nil {
			return 0, errors.New("libsodium: read after Close")
		}
		switch r.state {
		case readHeader:
			r.err = r.readHeader()
		case readChunks:
			r.err = r.readChunk()
		default:
			r.err = io.EOF
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *sodiumReader) readHeader() error {
	var hdr [ssHeaderSize]byte
	n, err := io.ReadFull(r.src, hdr[:])
	switch {
	case err == nil:
		r.st.init(r.key, &hdr)
		r.state = readChunks
		return nil
	case n == ssOverhead && err == io.ErrUnexpectedEOF:
		// WAL-G writes no header when a stream gets no data; what
		// remains is a FINAL chunk sealed with an all-zero state.
		var zero secretStream
		copy(r.buf[:], hdr[:n])
		if _, tag, err := zero.open(r.buf[:n]); err == nil && tag == tagFinal {
			r.state = readDone
			return nil
		}
		return errors.New("libsodium: object is 17 bytes and not an empty stream (truncated header?)")
	case n == 0 && err == io.EOF:
		return errors.New("libsodium: empty object: no stream header")
	case err == io.ErrUnexpectedEOF:
		return fmt.Errorf("libsodium: object ends inside the %d-byte stream header (%d bytes)", ssHeaderSize, n)
	}
	return fmt.Errorf("libsodium: read header: %w", err)
}

func (r *sodiumReader) readChunk() error {
	n, err := io.ReadFull(r.src, r.buf[:])
	switch {
	case err == io.EOF:
		return fmt.Errorf("libsodium: object ends after chunk %d without the final chunk (truncated object)", r.chunk)
	case err == io.ErrUnexpectedEOF && n < ssOverhead:
		return fmt.Errorf("libsodium: object ends inside chunk %d (%d bytes; truncated object)", r.chunk+1, n)
	case err != nil && err != io.ErrUnexpectedEOF:
		return fmt.Errorf("libsodium: read chunk %d: %w", r.chunk+1, err)
	}
	r.chunk++
	msg, tag, aerr := r.st.open(r.buf[:n])
	full := err == nil
	if aerr != nil {
		if !full {
			return fmt.Errorf("libsodium: last chunk %d (%d bytes) failed authentication (truncated or corrupted object, or wrong key)", r.chunk, n)
		}
		return fmt.Errorf("libsodium: chunk %d failed authentication (wrong key or corrupted object)", r.chunk)
	}
	switch {
	case full && tag == tagFinal:
		return fmt.Errorf("libsodium: premature end: full-size chunk %d is tagged final", r.chunk)
	case !full && tag != tagFinal:
		return fmt.Errorf("libsodium: last chunk %d is not tagged final (truncated object)", r.chunk)
	case !full:
		r.state = readDone
	}
	r.out = msg
	return nil
}

// Close reads whatever the consumer left unread, so that a missing or
// damaged end of the object is reported even when the decompressor stopped
// at the end of its own stream. It does not close the source.
func (r *sodiumReader) Close() error {
	if r.src == nil {
		return nil
	}
	var err error
	for err == nil {
		r.out = nil
		_, err = r.Read(nil)
	}
	r.src = nil
	if err == io.EOF {
		return nil
	}
	return err
}

// Reset starts reading a new object from src.
func (r *sodiumReader) Reset(src io.Reader) error {
	key := r.key
	*r = sodiumReader{key: key, src: src}
	return nil
}

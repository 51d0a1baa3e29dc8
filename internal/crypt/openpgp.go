package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpWriteChunk bounds each write into the library. go-crypto's writers
// use OpenPGP partial-length packets and buffer up to about twice the
// largest write they get, in each of two nested packets, and its cipher
// allocates a buffer per write; feeding them at most 16 KiB keeps an
// encrypting writer at about 80 KiB live.
const pgpWriteChunk = 16 << 10

// OpenPGPKeyFromEnv turns a WALG_PGP_KEY value into key text: as in WAL-G,
// each two-character sequence `\n` becomes a newline, so a one-line
// environment variable can hold an armored key.
func OpenPGPKeyFromEnv(value string) []byte {
	return []byte(strings.ReplaceAll(value, `\n`, "\n"))
}

// OpenPGPKeyFile reads an armored keyring file (WALG_PGP_KEY_PATH).
func OpenPGPKeyFile(path string) ([]byte, error) {
	return readKeyFile("WALG_PGP_KEY_PATH", path)
}

// NewOpenPGP returns WAL-G's OpenPGP encryption with an ASCII-armored
// keyring (binary keyrings are refused, as in WAL-G). Encrypting needs a
// public key (a private key block works too); decrypting needs the private
// key. A non-empty passphrase (WALG_PGP_KEY_PASSPHRASE) decrypts the
// primary key and every subkey now; a wrong one is an error.
//
// Memory: encrypting holds go-crypto's packet buffers, about 80 KiB with
// writes cut to 16 KiB, and makes garbage about equal to the bytes it
// encrypts; decrypting streams through the cipher with buffers of a few KiB
// (an embedded compression packet, which WAL-G never writes, would add its
// decompressor: up to about 4 MiB for bzip2). See MemoryEstimate.
func NewOpenPGP(armoredKeyring []byte, passphrase string) (Crypter, error) {
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armoredKeyring))
	if err != nil {
		return nil, fmt.Errorf("openpgp: read armored keyring: %w", err)
	}
	if passphrase != "" {
		for _, e := range keys {
			if err := e.DecryptPrivateKeys([]byte(passphrase)); err != nil {
				return nil, fmt.Errorf("openpgp: decrypt private key %X with the passphrase: %w", e.PrimaryKey.Fingerprint, err)
			}
		}
	}
	return &pgpCrypter{keys: keys}, nil
}

type pgpCrypter struct{ keys openpgp.EntityList }

func (*pgpCrypter) Name() string { return "openpgp" }

func (c *pgpCrypter) Encrypt(w io.Writer) (io.WriteCloser, error) {
	return &pgpWriter{keys: c.keys, dst: w}, nil
}

// privateKeys reports whether the keyring holds usable private keys, and
// whether any of them is still passphrase-protected.
func (c *pgpCrypter) privateKeys() (any, locked bool) {
	for _, e := range c.keys {
		keys := []*packet.PrivateKey{e.PrivateKey}
		for _, s := range e.Subkeys {
			keys = append(keys, s.PrivateKey)
		}
		for _, k := range keys {
			if k != nil && !k.Dummy() {
				any = true
				locked = locked || k.Encrypted
			}
		}
	}
	return any, locked
}

func (c *pgpCrypter) Decrypt(r io.Reader) (io.ReadCloser, error) {
	if any, _ := c.privateKeys(); !any {
		return nil, errors.New("openpgp: the keyring holds no private key; decrypting needs the private key")
	}
	return &openingReader{name: "openpgp", src: r, open: c.open}, nil
}

// pgpWriter starts the OpenPGP message on the first Write or Close rather
// than at creation, because the library writes the session-key packets at
// once, which would block on a pipe nobody reads yet. As WAL-G: a binary
// message to every key of the keyring, default (nil) configuration: SEIPD
// version 1 with MDC, no signature, no compression.
type pgpWriter struct {
	keys   openpgp.EntityList
	dst    io.Writer
	w      io.WriteCloser
	closed bool
	err    error
}

func (w *pgpWriter) start() error {
	pw, err := openpgp.Encrypt(w.dst, w.keys, nil, nil, nil)
	if err != nil {
		return fmt.Errorf("openpgp: start message: %w", err)
	}
	w.w = pw
	return nil
}

func (w *pgpWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("openpgp: write after Close")
	}
	if w.w == nil {
		if w.err = w.start(); w.err != nil {
			return 0, w.err
		}
	}
	written := 0
	for len(p) > 0 {
		n, err := w.w.Write(p[:min(len(p), pgpWriteChunk)])
		written += n
		if err != nil {
			w.err = fmt.Errorf("openpgp: encrypt: %w", err)
			return written, w.err
		}
		p = p[n:]
	}
	return written, nil
}

// Close finishes the message. It does not close the destination.
func (w *pgpWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	if w.w == nil {
		if w.err = w.start(); w.err != nil {
			return w.err
		}
	}
	if err := w.w.Close(); err != nil {
		w.err = fmt.Errorf("openpgp: finish message: %w", err)
	}
	return w.err
}

// Reset starts a new message into dst.
func (w *pgpWriter) Reset(dst io.Writer) {
	*w = pgpWriter{keys: w.keys, dst: dst}
}

// open reads the packet headers and decrypts the session key.
func (c *pgpCrypter) open(src io.Reader) (io.Reader, error) {
	md, err := openpgp.ReadMessage(src, c.keys, nil, nil)
	if err != nil {
		if _, locked := c.privateKeys(); locked && errors.Is(err, pgperrors.ErrKeyIncorrect) {
			return nil, fmt.Errorf("openpgp: the private key is protected by a passphrase; set WALG_PGP_KEY_PASSPHRASE: %w", err)
		}
		if errors.Is(err, pgperrors.ErrKeyIncorrect) {
			return nil, fmt.Errorf("openpgp: no key in the keyring decrypts this object (wrong key?): %w", err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("openpgp: object ends early (truncated or empty): %w", err)
		}
		return nil, fmt.Errorf("openpgp: read message: %w", err)
	}
	// ReadMessage also accepts plain literal data; WAL-G never writes it,
	// and taking it would let anyone who can write to the storage bypass
	// the encryption.
	if !md.IsEncrypted || md.IsSymmetricallyEncrypted {
		return nil, errors.New("openpgp: object is not a message encrypted to a public key")
	}
	return md.UnverifiedBody, nil
}

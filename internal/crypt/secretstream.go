package crypt

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/poly1305" //lint:ignore SA1019 libsodium's secretstream is built on the raw Poly1305 MAC
)

// This file implements libsodium's crypto_secretstream_xchacha20poly1305,
// the format WAL-G's libsodium encryption writes, in pure Go so that tusk
// builds without cgo. It follows libsodium's published construction:
//
//   - init: the 24-byte header is random; the stream key is
//     HChaCha20(key, header[0:16]) and the 12-byte ChaCha20 nonce is a
//     4-byte little-endian counter, starting at 1, followed by header[16:24].
//   - each message: ChaCha20 block 0 of (stream key, nonce) is the Poly1305
//     key; a 64-byte block holding the tag in byte 0 is encrypted with
//     block 1 and its first byte is sent; the message is encrypted from
//     block 2. The MAC covers the additional data (none here) padded to 16
//     bytes, the whole encrypted 64-byte tag block, the ciphertext padded by
//     (len mod 16) zero bytes (libsodium's padding rule for this field), and
//     both lengths as 64-bit little-endian values (0 and 64 + len).
//   - after each message the MAC's first 8 bytes are XORed into the nonce's
//     last 8 bytes and the counter is incremented; on a REKEY tag, or when
//     the counter wraps to 0, key and nonce tail are replaced by ChaCha20
//     encrypting them in place, and the counter restarts at 1.

const (
	ssKeySize    = 32
	ssHeaderSize = 24
	ssOverhead   = 1 + poly1305.TagSize // tag byte + MAC: 17

	tagMessage = 0x00
	tagPush    = 0x01
	tagRekey   = 0x02
	tagFinal   = tagPush | tagRekey
)

var errChunkAuth = errors.New("chunk failed authentication")

// secretStream is the state of one direction of a stream.
type secretStream struct {
	key   [ssKeySize]byte
	nonce [12]byte // counter (4 bytes LE) || inonce (8 bytes)
}

func (s *secretStream) init(key *[ssKeySize]byte, header *[ssHeaderSize]byte) {
	sub, err := chacha20.HChaCha20(key[:], header[:16])
	if err != nil {
		// Sizes are fixed by the types above.
		panic(err)
	}
	copy(s.key[:], sub)
	s.resetCounter()
	copy(s.nonce[4:], header[16:])
}

func (s *secretStream) resetCounter() {
	binary.LittleEndian.PutUint32(s.nonce[:4], 1)
}

// seal encrypts msg with tag into out, which must be len(msg)+ssOverhead
// bytes; msg may be exactly out[1:1+len(msg)].
func (s *secretStream) seal(out, msg []byte, tag byte) {
	// Created here, not in a helper, so it stays on the stack.
	c, err := chacha20.NewUnauthenticatedCipher(s.key[:], s.nonce[:])
	if err != nil {
		panic(err) // sizes are fixed by the types
	}
	var polyKey [32]byte
	var block [64]byte
	c.XORKeyStream(block[:], block[:])
	copy(polyKey[:], block[:32])
	m := poly1305.New(&polyKey)

	block = [64]byte{tag}
	c.XORKeyStream(block[:], block[:])
	m.Write(block[:])
	out[0] = block[0]

	ct := out[1 : 1+len(msg)]
	c.XORKeyStream(ct, msg)
	m.Write(ct)
	var mac [poly1305.TagSize]byte
	s.finishMAC(m, len(ct), mac[:0])
	copy(out[1+len(msg):], mac[:])
	s.advance(mac[:], tag)
}

// open authenticates and decrypts in (at least ssOverhead bytes) in place,
// returning the plaintext (a sub-slice of in) and the tag. On failure the
// state is unchanged.
func (s *secretStream) open(in []byte) ([]byte, byte, error) {
	if len(in) < ssOverhead {
		return nil, 0, errChunkAuth
	}
	// Created here, not in a helper, so it stays on the stack.
	c, err := chacha20.NewUnauthenticatedCipher(s.key[:], s.nonce[:])
	if err != nil {
		panic(err) // sizes are fixed by the types
	}
	var polyKey [32]byte
	var block [64]byte
	c.XORKeyStream(block[:], block[:])
	copy(polyKey[:], block[:32])
	m := poly1305.New(&polyKey)

	block = [64]byte{in[0]}
	c.XORKeyStream(block[:], block[:])
	tag := block[0]
	block[0] = in[0]
	m.Write(block[:])

	n := len(in) - ssOverhead
	ct := in[1 : 1+n]
	m.Write(ct)
	var mac [poly1305.TagSize]byte
	s.finishMAC(m, n, mac[:0])
	if subtle.ConstantTimeCompare(mac[:], in[1+n:]) != 1 {
		return nil, 0, errChunkAuth
	}
	c.XORKeyStream(ct, ct)
	s.advance(mac[:], tag)
	return ct, tag, nil
}

// finishMAC writes the ciphertext padding and the lengths, and appends the
// MAC to dst.
func (s *secretStream) finishMAC(m *poly1305.MAC, ctLen int, dst []byte) {
	var pad [16]byte
	m.Write(pad[:ctLen%16])
	var lens [16]byte
	binary.LittleEndian.PutUint64(lens[8:], uint64(64+ctLen))
	m.Write(lens[:])
	m.Sum(dst)
}

// advance updates the nonce after a message with the given MAC and tag.
func (s *secretStream) advance(mac []byte, tag byte) {
	for i := range 8 {
		s.nonce[4+i] ^= mac[i]
	}
	ctr := binary.LittleEndian.Uint32(s.nonce[:4]) + 1
	binary.LittleEndian.PutUint32(s.nonce[:4], ctr)
	if tag&tagRekey != 0 || ctr == 0 {
		s.rekey()
	}
}

func (s *secretStream) rekey() {
	var buf [ssKeySize + 8]byte
	copy(buf[:ssKeySize], s.key[:])
	copy(buf[ssKeySize:], s.nonce[4:])
	c, err := chacha20.NewUnauthenticatedCipher(s.key[:], s.nonce[:])
	if err != nil {
		panic(err)
	}
	c.XORKeyStream(buf[:], buf[:])
	copy(s.key[:], buf[:ssKeySize])
	copy(s.nonce[4:], buf[ssKeySize:])
	s.resetCounter()
}

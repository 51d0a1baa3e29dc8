package crypt

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// ssMsg is one pushed message: plaintext and ciphertext in hex, and tag.
type ssMsg struct {
	plain string
	tag   byte
	ct    string
}

// ssVectors were produced by libsodium 1.0.18's
// crypto_secretstream_xchacha20poly1305 with key 00 01 .. 1f, by
// testdata/secretstream_vectors.py. "counter wrap" sets the counter to
// 0xffffffff right after init, so libsodium rekeys after its first message.
var ssVectors = []struct {
	name   string
	wrap   bool
	header string
	msgs   []ssMsg
}{
	{name: "tags and padding", wrap: false, header: "3b897869a5df707251525f775ae3862a82b3fed8b2aa7ed9", msgs: []ssMsg{
		{"", 0, "182103deccd8b02769a91afb2f1d5d6885"},
		{"61", 0, "9de5e1a8e11f21b8404beaaf045102285dee"},
		{"000102030405060708090a0b0c0d0e", 1, "4f509e55fee6c137860bd5480475f1fa6351dd9988975ae09764e980736556bd"},
		{"000102030405060708090a0b0c0d0e0f", 0, "ef658e18ac88bafd31e2e7dadecb65b6a1ac889f4ee7a8cbbf599657c4d1dfada4"},
		{"000102030405060708090a0b0c0d0e0f10", 2, "3effd42300a48f9ccbec5b40691d6166353f0d8fec4348f39f8b0e3ea68ce77602fd"},
		{"61667465722072656b657961667465722072656b657961667465722072656b657961667465722072656b657961667465722072656b657961667465722072656b657961667465722072656b657961667465722072656b657961667465722072656b6579", 0, "91d081595478049d543af1ab71762c0797d5c76403b65a3c72b92e2c211cba61acdf4ebf634258ab90b9aec6e1f7af7c77fc118839946a1258cccb2b6a23de0d705d928d1de4aed6a5b1c55e14fa6bf8e425d830f8eae7e7ddad0431e07b8de0ec60cee5cb936d3baf78c271f8730ea078332126"},
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f", 0, "e7616712e07da4f4780c016c39c1b826da7404fdb7aa12fac94947be7d81d706b8b0dc382ad4b63d65ff60b0351856c4fafbc3bdc55329885bec1381956153fbf2"},
		{"66696e616c", 3, "3a10d9d8a482ecca4ccaf102a836a1e992ccbf9e8638"},
	}},
	{name: "counter wrap", wrap: true, header: "00df39cf8b201c36d2535d1793969127f3c955e5128cce4b", msgs: []ssMsg{
		{"6c617374206d657373616765206265666f7265207468652077726170", 0, "070b97a7578d1aae62d9a630b444306d0f04501749bfc752c758a46aa6a4d5021abfad91368176076cdabe6165"},
		{"6669727374206166746572", 3, "717b2d99959d490ba6ddb4f78abc91d28f04af5a9acbf59d57c86c2c"},
	}},
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSecretStreamVectors(t *testing.T) {
	var key [ssKeySize]byte
	for i := range key {
		key[i] = byte(i)
	}
	for _, v := range ssVectors {
		var hdr [ssHeaderSize]byte
		copy(hdr[:], unhex(t, v.header))
		var push, pull secretStream
		push.init(&key, &hdr)
		pull.init(&key, &hdr)
		if v.wrap {
			copy(push.nonce[:4], []byte{0xff, 0xff, 0xff, 0xff})
			copy(pull.nonce[:4], []byte{0xff, 0xff, 0xff, 0xff})
		}
		for i, m := range v.msgs {
			plain, want := unhex(t, m.plain), unhex(t, m.ct)
			out := make([]byte, len(plain)+ssOverhead)
			push.seal(out, plain, m.tag)
			if !bytes.Equal(out, want) {
				t.Fatalf("%s: message %d: seal gives %x, libsodium %x", v.name, i, out, want)
			}
			got, tag, err := pull.open(bytes.Clone(want))
			if err != nil {
				t.Fatalf("%s: message %d: open: %v", v.name, i, err)
			}
			if tag != m.tag || !bytes.Equal(got, plain) {
				t.Fatalf("%s: message %d: open gives %x tag %d, want %x tag %d", v.name, i, got, tag, plain, m.tag)
			}
		}
	}
}

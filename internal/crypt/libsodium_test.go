package crypt

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/codec"
)

func testKey() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i * 7)
	}
	return k
}

func TestLibsodiumKey(t *testing.T) {
	long := "0123456789abcdefghijklmnopqrstuvwxyz" // 36 bytes
	k, err := LibsodiumKey(long, "none")
	if err != nil || string(k) != long[:32] {
		t.Errorf("none, 36 bytes: %q, %v", k, err)
	}
	k, err = LibsodiumKey(long[:25], "")
	if err != nil || string(k[:25]) != long[:25] || !bytes.Equal(k[25:], make([]byte, 7)) {
		t.Errorf("none, 25 bytes: %q, %v", k, err)
	}
	if _, err := LibsodiumKey(long[:24], "none"); err == nil || !strings.Contains(err.Error(), "WALG_LIBSODIUM_KEY:") || strings.Contains(err.Error(), long[:24]) {
		t.Errorf("none, 24 bytes: %v", err)
	}
	hexKey := strings.Repeat("ab", 32)
	if k, err := LibsodiumKey(hexKey, "hex"); err != nil || k[0] != 0xab || len(k) != 32 {
		t.Errorf("hex: %x, %v", k, err)
	}
	for _, bad := range []string{hexKey[:62], hexKey + "ab", "zz" + hexKey[2:], hexKey + "\n"} {
		if _, err := LibsodiumKey(bad, "hex"); err == nil || !strings.Contains(err.Error(), "WALG_LIBSODIUM_KEY") {
			t.Errorf("hex %q: %v", bad, err)
		}
	}
	b64 := base64.StdEncoding.EncodeToString(testKey())
	if k, err := LibsodiumKey(b64, "base64"); err != nil || !bytes.Equal(k, testKey()) {
		t.Errorf("base64: %v", err)
	}
	for _, bad := range []string{base64.StdEncoding.EncodeToString(testKey()[:31]), base64.RawStdEncoding.EncodeToString(testKey()), "!!!"} {
		if _, err := LibsodiumKey(bad, "base64"); err == nil {
			t.Errorf("base64 %q: no error", bad)
		}
	}
	if _, err := LibsodiumKey(hexKey, "HEX"); err == nil || !strings.Contains(err.Error(), "WALG_LIBSODIUM_KEY_TRANSFORM") {
		t.Errorf("unknown transform: %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	os.WriteFile(path, []byte("\n  "+hexKey+"\n\n"), 0o600)
	if k, err := LibsodiumKeyFile(path, "hex"); err != nil || k[31] != 0xab {
		t.Errorf("key file: %v", err)
	}
	if _, err := LibsodiumKeyFile(filepath.Join(dir, "missing"), "hex"); err == nil || !strings.Contains(err.Error(), "WALG_LIBSODIUM_KEY_PATH") {
		t.Errorf("missing key file: %v", err)
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, err := LibsodiumKeyFile(path, "none"); err == nil || !strings.Contains(err.Error(), "WALG_LIBSODIUM_KEY_PATH") {
		t.Errorf("short key file: %v", err)
	}
	if _, err := NewLibsodium(make([]byte, 31)); err == nil {
		t.Error("31-byte key accepted")
	}
}

func TestLibsodiumFormat(t *testing.T) {
	c, _ := NewLibsodium(testKey())
	for _, n := range []int{0, 1, 8191, 8192, 8193, 3*8192 + 100} {
		data := randomBytes(n, uint64(n))
		for _, chunk := range []int{1, 1000, 8192, 1 << 20} {
			if n > 20000 && chunk == 1 {
				continue
			}
			z := seal(t, c, data, chunk)
			// Header, n/8192 full chunks of 8209 bytes, then a final
			// chunk with the remaining n%8192 bytes.
			want := 24 + n/8192*8209 + 17 + n%8192
			if len(z) != want {
				t.Fatalf("%d bytes in %d-byte writes: %d bytes out, want %d", n, chunk, len(z), want)
			}
			out, err := open(c, z)
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("%d bytes: round trip: %v", n, err)
			}
		}
	}
}

func TestLibsodiumErrors(t *testing.T) {
	c, _ := NewLibsodium(testKey())
	data := randomBytes(3*8192+500, 1)
	z := seal(t, c, data, 5000)
	other := testKey()
	other[0] ^= 1
	wrong, _ := NewLibsodium(other)

	flip := func(i int) []byte { b := bytes.Clone(z); b[i] ^= 0x04; return b }
	cases := map[string]struct {
		c    Crypter
		data []byte
		want string
	}{
		"wrong key":            {wrong, z, "failed authentication"},
		"flipped header":       {c, flip(3), "failed authentication"},
		"flipped chunk 2":      {c, flip(24 + 8209 + 100), "chunk 2 failed authentication"},
		"flipped final tag":    {c, flip(24 + 3*8209), "last chunk 4 (517 bytes) failed authentication"},
		"flipped last MAC":     {c, flip(len(z) - 1), "last chunk 4 (517 bytes) failed authentication"},
		"truncated mid chunk":  {c, z[:24+8209+4000], "last chunk 2 (4000 bytes) failed authentication (truncated"},
		"missing final chunk":  {c, z[:24+3*8209], "without the final chunk"},
		"truncated final":      {c, z[:len(z)-1], "last chunk 4 (516 bytes) failed authentication"},
		"tiny tail":            {c, z[:24+8209+10], "ends inside chunk 2"},
		"header only":          {c, z[:24], "without the final chunk"},
		"truncated header":     {c, z[:20], "stream header"},
		"empty":                {c, nil, "empty object"},
		"trailing garbage":     {c, append(bytes.Clone(z), 1, 2, 3), "failed authentication"},
		"swapped chunks":       {c, append(append(bytes.Clone(z[:24]), z[24+8209:24+2*8209]...), z[24:24+8209]...), "failed authentication"},
		"full-size final":      {c, fullFinal(t, data[:8192]), "premature end"},
		"short non-final last": {c, shortNonFinal(t, data[:100]), "not tagged final"},
	}
	for name, tc := range cases {
		out, err := open(tc.c, tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "libsodium: ") {
			t.Errorf("%s: %d bytes, error %v; want %q", name, len(out), err, tc.want)
		}
	}

	// A reader must not return the bytes of a chunk that fails.
	r, _ := c.Decrypt(bytes.NewReader(flip(24 + 100)))
	if n, err := r.Read(make([]byte, 100)); n != 0 || err == nil {
		t.Errorf("first chunk damaged: read %d, %v", n, err)
	}
}

// fullFinal seals one full 8192-byte chunk tagged FINAL.
func fullFinal(t *testing.T, chunk []byte) []byte {
	return rawStream(t, []byte{tagFinal}, chunk)
}

// shortNonFinal seals one short chunk tagged MESSAGE, with nothing after.
func shortNonFinal(t *testing.T, chunk []byte) []byte {
	return rawStream(t, []byte{tagMessage}, chunk)
}

func rawStream(t *testing.T, tags []byte, chunks ...[]byte) []byte {
	t.Helper()
	var key [32]byte
	copy(key[:], testKey())
	var hdr [24]byte
	hdr[5] = 9
	var st secretStream
	st.init(&key, &hdr)
	out := hdr[:]
	for i, ch := range chunks {
		buf := make([]byte, len(ch)+ssOverhead)
		st.seal(buf, ch, tags[i])
		out = append(out, buf...)
	}
	return out
}

// TestLibsodiumEmptyStreamWithoutHeader reads what WAL-G writes for a stream
// that gets no data: no header, a FINAL chunk sealed with a zero state.
func TestLibsodiumEmptyStreamWithoutHeader(t *testing.T) {
	var zero secretStream
	obj := make([]byte, ssOverhead)
	zero.seal(obj, nil, tagFinal)
	c, _ := NewLibsodium(testKey())
	if out, err := open(c, obj); err != nil || len(out) != 0 {
		t.Fatalf("headerless empty stream: %d bytes, %v", len(out), err)
	}
	obj[3] ^= 1
	if _, err := open(c, obj); err == nil {
		t.Fatal("damaged 17-byte object accepted")
	}
	// tusk writes a header even then.
	if z := seal(t, c, nil, 1); len(z) != 24+17 {
		t.Fatalf("empty stream: %d bytes", len(z))
	}
}

func TestLibsodiumReuse(t *testing.T) {
	c, _ := NewLibsodium(testKey())
	var a, b bytes.Buffer
	w, _ := c.Encrypt(&a)
	w.Write([]byte("first stream"))
	w.Close()
	rs, ok := w.(codec.Resetter)
	if !ok {
		t.Fatalf("%T does not implement Reset(io.Writer)", w)
	}
	rs.Reset(&b)
	w.Write([]byte("second stream"))
	w.Close()
	if bytes.Equal(a.Bytes()[:24], b.Bytes()[:24]) {
		t.Error("both streams have the same header")
	}
	for want, z := range map[string][]byte{"first stream": a.Bytes(), "second stream": b.Bytes()} {
		if out, err := open(c, z); err != nil || string(out) != want {
			t.Errorf("%q: %q, %v", want, out, err)
		}
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after Close accepted")
	}
}

// TestFixtureZstdLibsodium decrypts and decompresses every WAL object WAL-G
// wrote with zstd and libsodium and compares the raw segments' checksums.
func TestFixtureZstdLibsodium(t *testing.T) {
	dir, fx := fixture(t, "zstd-libsodium")
	enc := fx["encryption"].(map[string]any)
	key, err := LibsodiumKey(enc["WALG_LIBSODIUM_KEY"].(string), enc["WALG_LIBSODIUM_KEY_TRANSFORM"].(string))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewLibsodium(key)
	if err != nil {
		t.Fatal(err)
	}
	zst, _ := codec.ByName(codec.Zstd)
	sums := readSums(t, filepath.Join(dir, "expected", "wal-sha256.txt"))
	files, _ := filepath.Glob(filepath.Join(dir, "storage", "wal_005", "*.zst"))
	if len(files) != len(sums) {
		t.Fatalf("%d objects, %d checksums", len(files), len(sums))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".zst")
		if got := decodeObject(t, c, zst, f); got != sums[name] {
			t.Errorf("%s: sha256 %s, want %s", f, got, sums[name])
		}
	}
	// The same objects under another key fail with an error.
	wrong := bytes.Clone(key)
	wrong[31] ^= 1
	wc, _ := NewLibsodium(wrong)
	raw, _ := os.ReadFile(files[0])
	if _, err := open(wc, raw); err == nil || !strings.Contains(err.Error(), "wrong key") {
		t.Errorf("wrong key: %v", err)
	}
}

package crypt

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/tusk-pg/tusk/internal/codec"
)

// newTestKey generates an EdDSA/X25519 key (fast to make) and returns its
// armored private and public keyrings. A non-empty passphrase encrypts the
// private keys.
func newTestKey(t testing.TB, passphrase string) (priv, pub []byte) {
	t.Helper()
	e, err := openpgp.NewEntity("tusk test", "", "test@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var pb bytes.Buffer
	aw, _ := armor.Encode(&pb, openpgp.PublicKeyType, nil)
	if err := e.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	if passphrase != "" {
		if err := e.EncryptPrivateKeys([]byte(passphrase), nil); err != nil {
			t.Fatal(err)
		}
	}
	var sb bytes.Buffer
	aw, _ = armor.Encode(&sb, openpgp.PrivateKeyType, nil)
	if err := e.SerializePrivateWithoutSigning(aw, nil); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	return sb.Bytes(), pb.Bytes()
}

func mustPGP(t *testing.T, key []byte, passphrase string) Crypter {
	t.Helper()
	c, err := NewOpenPGP(key, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFixturePGP decrypts and decompresses every WAL object WAL-G wrote with
// lzma and OpenPGP, with the key from a file and inline as WALG_PGP_KEY.
func TestFixturePGP(t *testing.T) {
	dir, _ := fixture(t, "pgp")
	keyText, err := OpenPGPKeyFile(filepath.Join(dir, "keys", "pgp-private.asc"))
	if err != nil {
		t.Fatal(err)
	}
	oneLine := strings.ReplaceAll(string(keyText), "\n", `\n`)
	lzma, _ := codec.ByName(codec.LZMA)
	sums := readSums(t, filepath.Join(dir, "expected", "wal-sha256.txt"))
	files, _ := filepath.Glob(filepath.Join(dir, "storage", "wal_005", "*.lzma"))
	if len(files) != len(sums) {
		t.Fatalf("%d objects, %d checksums", len(files), len(sums))
	}
	c := mustPGP(t, keyText, "")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".lzma")
		if got := decodeObject(t, c, lzma, f); got != sums[name] {
			t.Errorf("%s: sha256 %s, want %s", f, got, sums[name])
		}
	}
	// The key inline, as a one-line WALG_PGP_KEY (one object suffices).
	inline := mustPGP(t, OpenPGPKeyFromEnv(oneLine), "")
	name := strings.TrimSuffix(filepath.Base(files[0]), ".lzma")
	if got := decodeObject(t, inline, lzma, files[0]); got != sums[name] {
		t.Errorf("%s with WALG_PGP_KEY: sha256 %s, want %s", files[0], got, sums[name])
	}

	// The public half encrypts objects the private key reads back.
	pubText, err := OpenPGPKeyFile(filepath.Join(dir, "keys", "pgp-public.asc"))
	if err != nil {
		t.Fatal(err)
	}
	pub := mustPGP(t, pubText, "")
	data := randomBytes(100000, 4)
	z := seal(t, pub, data, 7000)
	if out, err := open(c, z); err != nil || !bytes.Equal(out, data) {
		t.Fatalf("round trip with the fixture key: %v", err)
	}
	// Same message layout as WAL-G's objects, down to the literal data
	// format byte (WAL-G passes no file hints: 'u', text).
	raw, _ := os.ReadFile(files[0])
	if got, want := literalFormat(t, c, z), literalFormat(t, c, raw); got != want {
		t.Errorf("literal data format %q, WAL-G writes %q", got, want)
	}
	checkPackets(t, raw)
	if _, err := pub.Decrypt(bytes.NewReader(z)); err == nil || !strings.Contains(err.Error(), "no private key") {
		t.Errorf("decrypt with a public key: %v", err)
	}

	// Another key cannot read the fixture.
	otherPriv, _ := newTestKey(t, "")
	if _, err := open(mustPGP(t, otherPriv, ""), raw); err == nil || !strings.Contains(err.Error(), "wrong key") {
		t.Errorf("wrong key: %v", err)
	}
}

func TestOpenPGPRoundTrip(t *testing.T) {
	priv, pub := newTestKey(t, "")
	enc, dec := mustPGP(t, pub, ""), mustPGP(t, priv, "")
	for _, n := range []int{0, 1, 4095, 65536, 1<<20 + 3} {
		data := randomBytes(n, uint64(n))
		z := seal(t, enc, data, 1<<20)
		out, err := open(dec, z)
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("%d bytes: %v", n, err)
		}
		checkPackets(t, z)
	}
	// The writer is reusable.
	var a, b bytes.Buffer
	w, _ := enc.Encrypt(&a)
	if a.Len() != 0 {
		t.Error("Encrypt wrote before the first Write")
	}
	w.Write([]byte("one"))
	w.Close()
	w.(codec.Resetter).Reset(&b)
	w.Write([]byte("two"))
	w.Close()
	for want, z := range map[string][]byte{"one": a.Bytes(), "two": b.Bytes()} {
		if out, err := open(dec, z); err != nil || string(out) != want {
			t.Errorf("%s: %q, %v", want, out, err)
		}
	}
}

func literalFormat(t *testing.T, c Crypter, msg []byte) uint8 {
	t.Helper()
	md, err := openpgp.ReadMessage(bytes.NewReader(msg), c.(*pgpCrypter).keys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return md.LiteralData.Format
}

// checkPackets checks the message layout WAL-G writes: public-key encrypted
// session keys, then one SEIPD version 1 packet (MDC), nothing else.
func checkPackets(t *testing.T, msg []byte) {
	t.Helper()
	pr := packet.NewReader(bytes.NewReader(msg))
	var keys int
	for {
		p, err := pr.Next()
		if err != nil {
			t.Fatalf("packet: %v", err)
		}
		switch p := p.(type) {
		case *packet.EncryptedKey:
			keys++
		case *packet.SymmetricallyEncrypted:
			if !p.IntegrityProtected || p.Version != 1 || keys == 0 {
				t.Fatalf("SEIPD version %d, integrity %v, after %d key packets", p.Version, p.IntegrityProtected, keys)
			}
			return
		default:
			t.Fatalf("unexpected packet %T", p)
		}
	}
}

func TestOpenPGPDamage(t *testing.T) {
	priv, pub := newTestKey(t, "")
	enc, dec := mustPGP(t, pub, ""), mustPGP(t, priv, "")
	data := randomBytes(200000, 8)
	z := seal(t, enc, data, 10000)
	flipped := bytes.Clone(z)
	flipped[len(z)/2] ^= 0x40
	tail := bytes.Clone(z)
	tail[len(z)-3] ^= 0x01
	for name, in := range map[string][]byte{
		"flipped middle": flipped,
		"flipped MDC":    tail,
		"truncated":      z[:len(z)-30],
		"half":           z[:len(z)/2],
		"empty":          nil,
		"garbage":        []byte("not an OpenPGP message at all"),
	} {
		out, err := open(dec, in)
		if err == nil || !strings.HasPrefix(err.Error(), "openpgp: ") {
			t.Errorf("%s: %d bytes, error %v", name, len(out), err)
		}
	}

	// A consumer that stops early still learns of the damage from Close.
	r, _ := dec.Decrypt(bytes.NewReader(tail))
	if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err == nil {
		t.Error("Close after a partial read of a damaged message: no error")
	}
	r, _ = dec.Decrypt(bytes.NewReader(z))
	io.ReadFull(r, make([]byte, 1000))
	if err := r.Close(); err != nil {
		t.Errorf("Close after a partial read of a good message: %v", err)
	}

	// Unencrypted literal data is refused.
	var plain bytes.Buffer
	lw, err := packet.SerializeLiteral(nopCloser{&plain}, true, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	lw.Write([]byte("plain text"))
	lw.Close()
	if _, err := open(dec, plain.Bytes()); err == nil || !strings.Contains(err.Error(), "not a message encrypted") {
		t.Errorf("plain literal data: %v", err)
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestOpenPGPPassphrase(t *testing.T) {
	priv, pub := newTestKey(t, "s3cret")
	z := seal(t, mustPGP(t, pub, ""), []byte("protected"), 100)
	if out, err := open(mustPGP(t, priv, "s3cret"), z); err != nil || string(out) != "protected" {
		t.Fatalf("right passphrase: %q, %v", out, err)
	}
	if _, err := NewOpenPGP(priv, "wrong"); err == nil {
		t.Error("wrong passphrase accepted")
	}
	if _, err := open(mustPGP(t, priv, ""), z); err == nil || !strings.Contains(err.Error(), "WALG_PGP_KEY_PASSPHRASE") {
		t.Errorf("no passphrase: %v", err)
	}
	// Binary (unarmored) keyrings are refused, as in WAL-G.
	block, _ := armor.Decode(bytes.NewReader(priv))
	bin, _ := io.ReadAll(block.Body)
	if _, err := NewOpenPGP(bin, ""); err == nil {
		t.Error("binary keyring accepted")
	}
}

// TestOpenPGPWithGnuPG checks that GnuPG decrypts tusk's messages. The
// data has no carriage returns: like WAL-G's, the literal data is marked
// as text, which GnuPG converts on output.
func TestOpenPGPWithGnuPG(t *testing.T) {
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed; skipping the GnuPG interoperability check")
	}
	home := t.TempDir()
	priv, pub := newTestKey(t, "")
	keyFile := filepath.Join(home, "key.asc")
	os.WriteFile(keyFile, priv, 0o600)
	gpg := func(stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--quiet", "--no-tty"}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Logf("gpg %v: %s", args, stderr.String())
		}
		return out, err
	}
	if _, err := gpg(nil, "--import", keyFile); err != nil {
		t.Skipf("gpg cannot import the test key: %v", err)
	}
	data := bytes.ReplaceAll(randomBytes(300000, 6), []byte{'\r'}, []byte{'x'})
	z := seal(t, mustPGP(t, pub, ""), data, 5000)
	out, err := gpg(z, "--decrypt")
	if err != nil {
		t.Fatalf("gpg --decrypt: %v", err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("gpg decrypts %d bytes, want %d", len(out), len(data))
	}
}

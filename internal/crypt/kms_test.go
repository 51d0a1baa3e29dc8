package crypt

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/kmsserver"
)

// kmsEnv points the AWS SDK of this process at srv: the settings a user
// sets, credentials included (the SDK's default chain reads them from the
// environment, as WAL-G's does). It returns the crypt settings.
func kmsEnv(t *testing.T, srv *kmsserver.Server) Settings {
	t.Helper()
	s := Settings{}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "WALG_CSE_KMS_ID":
			s.KMSKeyID = v
		case "WALG_CSE_KMS_REGION":
			s.KMSRegion = v
		case "TUSK_KMS_ENDPOINT":
			s.KMSEndpoint = v
		default:
			t.Setenv(k, v)
		}
	}
	// Nothing of the machine's own AWS configuration.
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	return s
}

func kmsCrypterFor(t *testing.T, s Settings) Crypter {
	t.Helper()
	c, err := FromSettings(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "aws-kms" {
		t.Fatalf("FromSettings chose %s", c.Name())
	}
	return c
}

// directKMS is a KMS client of the test's own, to look behind the crypter.
func directKMS(srv *kmsserver.Server) *kms.Client {
	return kms.New(kms.Options{
		Region:       kmsserver.Region,
		BaseEndpoint: aws.String(srv.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("tusk-test", "tusk-test-secret", ""),
	})
}

const darePayload = 1 << 16

// openDARE decrypts a DARE 2.0 stream (minio/sio's format, which WAL-G's
// KMS crypter writes) written out here from its specification, not
// through sio: packages of a 16-byte header (version 0x20, cipher suite,
// payload length - 1, 12-byte nonce whose top bit flags the final
// package), the sealed payload and its 16-byte tag; the AEAD nonce is the
// header's with the package number XORed into its last 4 bytes, and the
// header's first 4 bytes are authenticated.
func openDARE(t *testing.T, key, stream []byte) []byte {
	t.Helper()
	var out []byte
	var first []byte
	for seq := uint32(0); ; seq++ {
		if len(stream) < 16 {
			t.Fatalf("package %d: %d bytes left, no header", seq, len(stream))
		}
		h := stream[:16]
		if h[0] != 0x20 {
			t.Fatalf("package %d: version %#x, want 0x20", seq, h[0])
		}
		n := int(binary.LittleEndian.Uint16(h[2:4])) + 1
		if len(stream) < 16+n+16 {
			t.Fatalf("package %d: truncated", seq)
		}
		final := h[4]&0x80 != 0
		if first == nil {
			first = bytes.Clone(h)
		}
		if h[1] != first[1] || !bytes.Equal(h[5:16], first[5:16]) || h[4]&0x7f != first[4]&0x7f {
			t.Fatalf("package %d: header %x does not continue the stream's %x", seq, h, first)
		}
		nonce := bytes.Clone(h[4:16])
		binary.LittleEndian.PutUint32(nonce[8:], binary.LittleEndian.Uint32(nonce[8:])^seq)
		pt, err := dareAEAD(t, h[1], key).Open(nil, nonce, stream[16:16+n+16], h[:4])
		if err != nil {
			t.Fatalf("package %d: %v", seq, err)
		}
		out = append(out, pt...)
		stream = stream[16+n+16:]
		if final {
			if len(stream) != 0 {
				t.Fatalf("%d bytes after the final package", len(stream))
			}
			return out
		}
		if n != darePayload {
			t.Fatalf("package %d: %d-byte payload before the final package", seq, n)
		}
	}
}

// sealDARE is openDARE's inverse with AES-256-GCM (what sio picks on CPUs
// with AES instructions).
func sealDARE(t *testing.T, key, plain []byte) []byte {
	t.Helper()
	var rnd [12]byte
	rand.Read(rnd[:])
	aead := dareAEAD(t, 0, key)
	var out []byte
	for seq := uint32(0); ; seq++ {
		n := min(len(plain), darePayload)
		final := len(plain) <= darePayload
		h := make([]byte, 16)
		h[0], h[1] = 0x20, 0
		binary.LittleEndian.PutUint16(h[2:4], uint16(n-1))
		copy(h[4:], rnd[:])
		h[4] &= 0x7f
		if final {
			h[4] |= 0x80
		}
		nonce := bytes.Clone(h[4:16])
		binary.LittleEndian.PutUint32(nonce[8:], binary.LittleEndian.Uint32(nonce[8:])^seq)
		out = append(out, h...)
		out = aead.Seal(out, nonce, plain[:n], h[:4])
		plain = plain[n:]
		if final {
			return out
		}
	}
}

func dareAEAD(t *testing.T, suite byte, key []byte) cipher.AEAD {
	t.Helper()
	switch suite {
	case 0:
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		return g
	case 1:
		a, err := chacha20poly1305.New(key)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	t.Fatalf("unknown DARE cipher suite %d", suite)
	return nil
}

func TestKMSRoundTrip(t *testing.T) {
	srv := kmsserver.Start(t)
	c := kmsCrypterFor(t, kmsEnv(t, srv))
	for _, n := range []int{0, 1, 1000, darePayload - 1, darePayload, darePayload + 1, 3*darePayload + 17} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			data := randomBytes(n, uint64(n))
			obj := seal(t, c, data, 4093)
			if len(obj) < kmsEncryptedKeySize {
				t.Fatalf("object of %d bytes", len(obj))
			}
			got, err := open(c, obj)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("round trip: %d bytes back of %d, %v", len(got), n, err)
			}
		})
	}
	// As WAL-G: a data key of its own for every object.
	a := seal(t, c, []byte("same"), 4)
	b := seal(t, c, []byte("same"), 4)
	if bytes.Equal(a[:kmsEncryptedKeySize], b[:kmsEncryptedKeySize]) {
		t.Error("two objects share a wrapped data key")
	}
}

// TestKMSFormatToWALG takes an object tusk wrote apart by hand: its first
// 184 bytes are a blob KMS itself unwraps (the test's own client, no key
// named, as WAL-G decrypts), and the rest is a DARE 2.0 stream under that
// key.
func TestKMSFormatToWALG(t *testing.T) {
	srv := kmsserver.Start(t)
	c := kmsCrypterFor(t, kmsEnv(t, srv))
	data := randomBytes(2*darePayload+100, 5)
	obj := seal(t, c, data, 1000)

	blob := obj[:kmsEncryptedKeySize]
	// local-kms's own layout: the length of the key's ARN, then the ARN.
	if int(blob[0]) != len(srv.KeyARN) || string(blob[1:1+len(srv.KeyARN)]) != srv.KeyARN {
		t.Fatalf("blob does not start with the key's ARN: %q", blob[:1+len(srv.KeyARN)])
	}
	out, err := directKMS(srv).Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: blob})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Plaintext) != 32 || aws.ToString(out.KeyId) != srv.KeyARN {
		t.Fatalf("data key of %d bytes under %s", len(out.Plaintext), aws.ToString(out.KeyId))
	}
	if got := openDARE(t, out.Plaintext, obj[kmsEncryptedKeySize:]); !bytes.Equal(got, data) {
		t.Fatal("hand-decrypted payload differs")
	}
	// DARE 2.0 overhead, exactly: 32 bytes per 64 KiB package.
	if want := kmsEncryptedKeySize + len(data) + 3*32; len(obj) != want {
		t.Errorf("object is %d bytes, want %d", len(obj), want)
	}
}

// TestKMSFormatFromWALG builds objects as WAL-G does, by hand: a random
// 32-byte key wrapped by KMS Encrypt, then the DARE stream.
func TestKMSFormatFromWALG(t *testing.T) {
	srv := kmsserver.Start(t)
	c := kmsCrypterFor(t, kmsEnv(t, srv))
	for _, keyID := range []string{kmsserver.KeyID, kmsserver.Alias, srv.KeyARN} {
		key := make([]byte, 32)
		rand.Read(key)
		enc, err := directKMS(srv).Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: key})
		if err != nil {
			t.Fatal(err)
		}
		if len(enc.CiphertextBlob) != kmsEncryptedKeySize {
			t.Fatalf("%s: KMS blob of %d bytes", keyID, len(enc.CiphertextBlob))
		}
		for _, n := range []int{0, 10, darePayload, darePayload + 1} {
			data := randomBytes(n, 9)
			var obj []byte
			obj = append(obj, enc.CiphertextBlob...)
			if n > 0 { // WAL-G writes no package for an empty stream
				obj = append(obj, sealDARE(t, key, data)...)
			}
			got, err := open(c, obj)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s, %d bytes: got %d, %v", keyID, n, len(got), err)
			}
		}
	}
}

func oneLine(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
}

func encryptErr(c Crypter) error {
	w, err := c.Encrypt(io.Discard)
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte("x")); err != nil {
		return err
	}
	return w.Close()
}

func TestKMSErrors(t *testing.T) {
	srv := kmsserver.Start(t)
	s := kmsEnv(t, srv)
	good := kmsCrypterFor(t, s)
	obj := seal(t, good, randomBytes(3*darePayload, 1), 5000)

	t.Run("unknown key", func(t *testing.T) {
		bad := s
		bad.KMSKeyID = "00000000-0000-4000-8000-000000000000"
		oneLine(t, encryptErr(kmsCrypterFor(t, bad)), "WALG_CSE_KMS_ID", "NotFoundException")
	})
	t.Run("unreachable", func(t *testing.T) {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		down := s
		down.KMSEndpoint = "http://127.0.0.1:" + strconv.Itoa(port)
		c := kmsCrypterFor(t, down)
		oneLine(t, encryptErr(c), "WALG_CSE_KMS_ID", "cannot reach KMS", "TUSK_KMS_ENDPOINT")
		_, err = open(c, obj)
		oneLine(t, err, "WALG_CSE_KMS_ID", "cannot reach KMS")
	})
	t.Run("no region", func(t *testing.T) {
		nr := s
		nr.KMSRegion = ""
		_, err := FromSettings(context.Background(), nr)
		oneLine(t, err, "WALG_CSE_KMS_REGION")
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c, err := FromSettings(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := encryptErr(c); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	// A KMS that takes the connection and never answers: cancelling the
	// crypter's context (SIGTERM) ends the request at once.
	t.Run("hung KMS, cancelled", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		hung := s
		hung.KMSEndpoint = "http://" + l.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		c, err := FromSettings(ctx, hung)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		err = encryptErr(c)
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		oneLine(t, err, "WALG_CSE_KMS_ID")
	})
	t.Run("another account's object", func(t *testing.T) {
		other := kmsserver.StartAccount(t, strings.Repeat("2", len(srv.AccountID)))
		o := s
		o.KMSEndpoint = other.Endpoint
		_, err := open(kmsCrypterFor(t, o), obj)
		oneLine(t, err, "WALG_CSE_KMS_ID", "decrypting the object's data key")
	})
	t.Run("blob not 184 bytes", func(t *testing.T) {
		short := kmsserver.StartAccount(t, "111122223333")
		o := s
		o.KMSEndpoint = short.Endpoint
		oneLine(t, encryptErr(kmsCrypterFor(t, o)), "140-byte encrypted data key", "184")
	})
	t.Run("truncated key", func(t *testing.T) {
		_, err := open(good, obj[:100])
		oneLine(t, err, "shorter than its 184-byte encrypted data key")
	})
	t.Run("damaged blob", func(t *testing.T) {
		d := bytes.Clone(obj)
		d[150] ^= 1
		_, err := open(good, d)
		oneLine(t, err, "WALG_CSE_KMS_ID", "InvalidCiphertextException")
	})
	for name, damage := range map[string]func([]byte) []byte{
		"flipped payload":  func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"cut last package": func(b []byte) []byte { return b[:kmsEncryptedKeySize+darePayload+32] },
		"cut mid package":  func(b []byte) []byte { return b[:len(b)-10] },
		"trailing bytes":   func(b []byte) []byte { return append(b, 0x20, 0, 0, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			got, err := open(good, damage(bytes.Clone(obj)))
			oneLine(t, err, "aws kms")
			if len(got) > 3*darePayload {
				t.Errorf("%d bytes of plaintext", len(got))
			}
		})
	}
	// The consumer stops early: Close still checks the rest.
	t.Run("close checks the rest", func(t *testing.T) {
		d := bytes.Clone(obj)
		d[len(d)-5] ^= 1
		r, _ := good.Decrypt(bytes.NewReader(d))
		if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		oneLine(t, r.Close(), "aws kms")
	})
}

// TestKMSErrorsHideKeys checks that no failure shows key material: the
// wrapped key an object starts with, or the data key.
func TestKMSErrorsHideKeys(t *testing.T) {
	srv := kmsserver.Start(t)
	s := kmsEnv(t, srv)
	c := kmsCrypterFor(t, s)
	obj := seal(t, c, randomBytes(100, 2), 100)
	d := bytes.Clone(obj)
	d[170] ^= 1
	_, err := open(c, d)
	if err == nil {
		t.Fatal("damaged blob decrypted")
	}
	for _, secret := range [][]byte{obj[:kmsEncryptedKeySize], d[:kmsEncryptedKeySize]} {
		for _, form := range []string{string(secret[17:40]), hex.EncodeToString(secret[17:40])} {
			if strings.Contains(err.Error(), form) {
				t.Errorf("error shows key material: %v", err)
			}
		}
	}
}

// TestKMSMemoryEstimate streams 16 MiB through the KMS crypter (writes of
// 1 MiB) and checks the live heap of the writer and the reader, sampled
// after every MiB, against MemoryEstimate. The KMS request's garbage is
// not held; the SDK client is the process's, warmed up first.
func TestKMSMemoryEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 16 MiB streams")
	}
	srv := kmsserver.Start(t)
	c := kmsCrypterFor(t, kmsEnv(t, srv))
	estW, estR := MemoryEstimate(c)
	if estW == 0 || estR == 0 {
		t.Fatal("no estimate for aws-kms")
	}
	data := randomBytes(16<<20, 3)
	if _, err := open(c, seal(t, c, data[:1000], 1000)); err != nil {
		t.Fatal(err)
	}
	m := measureStreams(t, c, c, data)
	if m.writerLive > estW || m.readerLive > estR {
		t.Errorf("writer live %d bytes, reader %d; estimates %d, %d", m.writerLive, m.readerLive, estW, estR)
	}
}

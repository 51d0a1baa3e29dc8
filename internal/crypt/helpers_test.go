package crypt

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/testenv"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fixture returns the directory of a WAL-G fixture and its manifest entry.
func fixture(t *testing.T, name string) (string, map[string]any) {
	t.Helper()
	root := testenv.Fixtures(t)
	raw, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Fixtures []map[string]any `json:"fixtures"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Fixtures {
		if f["name"] == name {
			return filepath.Join(root, name), f
		}
	}
	t.Fatalf("fixture %s not in manifest.json", name)
	return "", nil
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 {
			out[fields[1]] = fields[0]
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no checksums", path)
	}
	return out
}

// decodeObject decrypts then decompresses one stored object, as wal-fetch
// does, and returns the sha256 of the result.
func decodeObject(t *testing.T, c Crypter, m codec.Method, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dr, err := c.Decrypt(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	zr, err := m.NewReader(dr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	zr.Close()
	if err := dr.Close(); err != nil {
		t.Fatalf("%s: close: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func seal(t testing.TB, c Crypter, data []byte, chunk int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := c.Encrypt(&b)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n := min(chunk, len(data))
		if k, err := w.Write(data[:n]); err != nil || k != n {
			t.Fatalf("write: %d, %v", k, err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// open decrypts everything, closing the reader; the error is the first
// from Read or Close.
func open(c Crypter, data []byte) ([]byte, error) {
	r, err := c.Decrypt(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return out, err
}

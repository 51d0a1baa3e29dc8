package codec

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randomBytes returns n incompressible bytes from a fixed seed.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// walLike returns n compressible bytes shaped like WAL: 8 KiB pages of
// repeated records with small varying fields and some random bytes.
func walLike(n int) []byte {
	r := rand.New(rand.NewPCG(7, 11))
	b := make([]byte, n)
	for off := 0; off < n; off += 64 {
		rec := b[off:min(off+64, n)]
		copy(rec, "xlog-record:relation=16384 block=")
		for i := 33; i < len(rec); i++ {
			rec[i] = byte('0' + (off/64+i)%10)
		}
		if len(rec) > 40 && r.IntN(4) == 0 {
			rec[40] = byte(r.Uint32())
		}
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readSums parses a sha256sum-format file into name → hex digest.
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
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		out[strings.TrimPrefix(fields[1], "*")] = fields[0]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no checksums", path)
	}
	return out
}

// fileMethod returns the codec for a fixture object by its extension, and
// the WAL file name it holds.
func fileMethod(t *testing.T, path string) (Method, string) {
	t.Helper()
	base := filepath.Base(path)
	ext := ""
	for _, e := range []string{"lz4", "lzma", "zst", "br", "gz", "lzo"} {
		if strings.HasSuffix(base, "."+e) {
			ext = e
			base = strings.TrimSuffix(base, "."+e)
			break
		}
	}
	m, err := ByExt(ext)
	if err != nil {
		t.Fatal(err)
	}
	return m, base
}

func compress(t testing.TB, m Method, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := m.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, data)
	if err := w.Close(); err != nil {
		t.Fatalf("%s: close: %v", m.Name(), err)
	}
	return buf.Bytes()
}

// writeChunks writes data in uneven pieces, as a pipeline would.
func writeChunks(t testing.TB, w io.Writer, data []byte) {
	t.Helper()
	sizes := []int{1, 7, 4096, 65536, 100000}
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		if k, err := w.Write(data[:n]); err != nil || k != n {
			t.Fatalf("write %d bytes: wrote %d, %v", n, k, err)
		}
		data = data[n:]
	}
}

func decompress(m Method, data []byte) ([]byte, error) {
	r, err := m.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

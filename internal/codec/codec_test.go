package codec

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/tusk-pg/tusk/internal/testenv"
)

func writableMethods(t *testing.T) []Method {
	t.Helper()
	var ms []Method
	for _, name := range []string{LZ4, LZMA, Zstd, Brotli, None} {
		m, err := ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

func TestByName(t *testing.T) {
	for name, ext := range map[string]string{"lz4": "lz4", "lzma": "lzma", "zstd": "zst", "brotli": "br", "none": ""} {
		m, err := ByName(name)
		if err != nil {
			t.Fatalf("ByName(%q): %v", name, err)
		}
		if m.Name() != name || m.Ext() != ext {
			t.Errorf("ByName(%q) = %s/%q, want ext %q", name, m.Name(), m.Ext(), ext)
		}
	}
	for _, bad := range []string{"x", "gzip", "lzo", "LZ4", ""} {
		_, err := ByName(bad)
		want := `WALG_COMPRESSION_METHOD: unknown method "` + bad + `" (accepted: lz4, lzma, zstd, brotli, none)`
		if err == nil || err.Error() != want {
			t.Errorf("ByName(%q) error = %v, want %q", bad, err, want)
		}
	}
}

func TestByExt(t *testing.T) {
	for ext, name := range map[string]string{"lz4": LZ4, "lzma": LZMA, "zst": Zstd, "br": Brotli, "": None, "gz": Gzip, "lzo": LZO} {
		m, err := ByExt(ext)
		if err != nil {
			t.Fatalf("ByExt(%q): %v", ext, err)
		}
		if m.Name() != name || m.Ext() != ext {
			t.Errorf("ByExt(%q) = %s/%q", ext, m.Name(), m.Ext())
		}
	}
	if _, err := ByExt("backup"); err == nil || !strings.Contains(err.Error(), `"backup"`) {
		t.Errorf("ByExt(backup) error = %v", err)
	}
	for _, ext := range []string{"gz", "lzo"} {
		m, _ := ByExt(ext)
		if _, err := m.NewWriter(io.Discard); err == nil {
			t.Errorf("%s: NewWriter succeeded for a decompress-only method", ext)
		}
	}
}

func TestFromConfig(t *testing.T) {
	m, err := FromConfig("", "")
	if err != nil || m.Name() != LZ4 {
		t.Fatalf("FromConfig default = %v, %v", m, err)
	}
	m, err = FromConfig("zstd", "BeSt")
	if err != nil {
		t.Fatal(err)
	}
	if l := m.(interface{ Level() ZstdLevel }).Level(); l != ZstdBest {
		t.Errorf("level = %v, want best", l)
	}
	m, err = FromConfig("zstd", "")
	if err != nil || m.(zstdMethod).level != ZstdDefault {
		t.Errorf("zstd without level = %v, %v", m, err)
	}
	if _, err := FromConfig("lz4", "fastest"); err == nil || !strings.Contains(err.Error(), "WALG_ZSTD_LEVEL") {
		t.Errorf("level with lz4: error = %v", err)
	}
	if _, err := FromConfig("zstd", "max"); err == nil || !strings.Contains(err.Error(), `WALG_ZSTD_LEVEL: unknown level "max"`) {
		t.Errorf("bad level: error = %v", err)
	}
	if _, err := FromConfig("snappy", ""); err == nil || !strings.Contains(err.Error(), "WALG_COMPRESSION_METHOD") {
		t.Errorf("bad method: error = %v", err)
	}
}

func TestCandidates(t *testing.T) {
	keys := func(cs []Candidate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Key)
		}
		return out
	}
	base := "wal_005/000000010000000000000001"
	cs := Candidates(base, nil)
	want := []string{base + ".lz4", base + ".lzma", base + ".gz", base + ".", base + ".br", base + ".lzo", base + ".zst", base}
	if got := keys(cs); !reflect.DeepEqual(got, want) {
		t.Fatalf("Candidates = %q\nwant %q", got, want)
	}
	for i, c := range cs {
		if got, _ := ByExt(ExtOf(want[i])); c.Method.Ext() != got.Ext() && !c.Bare {
			t.Errorf("%s: method %s", c.Key, c.Method.Name())
		}
		if c.Bare != (i == len(cs)-1) {
			t.Errorf("%s: Bare = %v", c.Key, c.Bare)
		}
	}
	if last := cs[len(cs)-1]; last.Method.Name() != None {
		t.Errorf("bare candidate method = %s", last.Method.Name())
	}

	zst, _ := ByName(Zstd)
	want = []string{base + ".zst", base + ".lz4", base + ".lzma", base + ".gz", base + ".", base + ".br", base + ".lzo", base}
	if got := keys(Candidates(base, zst)); !reflect.DeepEqual(got, want) {
		t.Errorf("Candidates(zstd first) = %q\nwant %q", got, want)
	}
	none, _ := ByName(None)
	want = []string{base + ".", base + ".lz4", base + ".lzma", base + ".gz", base + ".br", base + ".lzo", base + ".zst", base}
	if got := keys(Candidates(base, none)); !reflect.DeepEqual(got, want) {
		t.Errorf("Candidates(none first) = %q\nwant %q", got, want)
	}
}

func TestKeyAndExtOf(t *testing.T) {
	lz, _ := ByName(LZ4)
	none, _ := ByName(None)
	if k := Key("wal_005/x", lz); k != "wal_005/x.lz4" {
		t.Errorf("Key lz4 = %q", k)
	}
	if k := Key("wal_005/x", none); k != "wal_005/x" {
		t.Errorf("Key none = %q", k)
	}
	for key, ext := range map[string]string{"a/b/part_1.tar.lz4": "lz4", "a.b/c": "", "x.": "", "y.zst": "zst"} {
		if got := ExtOf(key); got != ext {
			t.Errorf("ExtOf(%q) = %q, want %q", key, got, ext)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	big := 16 << 20
	if testing.Short() {
		big = 2 << 20
	}
	inputs := map[string][]byte{
		"empty":          {},
		"one byte":       {0x42},
		"compressible":   walLike(3<<20 + 17),
		"incompressible": randomBytes(big, 1),
	}
	for _, m := range writableMethods(t) {
		for name, in := range inputs {
			if m.Name() == LZMA && name == "incompressible" {
				// The LZMA encoder is slow on random data; 1 MiB
				// crosses its dictionary twice.
				in = in[:1<<20]
			}
			t.Run(m.Name()+"/"+name, func(t *testing.T) {
				z := compress(t, m, in)
				if m.Name() != None && len(z) == 0 {
					t.Fatal("empty output")
				}
				if name == "incompressible" && m.Name() != None && len(z) <= len(in) {
					t.Errorf("random input shrank: %d -> %d", len(in), len(z))
				}
				out, err := decompress(m, z)
				if err != nil {
					t.Fatalf("decompress: %v", err)
				}
				if !bytes.Equal(out, in) {
					t.Fatalf("round trip differs: %d bytes in, %d out", len(in), len(out))
				}
			})
		}
	}
}

// TestWriterReuse checks that a writer produces identical, valid streams
// after Close and Reset, and that a reader can be reset onto a new stream.
func TestWriterReuse(t *testing.T) {
	a, b := walLike(300000), randomBytes(200000, 2)
	for _, m := range writableMethods(t) {
		t.Run(m.Name(), func(t *testing.T) {
			var first bytes.Buffer
			w, err := m.NewWriter(&first)
			if err != nil {
				t.Fatal(err)
			}
			writeChunks(t, w, a)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rs, ok := w.(Resetter)
			if !ok {
				t.Fatalf("%T does not implement Resetter", w)
			}
			var second bytes.Buffer
			rs.Reset(&second)
			writeChunks(t, w, b)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := m.NewReader(bytes.NewReader(first.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, a) {
				t.Fatalf("first stream: %v (equal %v)", err, bytes.Equal(got, a))
			}
			rr, ok := r.(ReadResetter)
			if !ok {
				t.Fatalf("%T does not implement ReadResetter", r)
			}
			if err := rr.Reset(bytes.NewReader(second.Bytes())); err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(r)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("second stream after Reset: %v (equal %v)", err, bytes.Equal(got, b))
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNoGoroutines(t *testing.T) {
	data := walLike(5 << 20)
	for _, m := range writableMethods(t) {
		before := runtime.NumGoroutine()
		w, _ := m.NewWriter(io.Discard)
		writeChunks(t, w, data)
		mid := runtime.NumGoroutine()
		w.Close()
		r, _ := m.NewReader(bytes.NewReader(compress(t, m, data)))
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		during := runtime.NumGoroutine()
		r.Close()
		if mid != before || during != before {
			t.Errorf("%s: goroutines %d before, %d while writing, %d while reading", m.Name(), before, mid, during)
		}
	}
}

func TestOutputHeaders(t *testing.T) {
	data := walLike(100000)
	for name, prefix := range map[string][]byte{
		LZ4:  {0x04, 0x22, 0x4d, 0x18},
		Zstd: {0x28, 0xb5, 0x2f, 0xfd},
		LZMA: {0x5d, 0x00, 0x00, 0x80, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		m, _ := ByName(name)
		for _, in := range [][]byte{nil, data} {
			z := compress(t, m, in)
			if !bytes.HasPrefix(z, prefix) {
				t.Errorf("%s (%d bytes in): output starts % x, want % x", name, len(in), z[:min(len(z), len(prefix))], prefix)
			}
		}
	}
	// lz4: frame descriptor flags: version 01, independent blocks,
	// content checksum on; block size 256 KiB (index 5).
	lz, _ := ByName(LZ4)
	z := compress(t, lz, data)
	if z[4] != 0x64 || z[5] != 0x50 {
		t.Errorf("lz4 FLG/BD = %#x/%#x, want 0x64/0x50", z[4], z[5])
	}
	// zstd: checksum flag set, no content size, window 1 MiB, as for
	// WAL-G's 16 MiB segments. (For input that fits one 128 KiB block the
	// library knows the size at Close and writes a single-segment frame
	// with content size, for WAL-G as for tusk.)
	zs, _ := ByName(Zstd)
	z = compress(t, zs, walLike(1<<20))
	if fhd := z[4]; fhd&0x04 == 0 || fhd&0xc0 != 0 || fhd&0x20 != 0 {
		t.Errorf("zstd frame header descriptor = %#x", fhd)
	}
	if wd := z[5]; wd != (20-10)<<3 {
		t.Errorf("zstd window descriptor = %#x, want 1 MiB", wd)
	}
}

// TestCLIDecodes checks tusk's output with the reference command-line
// decoders where they are installed.
func TestCLIDecodes(t *testing.T) {
	data := walLike(2<<20 + 3)
	for _, c := range []struct {
		method string
		cmd    []string
	}{
		{LZ4, []string{"lz4", "-dc"}},
		{Zstd, []string{"zstd", "-dc"}},
		{LZMA, []string{"xz", "--format=lzma", "-dc"}},
		{Brotli, []string{"brotli", "-dc"}},
	} {
		if _, err := exec.LookPath(c.cmd[0]); err != nil {
			t.Logf("%s not installed; skipping its check", c.cmd[0])
			continue
		}
		m, _ := ByName(c.method)
		cmd := exec.Command(c.cmd[0], c.cmd[1:]...)
		cmd.Stdin = bytes.NewReader(compress(t, m, data))
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("%s: %v", c.cmd[0], err)
			continue
		}
		if !bytes.Equal(out, data) {
			t.Errorf("%s decodes %d bytes, want %d", c.cmd[0], len(out), len(data))
		}
	}
}

// TestCorruptInput checks that damaged streams give errors, not short data.
func TestCorruptInput(t *testing.T) {
	data := walLike(600000)
	for _, m := range writableMethods(t) {
		if m.Name() == None {
			continue
		}
		z := compress(t, m, data)
		cases := map[string][]byte{
			"empty":     {},
			"truncated": z[:len(z)/2],
			"no tail":   z[:len(z)-1],
		}
		if m.Name() == LZ4 || m.Name() == Zstd {
			// Only these carry a content checksum; a flipped bit in
			// LZMA-alone or brotli may decode to other bytes unnoticed,
			// in WAL-G as here. Encryption (both crypters authenticate)
			// is what detects damage there.
			flipped := bytes.Clone(z)
			flipped[len(z)/2] ^= 0x10
			cases["flipped"] = flipped
		}
		for name, in := range cases {
			out, err := decompress(m, in)
			if err == nil {
				t.Errorf("%s/%s: no error (%d bytes out)", m.Name(), name, len(out))
			} else if !strings.HasPrefix(err.Error(), m.Name()+": ") {
				t.Errorf("%s/%s: error %q does not name the codec", m.Name(), name, err)
			}
		}
	}
}

func TestGzipReader(t *testing.T) {
	gz, _ := ByExt("gz")
	data := walLike(500000)
	cmd := exec.Command("gzip", "-c")
	cmd.Stdin = bytes.NewReader(data)
	z, err := cmd.Output()
	if err != nil {
		t.Skipf("gzip command unavailable: %v", err)
	}
	// Two members back to back decode as the concatenation.
	out, err := decompress(gz, append(bytes.Clone(z), z...))
	if err != nil || !bytes.Equal(out, append(bytes.Clone(data), data...)) {
		t.Fatalf("gzip: %v", err)
	}
	if _, err := decompress(gz, nil); err == nil {
		t.Error("empty gzip input: no error")
	}
	if _, err := decompress(gz, z[:len(z)-3]); err == nil {
		t.Error("truncated gzip input: no error")
	}
}

// TestFixtureWALOnlyCodecs decodes every WAL object WAL-G wrote with each
// compression method and compares it with the raw segment's checksum.
func TestFixtureWALOnlyCodecs(t *testing.T) {
	dir := filepath.Join(testenv.Fixtures(t), "wal-only-codecs")
	sums := readSums(t, filepath.Join(dir, "expected", "wal-sha256.txt"))
	seen := map[string]int{}
	for _, method := range []string{"lz4", "lzma", "zstd", "brotli", "none"} {
		files, err := filepath.Glob(filepath.Join(dir, "storage", method, "wal_005", "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no WAL objects (%v)", method, err)
		}
		for _, f := range files {
			m, name := fileMethod(t, f)
			if want := map[string]string{"zstd": "zstd", "brotli": "brotli"}[method]; want != "" && m.Name() != want {
				t.Fatalf("%s: extension maps to %s", f, m.Name())
			}
			checkObject(t, m, f, sums[name])
			seen[method]++
		}
	}
	for _, method := range []string{"lz4", "lzma", "zstd", "brotli", "none"} {
		if seen[method] != len(sums) {
			t.Errorf("%s: decoded %d objects, want %d", method, seen[method], len(sums))
		}
	}
}

func TestFixtureLZ4Delta(t *testing.T) {
	dir := filepath.Join(testenv.Fixtures(t), "lz4-delta")
	sums := readSums(t, filepath.Join(dir, "expected", "wal-sha256.txt"))
	files, _ := filepath.Glob(filepath.Join(dir, "storage", "wal_005", "*.lz4"))
	if len(files) != len(sums) {
		t.Fatalf("%d lz4 objects, %d checksums", len(files), len(sums))
	}
	for _, f := range files {
		m, name := fileMethod(t, f)
		checkObject(t, m, f, sums[name])
	}
}

func checkObject(t *testing.T, m Method, path, want string) {
	t.Helper()
	if want == "" {
		t.Fatalf("%s: no expected checksum", path)
	}
	z, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decompress(m, z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if got := sum(out); got != want {
		t.Errorf("%s: sha256 %s, want %s", path, got, want)
	}
}

func TestLZMADictCap(t *testing.T) {
	lz, _ := ByName(LZMA)
	z := compress(t, lz, []byte("hello"))
	// Declare a 64 MiB dictionary: rejected before anything is allocated.
	bad := bytes.Clone(z)
	copy(bad[1:5], []byte{0, 0, 0, 4})
	_, err := decompress(lz, bad)
	if err == nil || !strings.Contains(err.Error(), "dictionary") {
		t.Fatalf("64 MiB dictionary: error = %v", err)
	}
	// lc=8 lp=4: a 6 MiB probability table.
	bad = bytes.Clone(z)
	bad[0] = 4*9 + 8
	if _, err := decompress(lz, bad); err == nil || !strings.Contains(err.Error(), "properties") {
		t.Fatalf("lc+lp=12: error = %v", err)
	}
}

func TestBrotliWindowCap(t *testing.T) {
	br, _ := ByName(Brotli)
	for lgwin, ok := range map[int]bool{16: true, 19: true, 22: true, 23: false, 24: false} {
		var b bytes.Buffer
		w := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 1, LGWin: lgwin})
		w.Write(walLike(5000))
		w.Close()
		out, err := decompress(br, b.Bytes())
		if ok && (err != nil || len(out) != 5000) {
			t.Errorf("lgwin %d: %v", lgwin, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "window")) {
			t.Errorf("lgwin %d: error = %v", lgwin, err)
		}
	}
	// WAL-G's first byte (window 2^22) and the large-window marker.
	if err := checkBrotliWindow(0x8b); err != nil {
		t.Errorf("WAL-G header: %v", err)
	}
	if err := checkBrotliWindow(0x11); err == nil {
		t.Error("large-window stream accepted")
	}
}

func TestZstdWindowCap(t *testing.T) {
	zs, _ := ByName(Zstd)
	z := compress(t, zs, walLike(1<<20))
	bad := bytes.Clone(z)
	bad[5] = (27 - 10) << 3 // 128 MiB window
	_, err := decompress(zs, bad)
	if err == nil || !strings.Contains(err.Error(), "window") {
		t.Fatalf("128 MiB window: error = %v", err)
	}
}

func TestReadAfterClose(t *testing.T) {
	for _, m := range writableMethods(t) {
		if m.Name() == Zstd || m.Name() == LZ4 || m.Name() == Brotli {
			continue // the libraries report their own state errors
		}
		r, _ := m.NewReader(bytes.NewReader(compress(t, m, []byte("abc"))))
		r.Close()
		if _, err := r.Read(make([]byte, 10)); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: read after Close: %v", m.Name(), err)
		}
	}
}

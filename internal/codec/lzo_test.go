package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lzopSample is `lzop -9 -c` of "abcabcabcabcabcabcabcabc hello hello hello
// hello lzop\n" (one compressed block with overlapping matches).
const lzopSample = "894c5a4f000d0a1a0a104020a0094003090300000d000000006b072249000000000026690253000000360000001a2d8313f014616263330800032068656c6c6f311400026c7a6f700a11000000000000"

func TestLZOSample(t *testing.T) {
	z, _ := hex.DecodeString(lzopSample)
	lzo, _ := ByExt("lzo")
	out, err := decompress(lzo, z)
	if err != nil {
		t.Fatal(err)
	}
	if want := "abcabcabcabcabcabcabcabc hello hello hello hello lzop\n"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

// TestLZOFromLzop decodes what the lzop command writes, at every level and
// checksum setting, for inputs that produce compressed and stored blocks.
func TestLZOFromLzop(t *testing.T) {
	if _, err := exec.LookPath("lzop"); err != nil {
		t.Skip("lzop not installed; skipping lzop decoding tests (apt-get install lzop)")
	}
	mixed := append(walLike(400000), randomBytes(300000, 5)...)
	mixed = append(mixed, walLike(100000)...)
	inputs := map[string][]byte{
		"empty":          {},
		"one byte":       {'x'},
		"compressible":   walLike(1<<20 + 5),
		"incompressible": randomBytes(600000, 3),
		"mixed":          mixed,
		"zeros":          make([]byte, 700000),
	}
	lzo, _ := ByExt("lzo")
	for _, opts := range [][]string{{"-1"}, {"-3"}, {"-9"}, {"--crc32"}, {"-F"}} {
		for name, in := range inputs {
			cmd := exec.Command("lzop", append(opts, "-c")...)
			cmd.Stdin = bytes.NewReader(in)
			z, err := cmd.Output()
			if err != nil {
				t.Fatalf("lzop %v: %v", opts, err)
			}
			out, err := decompress(lzo, z)
			if err != nil {
				t.Errorf("lzop %v / %s: %v", opts, name, err)
				continue
			}
			if !bytes.Equal(out, in) {
				t.Errorf("lzop %v / %s: %d bytes out, want %d", opts, name, len(out), len(in))
			}
		}
	}

	// A file argument stores its name in the header.
	dir := t.TempDir()
	path := filepath.Join(dir, "000000010000000000000001")
	data := walLike(300000)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	z, err := exec.Command("lzop", "-c", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := decompress(lzo, z); err != nil || !bytes.Equal(out, data) {
		t.Fatalf("named file: %v", err)
	}

	// Damage: every case must fail, not return short or wrong data.
	cmd := exec.Command("lzop", "-c")
	cmd.Stdin = bytes.NewReader(walLike(600000))
	z, err = cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(z)
	flipped[len(z)/2] ^= 0x01
	badHeader := bytes.Clone(z)
	badHeader[20] ^= 0x01
	for name, in := range map[string][]byte{
		"empty":       {},
		"magic only":  z[:9],
		"truncated":   z[:len(z)/2],
		"no end mark": z[:len(z)-4],
		"flipped":     flipped,
		"bad header":  badHeader,
		"not lzop":    []byte("hello world, definitely not lzop"),
	} {
		if out, err := decompress(lzo, in); err == nil {
			t.Errorf("%s: no error (%d bytes out)", name, len(out))
		} else if !strings.HasPrefix(err.Error(), "lzo: ") {
			t.Errorf("%s: error %q does not name the codec", name, err)
		}
	}
}

func TestLZO1XErrors(t *testing.T) {
	for name, c := range map[string]struct {
		src  []byte
		dstN int
		want error
	}{
		"empty":            {nil, 0, errLZOInputOverrun},
		"literal overrun":  {[]byte{0x20, 'a'}, 15, errLZOInputOverrun}, // 15 literals, 1 given
		"output overrun":   {[]byte{0x15, 'a', 'b', 'c', 'd'}, 2, errLZOOutputOverrun},
		"look behind":      {[]byte{0x12, 'a', 0x40, 0x05}, 10, errLZOLookBehind}, // 3-byte match 42 back after 1 byte
		"no end marker":    {[]byte{0x13, 'a', 'b'}, 2, errLZOInputOverrun},
		"long length runs": {append([]byte{0x00}, make([]byte, 100)...), 10, errLZOOutputOverrun},
	} {
		err := lzo1xDecompress(c.src, make([]byte, c.dstN))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", name, err, c.want)
		}
	}
	// Valid: two literals, then the end marker.
	ok := []byte{0x13, 'a', 'b', 0x11, 0x00, 0x00}
	dst := make([]byte, 2)
	if err := lzo1xDecompress(ok, dst); err != nil || string(dst) != "ab" {
		t.Errorf("literals + end: %q, %v", dst, err)
	}
	if err := lzo1xDecompress(ok, make([]byte, 3)); err == nil {
		t.Error("short output not reported")
	}
	if err := lzo1xDecompress(append(bytes.Clone(ok), 0), dst); err == nil {
		t.Error("bytes after the end marker not reported")
	}
}

package codec

import (
	"errors"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// lz4BlockSize is the block size tusk writes. WAL-G uses the library default
// of 4 MiB; the frame format lets every reader (WAL-G's lz4.NewReader
// included) decode any of the four block sizes a frame may declare. The
// writer holds two blocks (input and compressed output), so 256 KiB blocks
// bound it at 0.5 MiB instead of 8 MiB: a daemon keeps one writer per
// upload worker alive, and they set its heap's high-water mark. LZ4 matches
// reach back only 64 KiB, so only the start of each block compresses worse:
// on WAL the output is about 1% larger than with 4 MiB blocks (64 KiB
// blocks: 3.5%), at the same CPU.
const lz4BlockSize = lz4.Block256Kb

// lz4MaxBlock is the largest block an LZ4 frame can declare; the reader holds
// two buffers of the declared size (WAL-G's objects: 4 MiB).
const lz4MaxBlock = 4 << 20

type lz4Method struct{}

func (lz4Method) Name() string { return LZ4 }
func (lz4Method) Ext() string  { return "lz4" }

func (lz4Method) NewWriter(w io.Writer) (io.WriteCloser, error) {
	zw := lz4.NewWriter(w)
	// Concurrency 1: blocks are compressed on the calling goroutine, one
	// block buffer at a time. Content checksum on, as WAL-G writes it.
	if err := zw.Apply(
		lz4.BlockSizeOption(lz4BlockSize),
		lz4.ChecksumOption(true),
		lz4.ConcurrencyOption(1),
		lz4.CompressionLevelOption(lz4.Fast),
	); err != nil {
		return nil, fmt.Errorf("lz4: configure writer: %w", err)
	}
	return zw, nil
}

func (lz4Method) NewReader(r io.Reader) (io.ReadCloser, error) {
	zr := &lz4Reader{}
	zr.src.r = r
	zr.zr = lz4.NewReader(&zr.src)
	// Concurrency 1 (also the library default): no goroutines, one block
	// buffer at a time.
	if err := zr.zr.Apply(lz4.ConcurrencyOption(1)); err != nil {
		return nil, fmt.Errorf("lz4: configure reader: %w", err)
	}
	return zr, nil
}

// lz4Reader adds Close, an error-returning Reset and a check for empty input
// to the library reader, which would decode an empty object as empty data.
type lz4Reader struct {
	zr  *lz4.Reader
	src countingReader
}

func (r *lz4Reader) Read(p []byte) (int, error) {
	n, err := r.zr.Read(p)
	if err == io.EOF && r.src.n == 0 {
		return n, errEmptyStream("lz4")
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("lz4: %w", err)
	}
	return n, err
}

func (r *lz4Reader) Reset(src io.Reader) error {
	r.src = countingReader{r: src}
	r.zr.Reset(&r.src)
	return nil
}

// Close returns the block buffers to the library's pool.
func (r *lz4Reader) Close() error {
	r.src = countingReader{}
	r.zr.Reset(&r.src)
	return nil
}

// countingReader counts the bytes read through it, so readers can tell an
// empty source from an empty stream. If first is set, it vets the first
// byte of the stream before the decoder sees it.
type countingReader struct {
	r     io.Reader
	n     int64
	first func(byte) error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.r == nil {
		return 0, errors.New("read after Close")
	}
	n, err := c.r.Read(p)
	if c.n == 0 && n > 0 && c.first != nil {
		if ferr := c.first(p[0]); ferr != nil {
			return 0, ferr
		}
	}
	c.n += int64(n)
	return n, err
}

// errEmptyStream reports an object with no bytes where the container format
// needs at least a header; it usually means a truncated upload.
func errEmptyStream(method string) error {
	return fmt.Errorf("%s: empty input: not a %s stream (truncated object?)", method, method)
}

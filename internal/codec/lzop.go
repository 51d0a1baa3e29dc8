package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"hash/crc32"
	"io"
)

// lzoMethod reads lzop files (WAL-E's format, read-only in WAL-G): a header,
// then blocks of at most 256 KiB, each LZO1X-compressed or stored, with
// Adler-32 or CRC-32 checksums. The container parser and the LZO1X
// decompressor (lzo1x.go) are written here because the project has no
// pure-Go LZO library.
type lzoMethod struct{}

func (lzoMethod) Name() string { return LZO }
func (lzoMethod) Ext() string  { return "lzo" }

func (lzoMethod) NewWriter(io.Writer) (io.WriteCloser, error) {
	return nil, errors.New("lzo: compression is not supported (WAL-G only reads lzo objects)")
}

func (lzoMethod) NewReader(r io.Reader) (io.ReadCloser, error) {
	return &lzopReader{src: r}, nil
}

var lzopMagic = [9]byte{0x89, 'L', 'Z', 'O', 0x00, '\r', '\n', 0x1a, '\n'}

// lzop header flags.
const (
	lzopAdler32D    = 0x00000001
	lzopAdler32C    = 0x00000002
	lzopExtraField  = 0x00000040
	lzopCRC32D      = 0x00000100
	lzopCRC32C      = 0x00000200
	lzopMultipart   = 0x00000400
	lzopFilter      = 0x00000800
	lzopHeaderCRC32 = 0x00001000
	lzopReserved    = 0x000fc000
)

// lzoMaxBlock caps the block size accepted from a block header, as the
// reader allocates the declared sizes: lzop's block size, 256 KiB, which is
// what WAL-E's objects (written by the lzop command) use.
const lzoMaxBlock = 256 << 10

// lzoMaxExtra caps the optional header extra field, which is skipped.
const lzoMaxExtra = 1 << 16

type lzopReader struct {
	src    io.Reader
	flags  uint32
	opened bool
	err    error
	in     []byte // compressed block
	out    []byte // decompressed block; out[pos:] is unread
	pos    int
	hdrBuf [8]byte
}

func (r *lzopReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.src == nil {
		return 0, errors.New("lzo: read after Close")
	}
	if !r.opened {
		if err := r.readHeader(); err != nil {
			r.err = err
			return 0, err
		}
		r.opened = true
	}
	for r.pos >= len(r.out) {
		if err := r.readBlock(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.out[r.pos:])
	r.pos += n
	return n, nil
}

func (r *lzopReader) Reset(src io.Reader) error {
	*r = lzopReader{src: src, in: r.in[:0], out: r.out[:0]}
	return nil
}

func (r *lzopReader) Close() error {
	*r = lzopReader{}
	return nil
}

// hashReader feeds everything read into a checksum, for the header check.
type hashReader struct {
	r io.Reader
	h hash.Hash32
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

func (r *lzopReader) readHeader() error {
	var magic [9]byte
	if n, err := io.ReadFull(r.src, magic[:]); err != nil {
		if n == 0 && err == io.EOF {
			return errEmptyStream("lzo")
		}
		return fmt.Errorf("lzo: read header: %w", unexpected(err))
	}
	if magic != lzopMagic {
		return errors.New("lzo: not an lzop file (bad magic)")
	}
	// The header checksum covers everything from the version to the name.
	// Its kind depends on a flag read inside it, so hash both ways.
	ad := adler32.New()
	cr := crc32.NewIEEE()
	hr := io.TeeReader(r.src, io.MultiWriter(ad, cr))
	u16 := func() (uint16, error) {
		_, err := io.ReadFull(hr, r.hdrBuf[:2])
		return binary.BigEndian.Uint16(r.hdrBuf[:2]), err
	}
	u32 := func() (uint32, error) {
		_, err := io.ReadFull(hr, r.hdrBuf[:4])
		return binary.BigEndian.Uint32(r.hdrBuf[:4]), err
	}
	u8 := func() (byte, error) {
		_, err := io.ReadFull(hr, r.hdrBuf[:1])
		return r.hdrBuf[0], err
	}
	fail := func(err error) error {
		return fmt.Errorf("lzo: read header: %w", unexpected(err))
	}

	version, err := u16()
	if err != nil {
		return fail(err)
	}
	if version < 0x0900 {
		return fmt.Errorf("lzo: lzop format version %#x is not supported", version)
	}
	if _, err := u16(); err != nil { // library version
		return fail(err)
	}
	if version >= 0x0940 {
		if _, err := u16(); err != nil { // version needed to extract
			return fail(err)
		}
	}
	method, err := u8()
	if err != nil {
		return fail(err)
	}
	if method < 1 || method > 3 {
		return fmt.Errorf("lzo: compression method %d is not LZO1X (only methods 1-3 are supported)", method)
	}
	if version >= 0x0940 {
		if _, err := u8(); err != nil { // level
			return fail(err)
		}
	}
	flags, err := u32()
	if err != nil {
		return fail(err)
	}
	if flags&lzopReserved != 0 {
		return fmt.Errorf("lzo: unknown header flags %#x", flags)
	}
	if flags&lzopFilter != 0 {
		return errors.New("lzo: filtered lzop files are not supported")
	}
	if flags&lzopMultipart != 0 {
		return errors.New("lzo: multipart lzop files are not supported")
	}
	if _, err := u32(); err != nil { // mode
		return fail(err)
	}
	if _, err := u32(); err != nil { // mtime low
		return fail(err)
	}
	if version >= 0x0940 {
		if _, err := u32(); err != nil { // mtime high
			return fail(err)
		}
	}
	nameLen, err := u8()
	if err != nil {
		return fail(err)
	}
	if _, err := io.CopyN(io.Discard, hr, int64(nameLen)); err != nil {
		return fail(err)
	}
	want := ad.Sum32()
	if flags&lzopHeaderCRC32 != 0 {
		want = cr.Sum32()
	}
	if _, err := io.ReadFull(r.src, r.hdrBuf[:4]); err != nil {
		return fail(err)
	}
	if got := binary.BigEndian.Uint32(r.hdrBuf[:4]); got != want {
		return fmt.Errorf("lzo: header checksum mismatch (stored %#08x, computed %#08x)", got, want)
	}
	if flags&lzopExtraField != 0 {
		if err := r.skipExtra(flags); err != nil {
			return err
		}
	}
	r.flags = flags
	return nil
}

func (r *lzopReader) skipExtra(flags uint32) error {
	var h hash.Hash32 = adler32.New()
	if flags&lzopHeaderCRC32 != 0 {
		h = crc32.NewIEEE()
	}
	hr := &hashReader{r: r.src, h: h}
	if _, err := io.ReadFull(hr, r.hdrBuf[:4]); err != nil {
		return fmt.Errorf("lzo: read header extra field: %w", unexpected(err))
	}
	n := binary.BigEndian.Uint32(r.hdrBuf[:4])
	if n > lzoMaxExtra {
		return fmt.Errorf("lzo: header extra field of %d bytes is too large", n)
	}
	if _, err := io.CopyN(io.Discard, hr, int64(n)); err != nil {
		return fmt.Errorf("lzo: read header extra field: %w", unexpected(err))
	}
	if _, err := io.ReadFull(r.src, r.hdrBuf[:4]); err != nil {
		return fmt.Errorf("lzo: read header extra field: %w", unexpected(err))
	}
	if got, want := binary.BigEndian.Uint32(r.hdrBuf[:4]), h.Sum32(); got != want {
		return fmt.Errorf("lzo: header extra field checksum mismatch (stored %#08x, computed %#08x)", got, want)
	}
	return nil
}

// readBlock reads and decompresses the next block into r.out, or returns
// io.EOF at the end marker.
func (r *lzopReader) readBlock() error {
	u32 := func() (uint32, error) {
		_, err := io.ReadFull(r.src, r.hdrBuf[:4])
		return binary.BigEndian.Uint32(r.hdrBuf[:4]), unexpected(err)
	}
	dstLen, err := u32()
	if err != nil {
		return fmt.Errorf("lzo: read block header: %w", err)
	}
	if dstLen == 0 {
		return io.EOF
	}
	if dstLen > lzoMaxBlock {
		return fmt.Errorf("lzo: block of %d bytes exceeds the %d-byte limit (corrupt object?)", dstLen, lzoMaxBlock)
	}
	srcLen, err := u32()
	if err != nil {
		return fmt.Errorf("lzo: read block header: %w", err)
	}
	if srcLen == 0 || srcLen > dstLen {
		return fmt.Errorf("lzo: block header declares %d compressed bytes for %d bytes (corrupt object)", srcLen, dstLen)
	}
	var dAdler, dCRC, cAdler, cCRC uint32
	if r.flags&lzopAdler32D != 0 {
		if dAdler, err = u32(); err != nil {
			return fmt.Errorf("lzo: read block checksum: %w", err)
		}
	}
	if r.flags&lzopCRC32D != 0 {
		if dCRC, err = u32(); err != nil {
			return fmt.Errorf("lzo: read block checksum: %w", err)
		}
	}
	stored := srcLen == dstLen
	if !stored && r.flags&lzopAdler32C != 0 {
		if cAdler, err = u32(); err != nil {
			return fmt.Errorf("lzo: read block checksum: %w", err)
		}
	}
	if !stored && r.flags&lzopCRC32C != 0 {
		if cCRC, err = u32(); err != nil {
			return fmt.Errorf("lzo: read block checksum: %w", err)
		}
	}

	r.out = grow(r.out, int(dstLen))
	r.pos = 0
	if stored {
		if _, err := io.ReadFull(r.src, r.out); err != nil {
			return fmt.Errorf("lzo: read block: %w", unexpected(err))
		}
	} else {
		r.in = grow(r.in, int(srcLen))
		if _, err := io.ReadFull(r.src, r.in); err != nil {
			return fmt.Errorf("lzo: read block: %w", unexpected(err))
		}
		if r.flags&lzopAdler32C != 0 && adler32.Checksum(r.in) != cAdler {
			return errors.New("lzo: compressed block checksum mismatch (adler32)")
		}
		if r.flags&lzopCRC32C != 0 && crc32.ChecksumIEEE(r.in) != cCRC {
			return errors.New("lzo: compressed block checksum mismatch (crc32)")
		}
		if err := lzo1xDecompress(r.in, r.out); err != nil {
			return fmt.Errorf("lzo: %w", err)
		}
	}
	if r.flags&lzopAdler32D != 0 && adler32.Checksum(r.out) != dAdler {
		return errors.New("lzo: block checksum mismatch (adler32)")
	}
	if r.flags&lzopCRC32D != 0 && crc32.ChecksumIEEE(r.out) != dCRC {
		return errors.New("lzo: block checksum mismatch (crc32)")
	}
	return nil
}

// grow returns b resized to n bytes, reusing its array when large enough.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// unexpected turns io.EOF inside a structure into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

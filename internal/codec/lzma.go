package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// lzmaHeaderDict is the dictionary size WAL-G's writer declares in the
// 13-byte LZMA-alone header (the library default, 8 MiB). tusk declares the
// same, so its objects are byte-compatible in the header.
const lzmaHeaderDict = 8 << 20

// lzmaEncoderDict is the dictionary the encoder actually searches. The header
// value only tells a decoder how much history to keep; a stream whose matches
// reach back at most 512 KiB is valid under an 8 MiB header. The library's
// encoder needs about 10 bytes per dictionary byte (window, hash chain,
// hash table): 8 MiB costs 48 MiB per writer, 512 KiB 5.3 MiB. On WAL
// the output size is the same; on mixed tar data it grows by about 4%.
const lzmaEncoderDict = 512 << 10

// lzmaMaxDict caps the dictionary size accepted from a stream header, which
// the decoder allocates before reading any data. WAL-G always writes 8 MiB.
const lzmaMaxDict = 8 << 20

// lzmaHeaderLen is the LZMA-alone header: properties, dict size, size.
const lzmaHeaderLen = 13

type lzmaMethod struct{}

func (lzmaMethod) Name() string { return LZMA }
func (lzmaMethod) Ext() string  { return "lzma" }

func (lzmaMethod) NewWriter(w io.Writer) (io.WriteCloser, error) {
	return &lzmaWriter{dst: w}, nil
}

// lzmaWriter creates the library writer lazily, on the first Write or Close,
// because the library writes the header when the writer is created and has
// no Reset: each stream allocates a new encoder (5.3 MiB, garbage after
// Close). Reset therefore only records the destination.
type lzmaWriter struct {
	dst   io.Writer
	patch headerPatcher
	zw    *lzma.Writer
	done  bool
}

func (w *lzmaWriter) start() error {
	if w.zw != nil {
		return nil
	}
	if w.done {
		return errors.New("lzma: write after Close")
	}
	w.patch = headerPatcher{w: w.dst}
	binary.LittleEndian.PutUint32(w.patch.dict[:], lzmaHeaderDict)
	zw, err := lzma.WriterConfig{
		Properties: &lzma.Properties{LC: 3, LP: 0, PB: 2},
		DictCap:    lzmaEncoderDict,
		EOSMarker:  true,
	}.NewWriter(&w.patch)
	if err != nil {
		return fmt.Errorf("lzma: start stream: %w", err)
	}
	w.zw = zw
	return nil
}

func (w *lzmaWriter) Write(p []byte) (int, error) {
	if err := w.start(); err != nil {
		return 0, err
	}
	n, err := w.zw.Write(p)
	if err != nil {
		err = fmt.Errorf("lzma: %w", err)
	}
	return n, err
}

func (w *lzmaWriter) Close() error {
	if w.done {
		return nil
	}
	if err := w.start(); err != nil {
		return err
	}
	err := w.zw.Close()
	w.zw = nil
	w.done = true
	if err != nil {
		return fmt.Errorf("lzma: finish stream: %w", err)
	}
	return nil
}

func (w *lzmaWriter) Reset(dst io.Writer) {
	*w = lzmaWriter{dst: dst}
}

// headerPatcher replaces the dictionary-size field (bytes 1..4) of the
// header passing through it with the value in dict.
type headerPatcher struct {
	w    io.Writer
	off  int64
	dict [4]byte
}

func (h *headerPatcher) Write(p []byte) (int, error) {
	if h.off >= 5 {
		n, err := h.w.Write(p)
		h.off += int64(n)
		return n, err
	}
	// The header is short; copy the part that needs patching so the
	// caller's buffer is never modified.
	k := min(len(p), int(5-h.off))
	var head [5]byte
	copy(head[:k], p[:k])
	for i := range k {
		if pos := h.off + int64(i); pos >= 1 {
			head[i] = h.dict[pos-1]
		}
	}
	n, err := h.w.Write(head[:k])
	h.off += int64(n)
	if err != nil {
		return n, err
	}
	if n < k {
		return n, io.ErrShortWrite
	}
	m, err := h.w.Write(p[k:])
	h.off += int64(m)
	return n + m, err
}

func (lzmaMethod) NewReader(r io.Reader) (io.ReadCloser, error) {
	return &lzmaReader{src: r}, nil
}

// lzmaReader reads the header on the first Read, so that creating a reader
// never blocks, and checks the declared dictionary against lzmaMaxDict.
type lzmaReader struct {
	src io.Reader
	zr  *lzma.Reader
	err error
}

func (r *lzmaReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.zr == nil {
		if r.src == nil {
			return 0, errors.New("lzma: read after Close")
		}
		if err := r.open(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n, err := r.zr.Read(p)
	if err != nil {
		if err == io.EOF {
			r.err = io.EOF
		} else {
			err = fmt.Errorf("lzma: %w", err)
			r.err = err
		}
	}
	return n, err
}

func (r *lzmaReader) open() error {
	var hdr [lzmaHeaderLen]byte
	if n, err := io.ReadFull(r.src, hdr[:]); err != nil {
		if n == 0 && err == io.EOF {
			return errEmptyStream("lzma")
		}
		return fmt.Errorf("lzma: read header: %w", err)
	}
	// The literal coder allocates 0x300 << (lc+lp) probabilities: 6 MiB
	// at the format's limit of lc+lp = 12. WAL-G writes lc=3 lp=0; limit
	// the sum to 4 as LZMA2 does.
	if p := hdr[0]; p >= 9*5*5 || int(p%9)+int(p/9%5) > 4 {
		return fmt.Errorf("lzma: header properties byte %#02x (lc+lp above 4) is not what WAL-G writes (corrupt or foreign object)", p)
	}
	if dict := binary.LittleEndian.Uint32(hdr[1:5]); dict > lzmaMaxDict {
		return fmt.Errorf("lzma: header declares a %d-byte dictionary, more than the %d bytes WAL-G writes (corrupt or foreign object)",
			dict, lzmaMaxDict)
	}
	zr, err := lzma.ReaderConfig{DictCap: lzmaMaxDict}.NewReader(io.MultiReader(bytesReader(hdr[:]), r.src))
	if err != nil {
		return fmt.Errorf("lzma: %w", err)
	}
	r.zr = zr
	return nil
}

func (r *lzmaReader) Reset(src io.Reader) error {
	*r = lzmaReader{src: src}
	return nil
}

func (r *lzmaReader) Close() error {
	*r = lzmaReader{}
	return nil
}

// bytesReader is a minimal reader over a small byte slice.
func bytesReader(b []byte) io.Reader {
	return &sliceReader{b: b}
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

package codec

import (
	"errors"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
)

// brotliQuality is WAL-G's setting (cbrotli quality 3).
const brotliQuality = 3

// brotliLGWin is the window tusk writes with. WAL-G leaves cbrotli's default
// of 22 (4 MiB window); the stream header declares the window, so every
// decoder reads any value. At quality 3 the encoder's ring buffer and hash
// tables follow the window: 2^22 costs about 32 MiB per writer, 2^19
// 3.8 MiB, and the output on WAL grows by about 1%.
const brotliLGWin = 19

// brotliMaxLGWin is the largest window the reader accepts: the one WAL-G's
// writer declares (2^22). The decoder's ring buffer is the declared window,
// so larger values (the format allows 2^24, and 2^30 with the large-window
// extension, which stays disabled) are refused before anything is
// allocated.
const brotliMaxLGWin = 22

type brotliMethod struct{}

func (brotliMethod) Name() string { return Brotli }
func (brotliMethod) Ext() string  { return "br" }

func (brotliMethod) NewWriter(w io.Writer) (io.WriteCloser, error) {
	return brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: brotliQuality, LGWin: brotliLGWin}), nil
}

func (brotliMethod) NewReader(r io.Reader) (io.ReadCloser, error) {
	br := &brotliReader{}
	br.src = countingReader{r: r, first: checkBrotliWindow}
	br.zr = brotli.NewReaderOptions(&br.src, brotli.ReaderOptions{LargeWindow: false})
	return br, nil
}

type brotliReader struct {
	zr  *brotli.Reader
	src countingReader
}

func (r *brotliReader) Read(p []byte) (int, error) {
	n, err := r.zr.Read(p)
	if err != nil && err != io.EOF {
		if r.src.n == 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			return n, errEmptyStream("brotli")
		}
		err = fmt.Errorf("brotli: %w", err)
	}
	return n, err
}

func (r *brotliReader) Reset(src io.Reader) error {
	r.src = countingReader{r: src, first: checkBrotliWindow}
	return r.zr.Reset(&r.src)
}

func (r *brotliReader) Close() error {
	r.src = countingReader{}
	return nil
}

// checkBrotliWindow decodes the window size from the first byte of a
// brotli stream (RFC 7932 section 9.1, bits read from the least
// significant) and refuses windows above brotliMaxLGWin.
func checkBrotliWindow(b byte) error {
	var lgwin int
	switch n, m := (b>>1)&7, (b>>4)&7; {
	case b&1 == 0:
		lgwin = 16
	case n != 0:
		lgwin = 17 + int(n)
	case m == 1:
		return errors.New("brotli: stream uses the large-window extension, which WAL-G never writes")
	case m == 0:
		lgwin = 17
	default:
		lgwin = 8 + int(m)
	}
	if lgwin > brotliMaxLGWin {
		return fmt.Errorf("brotli: stream declares a 2^%d-byte window, more than the 2^%d WAL-G writes (corrupt or foreign object)",
			lgwin, brotliMaxLGWin)
	}
	return nil
}

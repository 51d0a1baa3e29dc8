package codec

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// ZstdLevel is a WALG_ZSTD_LEVEL value.
type ZstdLevel int

// The levels WALG_ZSTD_LEVEL accepts.
const (
	ZstdFastest ZstdLevel = iota + 1
	ZstdDefault
	ZstdBetter
	ZstdBest
)

// String returns the WALG_ZSTD_LEVEL spelling of l.
func (l ZstdLevel) String() string {
	switch l {
	case ZstdFastest:
		return "fastest"
	case ZstdDefault:
		return "default"
	case ZstdBetter:
		return "better"
	case ZstdBest:
		return "best"
	}
	return fmt.Sprintf("ZstdLevel(%d)", int(l))
}

// ZstdLevels lists the WALG_ZSTD_LEVEL values; the settings catalogue
// takes its list from here.
func ZstdLevels() []string {
	return []string{ZstdFastest.String(), ZstdDefault.String(), ZstdBetter.String(), ZstdBest.String()}
}

// ParseZstdLevel parses a WALG_ZSTD_LEVEL value (case-insensitive).
func ParseZstdLevel(s string) (ZstdLevel, error) {
	for _, l := range []ZstdLevel{ZstdFastest, ZstdDefault, ZstdBetter, ZstdBest} {
		if strings.EqualFold(s, l.String()) {
			return l, nil
		}
	}
	return 0, fmt.Errorf("WALG_ZSTD_LEVEL: unknown level %q (accepted: %s)", s, strings.Join(ZstdLevels(), ", "))
}

func (l ZstdLevel) encoderLevel() zstd.EncoderLevel {
	switch l {
	case ZstdFastest:
		return zstd.SpeedFastest
	case ZstdBetter:
		return zstd.SpeedBetterCompression
	case ZstdBest:
		return zstd.SpeedBestCompression
	}
	return zstd.SpeedDefault
}

// NewZstd returns the zstd method compressing at level l; an unknown level
// means ZstdDefault.
func NewZstd(l ZstdLevel) Method {
	if l < ZstdFastest || l > ZstdBest {
		l = ZstdDefault
	}
	return zstdMethod{level: l}
}

// zstdWindow is the encoder window tusk writes with. WAL-G's encoder uses the
// library default for its level (4 MiB for fastest, 8 MiB otherwise). The
// frame header declares the window, so any decoder reads any of them. With
// the low-memory option the encoder holds one window plus the level's match
// tables. On 224 MiB of pgbench WAL at the default level, 1 MiB writes 0.4%
// more than 2 MiB and 0.8% more than WAL-G's 8 MiB (fastest: 0.1% more
// than its 4 MiB), and saves 1 MiB per writer against 2 MiB, 15 against
// WAL-G's settings: what takes wal-receive with zstd under its committed
// memory target (docs/wal-receive.md).
const zstdWindow = 1 << 20

// zstdMaxWindow is the largest window the reader accepts: the largest any
// WAL-G zstd writer declares (8 MiB). The decoder's history buffer is the
// declared window, so this caps reader memory for hostile headers too.
const zstdMaxWindow = 8 << 20

type zstdMethod struct{ level ZstdLevel }

func (zstdMethod) Name() string { return Zstd }
func (zstdMethod) Ext() string  { return "zst" }

// Level reports the compression level of a zstd method.
func (m zstdMethod) Level() ZstdLevel { return m.level }

func (m zstdMethod) NewWriter(w io.Writer) (io.WriteCloser, error) {
	// Concurrency 1 makes the encoder compress on the calling goroutine
	// with a single block encoder. CRC on (the library default) as WAL-G.
	e, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(m.level.encoderLevel()),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd: configure writer: %w", err)
	}
	return e, nil
}

func (zstdMethod) NewReader(r io.Reader) (io.ReadCloser, error) {
	d, err := zstd.NewReader(nil,
		// One block decoder, decoding on the reader's goroutine.
		zstd.WithDecoderConcurrency(1),
		// Grow buffers as the stream needs them instead of up front.
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecoderMaxMemory(zstdMaxWindow),
		// Never decode a whole in-memory source into one output buffer.
		zstd.WithDecodeBuffersBelow(0),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd: configure reader: %w", err)
	}
	zr := &zstdReader{d: d}
	if err := zr.Reset(r); err != nil {
		d.Close()
		return nil, err
	}
	return zr, nil
}

// zstdReader adds Close semantics (release, not close the source) and an
// empty-input check: the library treats an empty source as an empty stream.
type zstdReader struct {
	d   *zstd.Decoder
	src countingReader
}

func (r *zstdReader) Read(p []byte) (int, error) {
	n, err := r.d.Read(p)
	if err == io.EOF && r.src.n == 0 {
		return n, errEmptyStream("zstd")
	}
	if err != nil && err != io.EOF {
		if errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return n, fmt.Errorf("zstd: frame window larger than %d bytes (the most WAL-G writes): %w", zstdMaxWindow, err)
		}
		err = fmt.Errorf("zstd: %w", err)
	}
	return n, err
}

func (r *zstdReader) Reset(src io.Reader) error {
	r.src = countingReader{r: src}
	if err := r.d.Reset(&r.src); err != nil {
		return fmt.Errorf("zstd: reset reader: %w", err)
	}
	return nil
}

func (r *zstdReader) Close() error {
	r.d.Close()
	return nil
}

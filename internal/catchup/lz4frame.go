package catchup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// frameReader decodes an LZ4 frame stream one block at a time. The
// library's lz4.Reader fills the whole buffer it is given, reading further
// blocks as needed: on a connection whose peer flushed a message and now
// waits for the answer it blocks for data that never comes (WAL-G gets
// away with it only because its messages are large or its sender closes
// the connection at the end). This reader returns what the current block
// holds and touches the connection only when that is used up. Blocks are
// decompressed with the library.
//
// Memory: two buffers of the block size the frame declares (at most
// 4 MiB each), plus 64 KiB of history for frames of linked blocks.
type frameReader struct {
	src io.Reader
	// Frame state; inFrame is false between frames.
	inFrame                   bool
	blockMax                  int
	blockSum, contentSum, dep bool
	comp, data                []byte
	out                       []byte // undelivered part of data
	dict                      []byte // last 64 KiB of output, for linked blocks
}

const (
	frameMagic          = 0x184D2204
	skippableMagicFirst = 0x184D2A50
	skippableMagicLast  = 0x184D2A5F
)

var errFrame = errors.New("lz4 frame")

func (r *frameReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// next reads the next block (and the frame header before it, or the end
// of a frame) into r.out; it returns io.EOF at the end of the stream
// between frames.
func (r *frameReader) next() error {
	var b [8]byte
	if !r.inFrame {
		if _, err := io.ReadFull(r.src, b[:4]); err != nil {
			return err // io.EOF here is the clean end
		}
		switch m := binary.LittleEndian.Uint32(b[:4]); {
		case m >= skippableMagicFirst && m <= skippableMagicLast:
			if _, err := io.ReadFull(r.src, b[:4]); err != nil {
				return unexpected(err)
			}
			_, err := io.CopyN(io.Discard, r.src, int64(binary.LittleEndian.Uint32(b[:4])))
			return unexpected(err)
		case m != frameMagic:
			return fmt.Errorf("%w: bad magic %#x", errFrame, m)
		}
		if _, err := io.ReadFull(r.src, b[:2]); err != nil {
			return unexpected(err)
		}
		flg, bd := b[0], b[1]
		if flg>>6 != 1 {
			return fmt.Errorf("%w: version %d", errFrame, flg>>6)
		}
		switch (bd >> 4) & 7 {
		case 4:
			r.blockMax = 64 << 10
		case 5:
			r.blockMax = 256 << 10
		case 6:
			r.blockMax = 1 << 20
		case 7:
			r.blockMax = 4 << 20
		default:
			return fmt.Errorf("%w: block size code %d", errFrame, (bd>>4)&7)
		}
		r.dep = flg&0x20 == 0
		r.blockSum = flg&0x10 != 0
		r.contentSum = flg&0x04 != 0
		extra := 1 // header checksum
		if flg&0x08 != 0 {
			extra += 8 // content size
		}
		if flg&0x01 != 0 {
			extra += 4 // dictionary id
		}
		if _, err := io.CopyN(io.Discard, r.src, int64(extra)); err != nil {
			return unexpected(err)
		}
		if cap(r.data) < r.blockMax {
			r.data = make([]byte, r.blockMax)
			r.comp = make([]byte, r.blockMax)
		}
		r.dict = r.dict[:0]
		r.inFrame = true
	}
	if _, err := io.ReadFull(r.src, b[:4]); err != nil {
		return unexpected(err)
	}
	size := binary.LittleEndian.Uint32(b[:4])
	if size == 0 { // end mark
		r.inFrame = false
		if r.contentSum {
			if _, err := io.ReadFull(r.src, b[:4]); err != nil {
				return unexpected(err)
			}
		}
		return nil
	}
	stored := size&0x80000000 != 0
	size &= 0x7FFFFFFF
	if int(size) > r.blockMax {
		return fmt.Errorf("%w: block of %d bytes in a frame of %d-byte blocks", errFrame, size, r.blockMax)
	}
	comp := r.comp[:size]
	if _, err := io.ReadFull(r.src, comp); err != nil {
		return unexpected(err)
	}
	if r.blockSum {
		if _, err := io.ReadFull(r.src, b[:4]); err != nil {
			return unexpected(err)
		}
	}
	var out []byte
	if stored {
		out = r.data[:copy(r.data[:r.blockMax], comp)]
	} else {
		var n int
		var err error
		if r.dep && len(r.dict) > 0 {
			n, err = lz4.UncompressBlockWithDict(comp, r.data[:r.blockMax], r.dict)
		} else {
			n, err = lz4.UncompressBlock(comp, r.data[:r.blockMax])
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errFrame, err)
		}
		out = r.data[:n]
	}
	if r.dep {
		r.keepHistory(out)
	}
	r.out = out
	return nil
}

// keepHistory keeps the last 64 KiB of output, the window a linked block
// may refer to.
func (r *frameReader) keepHistory(out []byte) {
	const window = 64 << 10
	if len(out) >= window {
		r.dict = append(r.dict[:0], out[len(out)-window:]...)
		return
	}
	if len(r.dict)+len(out) > window {
		r.dict = append(r.dict[:0], r.dict[len(r.dict)+len(out)-window:]...)
	}
	r.dict = append(r.dict, out...)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

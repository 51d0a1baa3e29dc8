package codec

import (
	"errors"
	"fmt"
)

// This is a decompressor for LZO1X, written here because no pure-Go LZO
// library is available to the project and WAL-G still reads lzop objects left
// by WAL-E. It follows the LZO1X format as documented by its author and in
// the Linux kernel (Documentation/staging/lzo.rst), checking every input,
// output and back-reference bound like lzo1x_decompress_safe. All LZO1X
// compression levels (1, 1_15, 999) share this format.

var (
	errLZOInputOverrun  = errors.New("lzo1x: compressed data ends early")
	errLZOOutputOverrun = errors.New("lzo1x: decompressed data exceeds the declared size")
	errLZOLookBehind    = errors.New("lzo1x: match refers to data before the start of the block")
)

// lzo1xDecompress decompresses one LZO1X block from src into dst, which must
// have exactly the block's decompressed length. The block must end with the
// end-of-stream marker, consume all of src and fill all of dst.
func lzo1xDecompress(src, dst []byte) error {
	ip, op := 0, 0
	// state says what the previous instruction left: 0 after a match with
	// no trailing literals (and at the start), 1..3 after that many
	// trailing literals, 4 after a literal run of 4 or more bytes. It
	// decides how an instruction byte below 16 is read.
	state := 0

	// literals copies n bytes from src to dst.
	literals := func(n int) error {
		if n > len(src)-ip {
			return errLZOInputOverrun
		}
		if n > len(dst)-op {
			return errLZOOutputOverrun
		}
		copy(dst[op:op+n], src[ip:ip+n])
		ip += n
		op += n
		return nil
	}
	// match copies n bytes from dist bytes back in dst; the regions may
	// overlap, which repeats the pattern as byte-by-byte copying would.
	match := func(dist, n int) error {
		if dist > op {
			return errLZOLookBehind
		}
		if n > len(dst)-op {
			return errLZOOutputOverrun
		}
		m := op - dist
		if dist >= n {
			copy(dst[op:op+n], dst[m:m+n])
		} else {
			for i := range n {
				dst[op+i] = dst[m+i]
			}
		}
		op += n
		return nil
	}
	// longLength reads the extension of a length field that was zero in
	// the instruction: a run of zero bytes (255 each) and a final non-zero
	// byte, added to base.
	longLength := func(base int) (int, error) {
		n := base
		for {
			if ip >= len(src) {
				return 0, errLZOInputOverrun
			}
			b := src[ip]
			ip++
			if b != 0 {
				return n + int(b), nil
			}
			n += 255
			if n > len(dst) {
				return 0, errLZOOutputOverrun
			}
		}
	}
	byteAt := func() (int, error) {
		if ip >= len(src) {
			return 0, errLZOInputOverrun
		}
		ip++
		return int(src[ip-1]), nil
	}

	if len(src) == 0 {
		return errLZOInputOverrun
	}
	// A first byte above 17 is a literal run of (byte - 17) bytes.
	if src[0] > 17 {
		t := int(src[0]) - 17
		ip = 1
		if err := literals(t); err != nil {
			return err
		}
		state = min(t, 4)
	}

	for {
		t, err := byteAt()
		if err != nil {
			return err
		}
		var dist, length, trailing int
		switch {
		case t < 16 && state == 0:
			// Literal run of t+3 bytes (t = 0: long run).
			if t == 0 {
				if t, err = longLength(15); err != nil {
					return err
				}
			}
			if err := literals(t + 3); err != nil {
				return err
			}
			state = 4
			continue
		case t < 16 && state < 4:
			// 2-byte match within 1 KiB, after 1..3 trailing literals.
			h, err := byteAt()
			if err != nil {
				return err
			}
			dist, length, trailing = 1+(t>>2)+(h<<2), 2, t&3
		case t < 16:
			// 3-byte match 2..3 KiB back, after a literal run.
			h, err := byteAt()
			if err != nil {
				return err
			}
			dist, length, trailing = 2049+(t>>2)+(h<<2), 3, t&3
		case t >= 64:
			// 3..8-byte match within 2 KiB.
			h, err := byteAt()
			if err != nil {
				return err
			}
			dist, length, trailing = 1+((t>>2)&7)+(h<<3), (t>>5)+1, t&3
		case t >= 32:
			// Match within 16 KiB.
			length = t & 31
			if length == 0 {
				if length, err = longLength(31); err != nil {
					return err
				}
			}
			length += 2
			if len(src)-ip < 2 {
				return errLZOInputOverrun
			}
			v := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			dist, trailing = 1+(v>>2), v&3
		default:
			// 16..31: match 16..48 KiB back, or the end marker.
			length = t & 7
			if length == 0 {
				if length, err = longLength(7); err != nil {
					return err
				}
			}
			length += 2
			if len(src)-ip < 2 {
				return errLZOInputOverrun
			}
			v := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			dist = (t&8)<<11 + v>>2
			if dist == 0 {
				if op != len(dst) {
					return fmt.Errorf("lzo1x: block decompresses to %d bytes, header says %d", op, len(dst))
				}
				if ip != len(src) {
					return fmt.Errorf("lzo1x: %d bytes after the end marker", len(src)-ip)
				}
				return nil
			}
			dist += 0x4000
			trailing = v & 3
		}
		if err := match(dist, length); err != nil {
			return err
		}
		if err := literals(trailing); err != nil {
			return err
		}
		state = trailing
	}
}

// Package wire is WAL-G's daemon protocol byte for byte: request frames,
// one-byte replies, and a client's one request. The client side uses
// system calls, strconv and errors only (no net, fmt or reflect), so the
// small daemon client binary built on it starts fast.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Message types (requests) and one-byte responses of WAL-G's protocol.
const (
	TypeCheck    byte = 'C'
	TypeWalPush  byte = 'F'
	TypeWalFetch byte = 'f'

	ReplyOK       byte = 'O'
	ReplyError    byte = 'E'
	ReplyNotFound byte = 'N'
)

const (
	HeaderSize = 3 // type byte + uint16 BE length of the whole message
	MaxMessage = 0xFFFF
)

// ErrCorrupt is wrapped by every decoding error of a malformed frame.
var ErrCorrupt = errors.New("malformed daemon message")

// Message is one request frame.
type Message struct {
	Type byte
	Body []byte
}

// ReadMessage reads one frame from r into buf (which must hold MaxMessage
// bytes, so a connection never allocates per message) and returns a
// Message whose Body aliases buf.
func ReadMessage(r io.Reader, buf []byte) (Message, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Message{}, fmt.Errorf("%w: truncated header", ErrCorrupt)
		}
		return Message{}, err
	}
	return ReadBody(r, hdr, buf)
}

// ReadBody reads the body announced by hdr into buf.
func ReadBody(r io.Reader, hdr [HeaderSize]byte, buf []byte) (Message, error) {
	if len(buf) < MaxMessage {
		return Message{}, fmt.Errorf("daemon: read buffer of %d bytes is too small", len(buf))
	}
	length := int(binary.BigEndian.Uint16(hdr[1:3]))
	if length < HeaderSize {
		return Message{}, fmt.Errorf("%w: message too short (length %d)", ErrCorrupt, length)
	}
	body := buf[:length-HeaderSize]
	if _, err := io.ReadFull(r, body); err != nil {
		return Message{}, fmt.Errorf("%w: body truncated after %d header bytes: %v", ErrCorrupt, HeaderSize, err)
	}
	return Message{Type: hdr[0], Body: body}, nil
}

// EncodeMessage frames a request with WAL-G's body encoding: no arguments
// → empty body, one → its raw bytes, more → the args encoding.
func EncodeMessage(typ byte, args ...string) ([]byte, error) {
	if len(args) > 255 {
		return nil, errors.New("daemon: " + strconv.Itoa(len(args)) + " arguments exceed 255")
	}
	for _, a := range args {
		if len(args) > 1 && len(a) > 0xFFFF {
			return nil, errors.New("daemon: argument of " + strconv.Itoa(len(a)) + " bytes exceeds 65535")
		}
	}
	n := FrameSize(args)
	if n > MaxMessage {
		return nil, errors.New("daemon: message of " + strconv.Itoa(n) + " bytes exceeds " + strconv.Itoa(MaxMessage))
	}
	msg, _ := AppendFrame(make([]byte, 0, n), typ, args)
	return msg, nil
}

// EncodeArgs is WAL-G's multi-argument body: u8 count, then per argument a
// u16 BE length and the bytes.
func EncodeArgs(args []string) ([]byte, error) {
	if len(args) > 255 {
		return nil, errors.New("daemon: " + strconv.Itoa(len(args)) + " arguments exceed 255")
	}
	n := 1
	for _, a := range args {
		if len(a) > 0xFFFF {
			return nil, errors.New("daemon: argument of " + strconv.Itoa(len(a)) + " bytes exceeds 65535")
		}
		n += 2 + len(a)
	}
	return appendArgs(make([]byte, 0, n), args), nil
}

// FrameSize is the length of args' frame, without checking WAL-G's limits.
//
//go:nosplit
func FrameSize(args []string) int {
	n := HeaderSize
	switch len(args) {
	case 0:
	case 1:
		n += len(args[0])
	default:
		n++
		for _, a := range args {
			n += 2 + len(a)
		}
	}
	return n
}

// AppendFrame appends typ's frame of args to dst and reports whether it
// keeps WAL-G's limits (255 arguments; 65535 bytes for each argument and
// for the frame); if not, dst comes back unchanged. With room in dst it
// neither allocates nor calls into the runtime, which lets the daemon
// client's pre-start path use it before the runtime is set up, hence
// nosplit.
//
//go:nosplit
func AppendFrame(dst []byte, typ byte, args []string) ([]byte, bool) {
	n := FrameSize(args)
	if len(args) > 255 || n > MaxMessage {
		return dst, false
	}
	if len(args) > 1 {
		for _, a := range args {
			if len(a) > 0xFFFF {
				return dst, false
			}
		}
	}
	dst = append(dst, typ, byte(n>>8), byte(n))
	switch len(args) {
	case 0:
	case 1:
		dst = append(dst, args[0]...)
	default:
		dst = appendArgs(dst, args)
	}
	return dst, true
}

// appendArgs appends the multi-argument body (nosplit: see AppendFrame).
//
//go:nosplit
func appendArgs(dst []byte, args []string) []byte {
	dst = append(dst, byte(len(args)))
	for _, a := range args {
		dst = append(dst, byte(len(a)>>8), byte(len(a)))
		dst = append(dst, a...)
	}
	return dst
}

// DecodeArgs parses the multi-argument body; truncation or trailing bytes
// are errors, as in WAL-G.
func DecodeArgs(body []byte) ([]string, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty argument list", ErrCorrupt)
	}
	n := int(body[0])
	rest := body[1:]
	args := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: corrupted message body", ErrCorrupt)
		}
		l := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if len(rest) < l {
			return nil, fmt.Errorf("%w: corrupted message body", ErrCorrupt)
		}
		args = append(args, string(rest[:l]))
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: corrupted message body (%d trailing bytes)", ErrCorrupt, len(rest))
	}
	return args, nil
}

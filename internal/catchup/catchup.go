// Package catchup is the wire protocol of catchup-send and catchup-receive,
// WAL-G v3.0.9's catch-up of a standby straight from its primary over one
// TCP connection, without storage (WAL-G's
// internal/databases/postgres/catchup_send_recieve_handler.go), so that
// tusk and WAL-G talk to each other in either role.
//
// Each direction of the connection is one LZ4 frame that is never closed,
// carrying a stream of encoding/gob values. (WAL-G asks its compressor
// table for "br" and falls back to lz4; the table's key is "brotli", so
// every WAL-G build sends lz4.) Each side flushes the frame when it waits
// for the other. The exchange:
//
//	receiver → sender  Control (system identifier, timeline, LSN), then
//	                   FileList (its files and directories with mtimes)
//	sender → receiver  Command…: Full or Incremental (then FileSize bytes
//	                   of content as gob []byte chunks), Delete,
//	                   BinContents (backup_label, tablespace_map,
//	                   global/pg_control, content inline), Done last
//
// Gob matches struct fields by name, so the types here decode WAL-G's
// PgControlData, BackupFileList and CatchupCommandDto and WAL-G decodes
// these.
//
// Memory: the LZ4 writer holds two 256 KiB blocks, the reader two blocks of
// the size the peer's frame declares (WAL-G: 4 MiB; at most 4 MiB); every
// gob message read is at most MaxMessage bytes (checked on the length
// prefix, before gob reads the body), file content travels in chunks of
// ChunkSize bytes through one reused buffer. The file list is one gob value
// and is held whole by both sides: about 100 bytes per file of the
// receiver's data directory.
package catchup

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
)

// ChunkSize is the size of the []byte values file content is sent in, as
// WAL-G sends it (the receiver accepts any size up to what remains).
const ChunkSize = 8192

// MaxMessage bounds one gob message read from the peer. The largest
// legitimate ones are the file list and a list of files to delete, about
// 100 bytes per file: 64 MiB holds over half a million files.
const MaxMessage = 64 << 20

// Control is WAL-G's PgControlData, the receiver's first message. tusk's
// receiver sends its REDO point as Checkpoint (WAL-G sends the checkpoint
// record's location, which is later): pages changed between the two are
// then sent too, which a standby that stopped without a restartpoint of
// that checkpoint needs.
type Control struct {
	SystemIdentifier uint64
	CurrentTimeline  uint32
	Checkpoint       uint64
}

// FileDescription is WAL-G's BackupFileDescription; only MTime is used.
type FileDescription struct {
	IsIncremented bool
	IsSkipped     bool
	MTime         time.Time
	CorruptBlocks *CorruptBlocks
	UpdatesCount  uint64
}

// CorruptBlocks is WAL-G's CorruptBlocksInfo (never set in a catch-up).
type CorruptBlocks struct {
	CorruptBlocksCount int
	SomeCorruptBlocks  []uint32
}

// FileList is WAL-G's BackupFileList: the receiver's files and directories
// by slash path relative to its data directory.
type FileList map[string]FileDescription

// Command is WAL-G's CatchupCommandDto. The receiver reads the flags in
// WAL-G's order: IsDone, IsBinContents, IsFull, IsIncremental, IsDelete.
type Command struct {
	IsDone         bool
	IsIncremental  bool
	IsFull         bool
	IsDelete       bool
	IsBinContents  bool
	FileSize       uint64
	FileName       string
	BinaryContents []byte
	FilesToDelete  []string
}

// Conn is one side of a catch-up connection.
type Conn struct {
	zw    flushWriteCloser
	enc   *gob.Encoder
	dec   *gob.Decoder
	chunk []byte // decoded content chunk, reused
	out   []byte // content chunk being filled, ChunkSize
}

type flushWriteCloser interface {
	io.WriteCloser
	Flush() error
}

// NewConn sets up the compressed gob streams over c.
func NewConn(c io.ReadWriter) (*Conn, error) {
	lz4, err := codec.ByName(codec.LZ4)
	if err != nil {
		return nil, err
	}
	w, err := lz4.NewWriter(c)
	if err != nil {
		return nil, err
	}
	zw, ok := w.(flushWriteCloser)
	if !ok {
		return nil, errors.New("catchup: the lz4 writer cannot flush")
	}
	return &Conn{
		zw:  zw,
		enc: gob.NewEncoder(zw),
		dec: gob.NewDecoder(&messageLimiter{r: &frameReader{src: c}, max: MaxMessage}),
		out: make([]byte, 0, ChunkSize),
	}, nil
}

// End ends this side's LZ4 frame once nothing more is to be sent (the
// sender, after Done). WAL-G never ends its frames. The receiver must not
// end its own after the hello: WAL-G's sender never reads the end mark,
// and unread bytes make its kernel reset the connection when it exits.
func (c *Conn) End() error {
	if err := c.zw.Close(); err != nil {
		return fmt.Errorf("catchup: send: %w", err)
	}
	return nil
}

// Flush sends what the compressor holds.
func (c *Conn) Flush() error {
	if err := c.zw.Flush(); err != nil {
		return fmt.Errorf("catchup: send: %w", err)
	}
	return nil
}

// WriteHello sends the receiver's Control and FileList and flushes.
func (c *Conn) WriteHello(ctl Control, list FileList) error {
	if err := c.enc.Encode(ctl); err != nil {
		return fmt.Errorf("catchup: send control data: %w", err)
	}
	if err := c.enc.Encode(list); err != nil {
		return fmt.Errorf("catchup: send file list: %w", err)
	}
	return c.Flush()
}

// ReadHello reads the receiver's Control and FileList.
func (c *Conn) ReadHello() (Control, FileList, error) {
	var ctl Control
	if err := c.dec.Decode(&ctl); err != nil {
		return Control{}, nil, fmt.Errorf("catchup: read the receiver's control data: %w", err)
	}
	var list FileList
	if err := c.dec.Decode(&list); err != nil {
		return Control{}, nil, fmt.Errorf("catchup: read the receiver's file list: %w", err)
	}
	for name := range list {
		if err := CheckName(name); err != nil && name != "" {
			return Control{}, nil, fmt.Errorf("catchup: receiver's file list: %w", err)
		}
	}
	return ctl, list, nil
}

// WriteCommand sends one command (file content follows with WriteContent).
func (c *Conn) WriteCommand(cmd *Command) error {
	if err := c.enc.Encode(cmd); err != nil {
		return fmt.Errorf("catchup: send command for %q: %w", cmd.FileName, err)
	}
	return nil
}

// ReadCommand reads the next command into cmd, checking the names it
// carries with CheckName. After a Full or Incremental command the caller
// must read its content (Content) before the next command.
func (c *Conn) ReadCommand(cmd *Command) error {
	*cmd = Command{}
	if err := c.dec.Decode(cmd); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the stream has no end before Done
		}
		return fmt.Errorf("catchup: read command: %w", err)
	}
	switch {
	case cmd.IsDone:
	case cmd.IsBinContents, cmd.IsFull, cmd.IsIncremental:
		if err := CheckName(cmd.FileName); err != nil {
			return fmt.Errorf("catchup: command: %w", err)
		}
	case cmd.IsDelete:
		for _, n := range cmd.FilesToDelete {
			if err := CheckName(n); err != nil {
				return fmt.Errorf("catchup: delete command: %w", err)
			}
		}
	default:
		return errors.New("catchup: command of no known kind")
	}
	return nil
}

// CheckName accepts a file name from the peer only in the form WAL-G
// sends: a clean, relative slash path with no ".." and no NUL.
func CheckName(name string) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 || strings.HasPrefix(name, "/") ||
		path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("refusing file name %q: not a clean relative path inside the data directory", name)
	}
	return nil
}

// Content returns a reader of the size bytes of content that follow a Full
// or Incremental command.
func (c *Conn) Content(size uint64) *ContentReader {
	return &ContentReader{c: c, left: size}
}

// ContentReader reads one file's content chunks.
type ContentReader struct {
	c    *Conn
	left uint64 // bytes not yet returned
	buf  []byte // rest of the current chunk
}

func (r *ContentReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if err := r.next(); err != nil {
		return 0, err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.left -= uint64(n)
	return n, nil
}

// next makes sure r.buf holds content, decoding the next chunk if needed.
func (r *ContentReader) next() error {
	for len(r.buf) == 0 {
		if err := r.c.dec.Decode(&r.c.chunk); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("catchup: read file content: %w", err)
		}
		if uint64(len(r.c.chunk)) > r.left {
			return fmt.Errorf("catchup: a content chunk of %d bytes overruns the %d bytes left of the file", len(r.c.chunk), r.left)
		}
		r.buf = r.c.chunk
	}
	return nil
}

// Drain reads what is left of the content, so the next command can be
// read after a consumer stopped early.
func (r *ContentReader) Drain() error {
	for r.left > 0 {
		if err := r.next(); err != nil {
			return err
		}
		r.left -= uint64(len(r.buf))
		r.buf = nil
	}
	return nil
}

// WriteContent sends exactly size bytes read from src in ChunkSize
// chunks: zeros when src ends early (the file shrank since it was listed,
// as WAL-G pads it), and no more when it holds more. buf is the caller's
// reusable copy buffer.
func (c *Conn) WriteContent(src io.Reader, size int64, buf []byte) error {
	w := c.ContentWriter(size)
	// The wrappers hide ReadFrom/WriteTo so the copy uses buf.
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{io.LimitReader(src, size)}, buf); err != nil {
		return err
	}
	return w.Close()
}

// ContentWriter returns a writer for a file's content of size bytes;
// Close pads it with zeros to size and sends the last chunk.
func (c *Conn) ContentWriter(size int64) *ContentWriter {
	return &ContentWriter{c: c, left: size}
}

// ContentWriter sends one file's content in ChunkSize chunks.
type ContentWriter struct {
	c    *Conn
	left int64 // bytes of the file not yet buffered
}

func (w *ContentWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, fmt.Errorf("catchup: %d bytes of content beyond the announced size", int64(len(p))-w.left)
	}
	n := 0
	for n < len(p) {
		k := copy(w.c.out[len(w.c.out):ChunkSize], p[n:])
		w.c.out = w.c.out[:len(w.c.out)+k]
		n += k
		w.left -= int64(k)
		if len(w.c.out) == ChunkSize {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (w *ContentWriter) flush() error {
	if len(w.c.out) == 0 {
		return nil
	}
	if err := w.c.enc.Encode(w.c.out); err != nil {
		return fmt.Errorf("catchup: send file content: %w", err)
	}
	w.c.out = w.c.out[:0]
	return nil
}

// Close pads the content to its announced size and sends what is left.
func (w *ContentWriter) Close() error {
	var zeros [512]byte
	for w.left > 0 {
		if _, err := w.Write(zeros[:min(int64(len(zeros)), w.left)]); err != nil {
			return err
		}
	}
	return w.flush()
}

// messageLimiter passes a gob stream through, refusing any message whose
// length prefix exceeds max before gob allocates for it. A gob message is
// an unsigned count then that many bytes; a count below 128 is one byte,
// a larger one is a byte holding minus its length (1 to 8) and then the
// big-endian count.
type messageLimiter struct {
	r     io.Reader
	max   uint64
	body  uint64 // bytes left of the current message
	inLen bool   // inside a multi-byte count
	need  int    // count bytes still to come
	count uint64
}

func (l *messageLimiter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i := 0; i < n; {
		if l.body > 0 {
			k := min(l.body, uint64(n-i))
			l.body -= k
			i += int(k)
			continue
		}
		b := p[i]
		i++
		switch {
		case l.inLen:
			l.count = l.count<<8 | uint64(b)
			l.need--
		case b < 0x80:
			l.count, l.need = uint64(b), 0
		default:
			l.need = 256 - int(b)
			if l.need > 8 {
				return 0, fmt.Errorf("catchup: malformed message length byte %#x", b)
			}
			l.count, l.inLen = 0, true
			continue
		}
		if l.need > 0 {
			continue
		}
		l.inLen = false
		if l.count > l.max {
			return 0, fmt.Errorf("catchup: a message of %d bytes, more than the %d allowed", l.count, l.max)
		}
		l.body = l.count
	}
	return n, err
}

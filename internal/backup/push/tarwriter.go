package push

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
)

// countingWriter counts what passes through.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// errPutReturned ends a tar stream whose upload returned before the stream
// was complete (a backend must read to EOF before it succeeds).
var errPutReturned = errors.New("storage upload returned before the end of the tar stream")

// tarObject is one tar being written straight into storage: tar → compress →
// encrypt → an io.Pipe read by storage.Put with size -1.
// Nothing of it is buffered beyond the codec's state and the backend's part
// buffers. Exactly one of close or abort must be called.
type tarObject struct {
	key         string
	tw          *tar.Writer
	enc         *pipe.Encoder
	pw          *io.PipeWriter
	out         countingWriter // bytes uploaded (after compression and encryption)
	contentSize int64          // sum of member sizes: WAL-G's tar size
	done        chan error
}

// openTar starts the upload of key. The caller's ctx cancels the upload.
func openTar(ctx context.Context, store storage.Storage, key string, enc *pipe.Encoder) (*tarObject, error) {
	pr, pw := io.Pipe()
	t := &tarObject{key: key, enc: enc, pw: pw, done: make(chan error, 1)}
	go func() {
		err := store.Put(ctx, key, pr, -1)
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errPutReturned)
		}
		t.done <- err
	}()
	t.out.w = pw
	raw, err := enc.Begin(&t.out)
	if err != nil {
		t.abort(err)
		return nil, err
	}
	t.tw = tar.NewWriter(raw)
	return t, nil
}

// close finishes the tar, the codec stream and the upload, and returns once
// the object is stored.
func (t *tarObject) close() error {
	err := t.tw.Close()
	if err == nil {
		err = t.enc.Finish()
	}
	if err != nil {
		t.abort(err)
		return fmt.Errorf("finish tar %s: %w", t.key, err)
	}
	t.pw.Close()
	if err := <-t.done; err != nil {
		return fmt.Errorf("upload %s: %w", t.key, err)
	}
	return nil
}

// abort cancels the upload; the backend discards what it received.
func (t *tarObject) abort(cause error) {
	t.pw.CloseWithError(fmt.Errorf("tar %s abandoned: %w", t.key, cause))
	<-t.done
}

// copyMember writes exactly size bytes from r into tw, whose header for
// this member announced size: it stops at size when the file grew since it
// was measured, and pads with zeros when it shrank (PostgreSQL truncated
// it; WAL replay from the backup's start restores the right content either
// way). buf is the caller's reused read buffer; each chunk read is passed to
// inspect (may be nil) with its offset before it is written, zero padding
// included. It returns how many bytes came from r.
func copyMember(tw io.Writer, r io.Reader, size int64, buf []byte, inspect func(off int64, p []byte)) (fromFile int64, err error) {
	var off int64
	padding := false
	for off < size {
		n := int(min(int64(len(buf)), size-off))
		chunk := buf[:n]
		if !padding {
			k, rerr := io.ReadFull(r, chunk)
			fromFile += int64(k)
			switch {
			case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
				clear(chunk[k:])
				padding = true
			case rerr != nil:
				return fromFile, rerr
			}
		} else {
			clear(chunk)
		}
		if inspect != nil {
			inspect(off, chunk)
		}
		if _, err := tw.Write(chunk); err != nil {
			return fromFile, err
		}
		off += int64(n)
	}
	return fromFile, nil
}

// partCounter numbers data tars from 1, shared by the builders.
type partCounter struct{ n atomic.Int64 }

func (p *partCounter) next() int { return int(p.n.Add(1)) }

package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tusk-pg/tusk/internal/bufpool"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/storage"
)

// How a WAL file's encoded bytes reach storage. Object stores want the
// length before the body; learning it costs either memory or CPU.
const (
	// BufferStream: the backend takes a stream of unknown length (local
	// files): one pass, no buffer.
	BufferStream = "stream"
	// BufferRecompress: compress once only to count the output, then again
	// while sending it with that length. Memory does not depend on the
	// segment size; costs a second compression pass (cheap with lz4).
	BufferRecompress = "recompress"
	// BufferMemory: compress once into pooled memory chunks, then send.
	// One pass; memory per upload = the compressed size.
	BufferMemory = "memory"
)

// ChooseBuffering resolves the requested mode (TUSK_WAL_UPLOAD_BUFFER:
// "recompress" or "memory") for a storage backend and crypter, and says why
// when it had to choose another. It is the one place the mode is decided:
// the running archiver and the memory plan (computed offline, from the
// backend's configured Traits) both call it.
func ChooseBuffering(requested string, st storage.Traits, crypter crypt.Crypter) (mode, why string) {
	if st.StreamsUnknownSize {
		return BufferStream, ""
	}
	if requested != BufferRecompress {
		return BufferMemory, ""
	}
	// Two passes must agree on the length: true of every codec and of
	// libsodium (fixed framing), not of OpenPGP (its session-key packet
	// varies in length). AWS KMS's length is fixed too, but every pass
	// would make its own KMS request and data key.
	if crypter != nil && crypter.Name() == "aws-kms" {
		return BufferMemory, "recompress would make a KMS request per pass; aws-kms makes one per object"
	}
	if crypter != nil && crypter.Name() != "libsodium" {
		return BufferMemory, "recompress needs an encryption of fixed length; " + crypter.Name() + " is not"
	}
	// A signed payload is hashed in one pass and sent in another, so the
	// bytes must be identical: encryption uses a fresh nonce each time.
	if st.SignsPayload && crypter != nil {
		return BufferMemory, "recompress with encryption needs an HTTPS endpoint (unsigned payload)"
	}
	return BufferRecompress, ""
}

// SpoolBytes is the most one upload holds with BufferMemory: compressed
// output of incompressible input is a little larger than the input; the
// limit only guards against a file far larger than a segment being spooled
// whole.
func SpoolBytes(segmentSize int64) int64 { return segmentSize + segmentSize/8 + 1<<20 }

// regenReader is an io.ReadSeeker over the encoded form of a file that
// keeps no copy of it: reading runs the encoder into a pipe, and seeking
// back to the start (an HTTP retry) encodes the file again.
type regenReader struct {
	ctx     context.Context
	enc     *pipe.Encoder
	path    string
	rawSize int64 // the file's length when the upload started
	size    int64 // encoded length, from the counting pass

	off  int64
	pr   *io.PipeReader
	done chan error
}

var errRestart = errors.New("encoding restarted")

func (r *regenReader) start() error {
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	r.pr, r.done = pr, make(chan error, 1)
	go func() {
		_, err := r.enc.Encode(pw, &exactReader{r: f, want: r.rawSize, path: r.path})
		f.Close()
		pw.CloseWithError(err)
		r.done <- err
	}()
	return nil
}

// stop ends the running encoder and waits for it, so the encoder can be
// reused.
func (r *regenReader) stop() {
	if r.pr == nil {
		return
	}
	r.pr.CloseWithError(errRestart)
	<-r.done
	r.pr = nil
}

func (r *regenReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.pr == nil {
		if err := r.start(); err != nil {
			return 0, err
		}
	}
	if rest := r.size - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := r.pr.Read(p)
	r.off += int64(n)
	if err == io.EOF && r.off < r.size {
		return n, fmt.Errorf("%s changed while it was uploaded: encoded length %d, expected %d", r.path, r.off, r.size)
	}
	if err == nil && r.off == r.size {
		// The encoder must end exactly here; anything more means the file
		// grew between the passes.
		var one [1]byte
		if m, _ := r.pr.Read(one[:]); m > 0 {
			return n, fmt.Errorf("%s changed while it was uploaded: longer than the %d bytes counted", r.path, r.size)
		}
		r.stop()
	}
	return n, err
}

func (r *regenReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.size + offset
	}
	if abs < 0 || abs > r.size {
		return r.off, fmt.Errorf("seek to %d outside 0..%d", abs, r.size)
	}
	if abs == r.off {
		return abs, nil
	}
	r.stop()
	r.off = 0
	if abs == r.size {
		r.off = abs // at the end: nothing to encode until a seek back
		return abs, nil
	}
	if abs > 0 {
		// Not used by HTTP clients; correct, if slow: re-encode and skip.
		if _, err := io.CopyN(io.Discard, r, abs); err != nil {
			return r.off, err
		}
	}
	return abs, nil
}

// Close stops an encoder still running.
func (r *regenReader) Close() error {
	r.stop()
	return nil
}

// exactReader yields a WAL file that must keep the length it had when the
// upload started: a file that grows or shrinks meanwhile fails the upload
// (and so stores nothing) instead of being archived half-written.
type exactReader struct {
	r    io.Reader
	n    int64
	want int64
	path string
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	switch {
	case e.n > e.want:
		return n, fmt.Errorf("%s changed while it was uploaded: longer than %d bytes", e.path, e.want)
	case err == io.EOF && e.n < e.want:
		return n, fmt.Errorf("%s changed while it was uploaded: %d bytes, expected %d", e.path, e.n, e.want)
	}
	return n, err
}

// checkSize applies wal-push's size rules: a segment is exactly the segment
// size (PostgreSQL never archives a short one, so a short file is damage);
// anything else (partial segment, history, backup history) at most that.
func (a *Archiver) checkSize(path string, size int64) error {
	if IsSegmentName(filepath.Base(path)) {
		if size != a.SegmentSize {
			return fmt.Errorf("%s: %d bytes is not a WAL segment; segments are exactly %d bytes (WALG_PG_WAL_SIZE)", path, size, a.SegmentSize)
		}
		return nil
	}
	if size > a.SegmentSize {
		return fmt.Errorf("%s: %d bytes is larger than the WAL segment size %d (WALG_PG_WAL_SIZE)", path, size, a.SegmentSize)
	}
	return nil
}

// countingWriter discards bytes and counts them.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// store publishes an object: with create, only if key is free (an error
// wrapping storage.ErrExists otherwise), atomically where the backend can
// (storage.Creator).
func (a *Archiver) store(ctx context.Context, key string, r io.Reader, size int64, create bool) error {
	if c, ok := a.Store.(storage.Creator); ok && create {
		return c.Create(ctx, key, r, size)
	}
	return a.Store.Put(ctx, key, r, size)
}

// uploadFile encodes the WAL file at path and stores it under key with the
// archiver's buffering mode (create: only if key is free, see store). It
// returns raw and stored byte counts. When it returns, the encoder is idle.
func (a *Archiver) uploadFile(ctx context.Context, enc *pipe.Encoder, path, key string, create bool) (in, out int64, err error) {
	// A FIFO or device would block the open or the encoder for ever.
	if st, err := os.Stat(path); err != nil {
		return 0, 0, fmt.Errorf("open WAL file: %w", err)
	} else if !st.Mode().IsRegular() {
		return 0, 0, fmt.Errorf("%s is not a regular file (mode %v)", path, st.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("open WAL file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("open WAL file: %w", err)
	}
	if err := a.checkSize(path, st.Size()); err != nil {
		return 0, 0, err
	}
	src := &exactReader{r: f, want: st.Size(), path: path}
	switch a.Buffering {
	case BufferStream:
		pr, pw := io.Pipe()
		counted := &countingWriter{}
		encoded := make(chan error, 1)
		go func() {
			n, err := enc.Encode(io.MultiWriter(pw, counted), src)
			in = n
			pw.CloseWithError(err)
			encoded <- err
		}()
		err = a.store(ctx, key, pr, -1, create)
		// Unblock the encoder if the store gave up, and wait for it: it
		// must not outlive this call (it writes in, counted and its own
		// state, and goes back to the pool after).
		pr.CloseWithError(errRestart)
		encErr := <-encoded
		if err != nil {
			return in, 0, fmt.Errorf("upload %s to %s/%s: %w", path, a.Store, key, err)
		}
		if encErr != nil {
			// Cannot happen when the store read to EOF; kept as a guard.
			return in, 0, fmt.Errorf("compress %s: %w", path, encErr)
		}
		return in, counted.n, nil
	case BufferRecompress:
		counted := &countingWriter{}
		in, err = enc.Encode(counted, src)
		if err != nil {
			return in, 0, fmt.Errorf("compress %s: %w", path, err)
		}
		body := &regenReader{ctx: ctx, enc: enc, path: path, rawSize: st.Size(), size: counted.n}
		defer body.Close()
		if err := a.store(ctx, key, body, counted.n, create); err != nil {
			return in, 0, fmt.Errorf("upload %s to %s/%s: %w", path, a.Store, key, err)
		}
		return in, counted.n, nil
	default:
		if a.SpoolDir != nil {
			return a.uploadSpoolFile(ctx, enc, src, path, key, create)
		}
		spool := bufpool.NewSpool(a.Pool, SpoolBytes(a.SegmentSize))
		defer spool.Reset()
		in, err = enc.Encode(spool, src)
		if err != nil {
			return in, 0, fmt.Errorf("compress %s: %w", path, err)
		}
		if err := a.store(ctx, key, spool.Reader(), spool.Size(), create); err != nil {
			return in, 0, fmt.Errorf("upload %s to %s/%s: %w", path, a.Store, key, err)
		}
		return in, spool.Size(), nil
	}
}

// uploadSpoolFile is BufferMemory with the encoded file in a.SpoolDir: it
// is encoded once into a file named after the WAL file, stored from there
// (a file is seekable, for retries) and removed.
func (a *Archiver) uploadSpoolFile(ctx context.Context, enc *pipe.Encoder, src io.Reader, path, key string, create bool) (in, out int64, err error) {
	name := SpoolFileName(filepath.Base(path))
	where := filepath.Join(a.SpoolDir.Name(), name)
	// A file left by a killed process is only stale bytes.
	if err := a.SpoolDir.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("upload spool %s: %w", where, err)
	}
	f, err := fsutil.CreateReadWriteIn(a.SpoolDir, name, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("upload spool %s: %w", where, err)
	}
	defer func() {
		f.Close()
		if rerr := a.SpoolDir.Remove(name); rerr != nil && err == nil {
			err = fmt.Errorf("upload spool %s: %w", where, rerr)
		}
	}()
	// The anonymous struct hides ReadFrom, so the encoder's own buffer
	// does the copy.
	in, err = enc.Encode(struct{ io.Writer }{f}, src)
	if err != nil {
		return in, 0, fmt.Errorf("compress %s into %s: %w", path, where, err)
	}
	out, err = f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return in, 0, fmt.Errorf("upload spool %s: %w", where, err)
	}
	// Only Read and Seek: the SDK must not see an *os.File it could
	// stat or send whole by its own means.
	body := struct{ io.ReadSeeker }{f}
	if err := a.store(ctx, key, body, out, create); err != nil {
		return in, 0, fmt.Errorf("upload %s to %s/%s: %w", path, a.Store, key, err)
	}
	return in, out, nil
}

// SpoolFileName is the name of the encoded form of the WAL file name in an
// Archiver's SpoolDir: never a WAL file name (IsArchivableName), so a
// receiver cleaning its spool of WAL files can tell them apart.
func SpoolFileName(name string) string { return name + spoolSuffix }

const spoolSuffix = ".encoded"

// IsSpoolFileName reports whether name is a SpoolFileName.
func IsSpoolFileName(name string) bool {
	return strings.HasSuffix(name, spoolSuffix) && IsArchivableName(strings.TrimSuffix(name, spoolSuffix))
}

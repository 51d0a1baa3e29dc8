package s3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tusk-pg/tusk/internal/storage"
)

// maxSinglePut is S3's limit for one PutObject.
const maxSinglePut = 5 << 30

// abortTimeout bounds the clean-up request after a failed multipart upload;
// it runs even when the caller's context is already cancelled.
const abortTimeout = time.Minute

// Put stores r under key. The object becomes visible only when complete: a
// single PutObject is atomic, and a multipart upload is either completed or
// aborted.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

// Create is Put with the condition "If-None-Match: *" on the request that
// makes the object visible (PutObject or CompleteMultipartUpload): the
// server refuses it with 412 when the key exists, and of concurrent
// conditional writes it accepts one. The error then wraps
// storage.ErrExists. A server that ignores the header (some older
// S3-compatible servers do) silently overwrites: see the README.
func (s *Storage) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, true)
}

var _ storage.Creator = (*Storage)(nil)

// existsError maps the server's answer to a conditional write on an
// existing key to storage.ErrExists.
func (s *Storage) existsError(k string, err error) error {
	if code, status := errorCode(err); status == http.StatusPreconditionFailed || code == "PreconditionFailed" {
		return fmt.Errorf("%s/%s: create: %w", s.root, k, storage.ErrExists)
	}
	return err
}

func (s *Storage) put(ctx context.Context, key string, r io.Reader, size int64, ifAbsent bool) error {
	k, err := cleanKey(key)
	if err != nil {
		return fmt.Errorf("%s: put: %w", s.root, err)
	}
	if err := ctx.Err(); err != nil {
		return s.objectError(k, "put", err)
	}
	if rs, ok := r.(io.ReadSeeker); ok {
		if size < 0 {
			// A regular file or in-memory reader of unstated size can still
			// be measured; a pipe cannot (Seek fails) and is buffered below.
			n, err := remaining(rs)
			switch {
			case err == nil:
				size = n
			case errors.Is(err, errSeekBack):
				return s.objectError(k, "put", err)
			}
		}
		if size >= 0 && size <= maxSinglePut {
			if err := checkRemaining(rs, size); err != nil {
				return s.objectError(k, "put", err)
			}
			return s.putObject(ctx, k, rs, size, ifAbsent)
		}
	}

	buf, err := s.bufs.Get(ctx)
	if err != nil {
		return s.objectError(k, "put", fmt.Errorf("waiting for a part buffer: %w", err))
	}
	if int64(len(buf)) < s.opts.PartSize {
		s.bufs.Put(buf)
		return s.objectError(k, "put", fmt.Errorf("buffer pool gave a %d-byte buffer, part size is %d", len(buf), s.opts.PartSize))
	}
	up := &upload{s: s, key: k, size: size, r: ctxReader{ctx, r}, owned: [][]byte{buf}, ifAbsent: ifAbsent}
	defer up.release()

	part := buf[:s.opts.PartSize]
	n, err := io.ReadFull(up.r, part)
	up.read += int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// It fits in one part; a one-byte probe would only add a syscall.
	case err != nil:
		return s.objectError(k, "put", err)
	default:
		// Exactly one part so far: look for one more byte before paying for
		// a multipart upload.
		var probe [1]byte
		m, perr := io.ReadFull(up.r, probe[:])
		up.read += int64(m)
		if perr != nil && perr != io.EOF {
			return s.objectError(k, "put", perr)
		}
		if m == 1 {
			return up.multipart(ctx, part, probe[0])
		}
	}
	if size >= 0 && up.read != size {
		return s.objectError(k, "put", fmt.Errorf("source yielded %d bytes, expected %d", up.read, size))
	}
	if err := ctx.Err(); err != nil {
		return s.objectError(k, "put", err)
	}
	return s.putObject(ctx, k, bytes.NewReader(part[:n]), int64(n), ifAbsent)
}

// checkRemaining verifies that a seekable reader holds exactly size bytes
// from its current offset, so a wrong size fails before any upload.
func checkRemaining(rs io.ReadSeeker, size int64) error {
	n, err := remaining(rs)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("source holds %d bytes, expected %d", n, size)
	}
	return nil
}

// errSeekBack means a reader could not return to its offset after being
// measured, so it can no longer be read from the right place.
var errSeekBack = errors.New("cannot seek the source back to its start")

// remaining returns the bytes from the current offset to the end, leaving
// the offset where it was.
func remaining(rs io.Seeker) (int64, error) {
	cur, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, fmt.Errorf("seek source: %w", err)
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("seek source: %w", err)
	}
	if _, err := rs.Seek(cur, io.SeekStart); err != nil {
		return 0, fmt.Errorf("%w: %w", errSeekBack, err)
	}
	return end - cur, nil
}

// sse is the server-side encryption (S3_SSE, S3_SSE_KMS_ID) every new
// object asks for; empty values send no header.
func (s *Storage) sse() (types.ServerSideEncryption, *string) {
	var kms *string
	if s.opts.SSEKMSKeyID != "" {
		kms = aws.String(s.opts.SSEKMSKeyID)
	}
	return types.ServerSideEncryption(s.opts.SSE), kms
}

func (s *Storage) putObject(ctx context.Context, k string, body io.ReadSeeker, n int64, ifAbsent bool) error {
	in := &s3.PutObjectInput{
		Bucket:               aws.String(s.opts.Bucket),
		Key:                  aws.String(s.keyPrefix + k),
		Body:                 body,
		ContentLength:        aws.Int64(n),
		StorageClass:         types.StorageClass(s.opts.StorageClass),
		SSECustomerAlgorithm: s.sseCAlgorithm(),
		SSECustomerKey:       s.sseCKey,
		SSECustomerKeyMD5:    s.sseCKeyMD5,
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := s.client.PutObject(ctx, in, s.payloadOptions()...); err != nil {
		if ifAbsent {
			if e := s.existsError(k, err); e != err {
				return e
			}
		}
		return s.objectError(k, "put", err)
	}
	return nil
}

// ctxReader stops reading once ctx is done, so a cancelled Put does not keep
// draining a fast source into buffers.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// readError marks failures of the caller's reader; it unwraps to them.
type readError struct{ err error }

func (e readError) Error() string { return "read source: " + e.err.Error() }
func (e readError) Unwrap() error { return e.err }

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// upload is one Put that reads into part buffers.
type upload struct {
	s     *Storage
	key   string
	size  int64
	r     io.Reader
	read  int64
	owned [][]byte // buffers taken from the pool, returned by release
	// ifAbsent completes the upload only when the key is free.
	ifAbsent bool
}

func (u *upload) release() {
	for _, b := range u.owned {
		u.s.bufs.Put(b)
	}
	u.owned = nil
}

// multipart uploads first (a full part) and the rest of the reader, which
// starts with the byte carry. Parts upload concurrently with reading the
// next one, holding at most PartsInFlight buffers.
func (u *upload) multipart(ctx context.Context, first []byte, carry byte) (err error) {
	s := u.s
	create := &s3.CreateMultipartUploadInput{
		Bucket:               aws.String(s.opts.Bucket),
		Key:                  aws.String(s.keyPrefix + u.key),
		StorageClass:         types.StorageClass(s.opts.StorageClass),
		SSECustomerAlgorithm: s.sseCAlgorithm(),
		SSECustomerKey:       s.sseCKey,
		SSECustomerKeyMD5:    s.sseCKeyMD5,
	}
	create.ServerSideEncryption, create.SSEKMSKeyId = s.sse()
	out, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return s.objectError(u.key, "put: create multipart upload", err)
	}
	uploadID := out.UploadId

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []types.CompletedPart
		// free receives each buffer back when its part is uploaded (or failed).
		free = make(chan []byte, s.opts.PartsInFlight)
	)
	defer func() {
		if err != nil {
			cancel(err) // stop the other part uploads
		}
		// Buffers must not be reused (release) while uploads may read them.
		wg.Wait()
		if err != nil {
			u.abort(ctx, uploadID)
		}
	}()

	send := func(num int32, p *fillingPart) {
		wg.Go(func() {
			// The buffer goes back once its part is both filled and sent.
			defer func() { p.wait(); free <- p.buf }()
			res, err := u.uploadPart(ctx, uploadID, num, p)
			if err != nil {
				cancel(fmt.Errorf("upload part %d: %w", num, err))
				return
			}
			mu.Lock()
			parts = append(parts, types.CompletedPart{ETag: res.ETag, PartNumber: aws.Int32(num)})
			mu.Unlock()
		})
	}
	// failed reports the first upload error, or the caller's cancellation.
	failed := func() error {
		if ctx.Err() == nil {
			return nil
		}
		return context.Cause(ctx)
	}

	send(1, filledPart(first))
	partSize := int(s.opts.PartSize)
	for num := int32(2); ; num++ {
		// Next buffer: a recycled one, a new one if the pool has one to spare
		// and this upload is below its share, else wait for an upload to end.
		var buf []byte
		select {
		case buf = <-free:
		default:
			if len(u.owned) < s.opts.PartsInFlight {
				if b, ok := s.bufs.TryGet(); ok {
					if len(b) < partSize {
						s.bufs.Put(b)
					} else {
						u.owned = append(u.owned, b)
						buf = b
					}
				}
			}
			if buf == nil {
				select {
				case buf = <-free:
				case <-ctx.Done():
					return s.objectError(u.key, "put", context.Cause(ctx))
				}
			}
		}
		if err := failed(); err != nil {
			free <- buf
			return s.objectError(u.key, "put", err)
		}
		p := newFillingPart(buf[:partSize])
		if num == 2 {
			buf[0] = carry
			p.filled = 1
		}
		eof, started, err := u.fill(p, num, func() { send(num, p) })
		if !started {
			free <- buf
		}
		if err != nil {
			return s.objectError(u.key, "put", err)
		}
		if eof {
			break
		}
	}
	wg.Wait()
	if err := failed(); err != nil {
		return s.objectError(u.key, "put", err)
	}
	if u.size >= 0 && u.read != u.size {
		return s.objectError(u.key, "put", fmt.Errorf("source yielded %d bytes, expected %d", u.read, u.size))
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return cmp.Compare(*a.PartNumber, *b.PartNumber) })
	var ifNoneMatch *string
	if u.ifAbsent {
		ifNoneMatch = aws.String("*")
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		IfNoneMatch:     ifNoneMatch,
		Bucket:          aws.String(s.opts.Bucket),
		Key:             aws.String(s.keyPrefix + u.key),
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		// SSE-C keys are required here too by S3 for some request shapes.
		SSECustomerAlgorithm: s.sseCAlgorithm(),
		SSECustomerKey:       s.sseCKey,
		SSECustomerKeyMD5:    s.sseCKeyMD5,
	})
	if err != nil {
		if u.ifAbsent {
			if e := s.existsError(u.key, err); e != err {
				return e
			}
		}
		return s.objectError(u.key, "put: complete multipart upload", err)
	}
	return nil
}

// fill reads the rest of part num into p, publishing each read to its
// upload, which start starts once the part holds its first byte (a part
// that gets none is not sent: started is false). It always ends p's filling,
// so that its upload never waits on a fill that stopped.
func (u *upload) fill(p *fillingPart, num int32, start func()) (eof, started bool, err error) {
	defer p.finish()
	for {
		if p.filled > 0 && !started {
			if num > MaxParts {
				return false, false, fmt.Errorf("object exceeds %d parts of %d bytes; raise the part size", MaxParts, len(p.buf))
			}
			start()
			started = true
		}
		if p.filled == len(p.buf) {
			return false, started, nil
		}
		m, rerr := u.r.Read(p.buf[p.filled:])
		u.read += int64(m)
		if u.size >= 0 && u.read > u.size {
			return false, started, fmt.Errorf("source yields more than the expected %d bytes", u.size)
		}
		p.grow(m)
		switch {
		case rerr == io.EOF:
			if p.filled > 0 && !started {
				// The last bytes: the part is complete, send it as it is.
				if num > MaxParts {
					return true, false, fmt.Errorf("object exceeds %d parts of %d bytes; raise the part size", MaxParts, len(p.buf))
				}
				p.finish()
				start()
				started = true
			}
			return true, started, nil
		case rerr != nil:
			return false, started, rerr
		}
	}
}

// uploadPart sends part num. A part still filling goes up as it fills,
// declaring the full part size; if the source ends first, that request is
// cancelled and the part sent again with its real length (the bytes are
// all still in the buffer). That costs the last part's bytes twice on the
// wire, once per object, and saves holding a second part buffer while the
// previous part uploads.
func (u *upload) uploadPart(ctx context.Context, uploadID *string, num int32, p *fillingPart) (*s3.UploadPartOutput, error) {
	s := u.s
	put := func(ctx context.Context, body io.ReadSeeker, n int) (*s3.UploadPartOutput, error) {
		return s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:               aws.String(s.opts.Bucket),
			Key:                  aws.String(s.keyPrefix + u.key),
			UploadId:             uploadID,
			PartNumber:           aws.Int32(num),
			Body:                 body,
			ContentLength:        aws.Int64(int64(n)),
			SSECustomerAlgorithm: s.sseCAlgorithm(),
			SSECustomerKey:       s.sseCKey,
			SSECustomerKeyMD5:    s.sseCKeyMD5,
		}, s.payloadOptions()...)
	}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	body, n := p.start(cancel)
	res, err := put(pctx, body, n)
	if err != nil && p.short() && ctx.Err() == nil {
		body, n = p.start(nil)
		res, err = put(ctx, body, n)
	}
	return res, err
}

// errShortPart ends a part request that declared the full part size when
// the source ended before filling it.
var errShortPart = errors.New("source ended inside the part")

// fillingPart is the body of a part whose buffer is still being filled:
// reads wait for the filler, and every byte stays in the buffer until the
// part is done, so the SDK can rewind it to retry. One buffer thus both
// fills and uploads, where a body that must be complete before it is sent
// needs a second buffer to keep reading meanwhile.
type fillingPart struct {
	buf    []byte // the part buffer; a streamed request declares len(buf)
	mu     sync.Mutex
	cond   *sync.Cond
	filled int  // written by the filler only; read under mu by others
	done   bool // the filler is finished: filled is final
	pos    int  // the reader's offset
	// cancel ends the streamed request when the part ends short.
	cancel context.CancelCauseFunc
}

func newFillingPart(buf []byte) *fillingPart {
	p := &fillingPart{buf: buf}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// filledPart is a part whose bytes are all there.
func filledPart(b []byte) *fillingPart {
	p := newFillingPart(b)
	p.filled, p.done = len(b), true
	return p
}

// grow publishes n more bytes.
func (p *fillingPart) grow(n int) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	p.filled += n
	p.mu.Unlock()
	p.cond.Broadcast()
}

// finish marks the part complete (idempotent) and cancels a streamed
// request that declared more bytes than the part got.
func (p *fillingPart) finish() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	cancel := p.cancel
	short := p.filled < len(p.buf)
	p.mu.Unlock()
	p.cond.Broadcast()
	if short && cancel != nil {
		cancel(errShortPart)
	}
}

// wait returns once the part is complete.
func (p *fillingPart) wait() {
	p.mu.Lock()
	for !p.done {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

// short reports a part that ended below the part size.
func (p *fillingPart) short() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done && p.filled < len(p.buf)
}

// start returns what to send: the filled bytes of a complete part, or the
// part itself, declaring the full part size, while it fills (cancel then
// ends that request if the part ends short).
func (p *fillingPart) start(cancel context.CancelCauseFunc) (io.ReadSeeker, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return bytes.NewReader(p.buf[:p.filled]), p.filled
	}
	p.cancel = cancel
	p.pos = 0
	return p, len(p.buf)
}

func (p *fillingPart) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pos >= p.filled && !p.done {
		p.cond.Wait()
	}
	if p.pos >= p.filled {
		if p.pos >= len(p.buf) {
			return 0, io.EOF
		}
		return 0, errShortPart
	}
	n := copy(b, p.buf[p.pos:p.filled])
	p.pos += n
	return n, nil
}

// Seek moves within the declared part, for the SDK's rewind before a retry.
func (p *fillingPart) Seek(off int64, whence int) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch whence {
	case io.SeekCurrent:
		off += int64(p.pos)
	case io.SeekEnd:
		off += int64(len(p.buf))
	case io.SeekStart:
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if off < 0 || off > int64(len(p.buf)) {
		return 0, fmt.Errorf("seek to %d outside the %d-byte part", off, len(p.buf))
	}
	p.pos = int(off)
	return off, nil
}

// abort discards the parts of a failed multipart upload so they neither show
// up nor cost storage; the caller's context may already be cancelled.
func (u *upload) abort(ctx context.Context, uploadID *string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := u.s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(u.s.opts.Bucket),
		Key:      aws.String(u.s.keyPrefix + u.key),
		UploadId: uploadID,
	})
	if err != nil {
		u.s.opts.Logger.Warn("aborting multipart upload failed; its parts stay in the bucket until a lifecycle rule removes them",
			"object", u.s.root+"/"+u.key, "upload_id", aws.ToString(uploadID), "error", err)
	}
}

// payloadOptions skips the SHA-256 of request bodies over TLS
// (UNSIGNED-PAYLOAD, which S3 accepts on HTTPS): TLS already protects the
// bytes, and hashing would read every body twice. Over plain HTTP the payload
// stays signed.
func (s *Storage) payloadOptions() []func(*s3.Options) {
	if !s.unsignedPayload {
		return nil
	}
	return []func(*s3.Options){s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)}
}

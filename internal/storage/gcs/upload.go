package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tusk-pg/tusk/internal/storage"
)

// statusResumeIncomplete is the resumable upload protocol's answer to a
// chunk that is not the last: "308 Resume Incomplete".
const statusResumeIncomplete = 308

// recorder remembers the first failure of the caller's reader, which the
// HTTP client reports like any other failure to send a request.
type recorder struct {
	r   io.Reader
	err error
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// sourceFailure is the reader's failure in rec as a permanent error, or
// nil when the reader did not fail.
func sourceFailure(rec *recorder) error {
	if rec == nil || rec.err == nil {
		return nil
	}
	var src storage.SourceError
	if errors.As(rec.err, &src) || errors.Is(rec.err, context.Canceled) || errors.Is(rec.err, context.DeadlineExceeded) {
		return rec.err
	}
	// A body longer or shorter than its stated size.
	return storage.Permanent(rec.err)
}

// pause waits before the next try, doubling *wait up to 30 s.
func pause(ctx context.Context, wait *time.Duration, err error) error {
	select {
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	case <-time.After(*wait/2 + rand.N(*wait/2+1)):
	}
	*wait = min(2**wait, 30*time.Second)
	return nil
}

// putMedia sends a seekable body of known size in one request, straight
// from the reader; a transient failure is retried by seeking back.
func (s *Storage) putMedia(ctx context.Context, q url.Values, r io.ReadSeeker, size int64) error {
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return storage.SourceError{Err: err}
	}
	q.Set("uploadType", "media")
	u := s.c.uploadURL(s.opts.Bucket, q)
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	wait := s.c.backoff
	for attempt := 0; ; attempt++ {
		var rec *recorder
		resp, err := s.c.send(ctx, request{method: http.MethodPost, url: u, header: hdr,
			body: func() (io.Reader, int64, error) {
				if _, err := r.Seek(start, io.SeekStart); err != nil {
					return nil, 0, storage.SourceError{Err: err}
				}
				rec = &recorder{r: storage.NewSource(ctx, r, size)}
				return rec, size, nil
			}})
		if err == nil {
			drain(resp)
			return nil
		}
		if serr := sourceFailure(rec); serr != nil {
			return serr
		}
		if attempt >= s.c.retries || !transient(err) {
			return err
		}
		if err := pause(ctx, &wait, err); err != nil {
			return err
		}
	}
}

// putResumable sends the body in chunks of a resumable upload, holding one
// chunk (and one byte read ahead to learn whether it is the last) so that
// a failed request can be sent again. The object appears when the last
// chunk is taken; an upload that fails before is cancelled.
func (s *Storage) putResumable(ctx context.Context, q url.Values, r io.Reader, size int64) error {
	session, err := s.startResumable(ctx, q)
	if err != nil {
		return err
	}
	finished := false
	defer func() {
		if !finished {
			s.cancelResumable(ctx, session)
		}
	}()
	var buf []byte
	if size >= 0 && size < int64(s.opts.ChunkSize) {
		buf = make([]byte, max(size, 1)) // a small body: its own size, not a whole chunk
	} else {
		buf = s.chunks.Get()
		defer s.chunks.Put(buf)
	}
	rec := &recorder{r: storage.NewSource(ctx, r, size)}
	var ahead [1]byte
	haveAhead := false
	for off := int64(0); ; {
		n := 0
		if haveAhead {
			buf[0], n, haveAhead = ahead[0], 1, false
		}
		m, err := io.ReadFull(rec, buf[n:])
		n += m
		last := false
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			last = true
		case err != nil:
			return s.readFailure(rec, err)
		default:
			switch k, err := io.ReadFull(rec, ahead[:]); {
			case k == 1:
				haveAhead = true
			case err == io.EOF:
				last = true
			default:
				return s.readFailure(rec, err)
			}
		}
		total := int64(-1)
		if last {
			total = off + int64(n)
		}
		if err := s.sendChunk(ctx, session, buf[:n], off, total); err != nil {
			return err
		}
		if last {
			finished = true
			return nil
		}
		off += int64(n)
	}
}

// readFailure is a failure to read the body: the reader's own, a size
// mismatch, or cancellation.
func (s *Storage) readFailure(rec *recorder, err error) error {
	if serr := sourceFailure(rec); serr != nil {
		return serr
	}
	return err
}

// startResumable opens an upload session and returns its URL.
func (s *Storage) startResumable(ctx context.Context, q url.Values) (string, error) {
	q.Set("uploadType", "resumable")
	hdr := http.Header{"X-Upload-Content-Type": {"application/octet-stream"}}
	resp, err := s.c.do(ctx, request{method: http.MethodPost, url: s.c.uploadURL(s.opts.Bucket, q), header: hdr})
	if err != nil {
		return "", err
	}
	drain(resp)
	session := resp.Header.Get("Location")
	if session == "" {
		return "", errors.New("the server opened a resumable upload without a Location")
	}
	return session, nil
}

// cancelResumable discards an unfinished upload (the server would drop it
// after a week anyway): with a context of its own, since the upload's may
// be what was cancelled.
func (s *Storage) cancelResumable(ctx context.Context, session string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// 499 is the protocol's answer to a cancelled upload.
	resp, err := s.c.send(ctx, request{method: http.MethodDelete, url: session, ok: []int{499, http.StatusNoContent, http.StatusOK}})
	if err == nil {
		drain(resp)
	}
}

// sendChunk sends data, the body's bytes from off; total is the body's
// length with the last chunk, -1 before. After a failure it asks the
// server how much it holds and sends the rest of the chunk from there.
func (s *Storage) sendChunk(ctx context.Context, session string, data []byte, off, total int64) error {
	totalStr := "*"
	if total >= 0 {
		totalStr = strconv.FormatInt(total, 10)
	}
	end := off + int64(len(data)) // the offset after this chunk
	sent := int64(0)              // bytes of data the server holds
	wait := s.c.backoff
	failures := 0
	for {
		rest := data[sent:]
		rng := fmt.Sprintf("bytes %d-%d/%s", off+sent, end-1, totalStr)
		if len(rest) == 0 {
			rng = "bytes */" + totalStr
		}
		resp, err := s.c.send(ctx, request{method: http.MethodPut, url: session,
			header: http.Header{"Content-Range": {rng}},
			body:   func() (io.Reader, int64, error) { return bytes.NewReader(rest), int64(len(rest)), nil },
			ok:     []int{http.StatusOK, http.StatusCreated, statusResumeIncomplete}})
		var held int64
		if err == nil {
			drain(resp)
			if resp.StatusCode != statusResumeIncomplete {
				if total < 0 {
					return errors.New("the server finished the upload before its last chunk")
				}
				return nil
			}
			if held, err = persisted(resp.Header.Get("Range")); err == nil && held >= end {
				if total >= 0 {
					return errIncomplete
				}
				return nil
			}
		}
		if err == nil {
			// Part of the chunk was taken: the rest goes next, if the
			// server made progress.
			if held-off <= sent {
				err = errIncomplete
			}
		}
		if err != nil {
			failures++
			if failures > s.c.retries || !(transient(err) || errors.Is(err, errIncomplete)) {
				return err
			}
			if err := pause(ctx, &wait, err); err != nil {
				return err
			}
			done, h, qerr := s.queryResumable(ctx, session, totalStr)
			switch {
			case qerr != nil:
				continue // sent again from where it was
			case done && total >= 0:
				return nil
			case done:
				return errors.New("the server finished the upload before its last chunk")
			}
			held = h
		}
		if held < off || held > end {
			return fmt.Errorf("the server holds %d bytes of the upload, outside this chunk's %d-%d", held, off, end)
		}
		sent = held - off
		if sent == int64(len(data)) && total < 0 {
			return nil // all of a chunk that is not the last
		}
	}
}

// queryResumable asks the server how much of the upload it holds.
func (s *Storage) queryResumable(ctx context.Context, session, totalStr string) (done bool, held int64, err error) {
	resp, err := s.c.send(ctx, request{method: http.MethodPut, url: session,
		header: http.Header{"Content-Range": {"bytes */" + totalStr}},
		ok:     []int{http.StatusOK, http.StatusCreated, statusResumeIncomplete}})
	if err != nil {
		return false, 0, err
	}
	drain(resp)
	if resp.StatusCode != statusResumeIncomplete {
		return true, 0, nil
	}
	held, err = persisted(resp.Header.Get("Range"))
	return false, held, err
}

// persisted reads the Range header of a 308 answer, "bytes=0-N": the
// server holds the upload's first N+1 bytes. No header: none.
func persisted(h string) (int64, error) {
	if h == "" {
		return 0, nil
	}
	r, ok := strings.CutPrefix(h, "bytes=")
	first, last, ok2 := strings.Cut(r, "-")
	if !ok || !ok2 || first != "0" {
		return 0, fmt.Errorf("the server's Range header %q is not bytes=0-N", oneLine(h))
	}
	// Digits only, without leading zeros: the one spelling of N.
	n, err := strconv.ParseInt(last, 10, 64)
	if err != nil || n == 1<<63-1 || strings.Trim(last, "0123456789") != "" || (len(last) > 1 && last[0] == '0') {
		return 0, fmt.Errorf("the server's Range header %q is not bytes=0-N", oneLine(h))
	}
	return n + 1, nil
}

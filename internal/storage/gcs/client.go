package gcs

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tusk-pg/tusk/internal/storage"
)

// The requests of the JSON API this package makes, over one http.Client.

const (
	defaultEndpoint = "https://storage.googleapis.com"
	// errorBodyLimit bounds how much of an error response is read.
	errorBodyLimit = 16 << 10
)

// client sends requests to one endpoint, authenticated unless it is an
// emulator, and retries them.
type client struct {
	http     *http.Client
	endpoint string // "https://storage.googleapis.com", no trailing slash
	// where names the endpoint's setting in errors about reaching it.
	where  string
	tokens oauth2.TokenSource // nil: no Authorization header
	// creds names where the credentials came from, for errors.
	creds   string
	csek    http.Header // customer-supplied key headers, or nil
	retries int
	// backoff is the first wait between tries; it doubles up to 30 s.
	backoff time.Duration
}

func newClient(ctx context.Context, o Options) (*client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Concurrent uploads keep their connections between requests.
	t.MaxIdleConnsPerHost = 16
	c := &client{
		http:     &http.Client{Transport: t},
		endpoint: defaultEndpoint,
		where:    defaultEndpoint,
		retries:  o.MaxRetries,
		backoff:  500 * time.Millisecond,
	}
	if o.EncryptionKey != nil {
		sum := sha256.Sum256(o.EncryptionKey)
		c.csek = http.Header{}
		c.csek.Set("X-Goog-Encryption-Algorithm", "AES256")
		c.csek.Set("X-Goog-Encryption-Key", base64.StdEncoding.EncodeToString(o.EncryptionKey))
		c.csek.Set("X-Goog-Encryption-Key-Sha256", base64.StdEncoding.EncodeToString(sum[:]))
	}
	if o.EmulatorHost != "" {
		// As Google's libraries: a bare host:port is spoken to over HTTP.
		e := o.EmulatorHost
		if !strings.Contains(e, "://") {
			e = "http://" + e
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("STORAGE_EMULATOR_HOST: %q is neither host:port nor a URL", o.EmulatorHost)
		}
		c.endpoint = strings.TrimRight(e, "/")
		c.where = "STORAGE_EMULATOR_HOST=" + o.EmulatorHost
		return c, nil
	}
	if o.endpoint != "" {
		c.endpoint, c.where = o.endpoint, o.endpoint
	}
	ts, creds, err := tokenSource(ctx, o)
	if err != nil {
		return nil, err
	}
	c.tokens, c.creds = oauth2.ReuseTokenSource(nil, ts), creds
	return c, nil
}

// apiError is a response the server refused a request with.
type apiError struct {
	Code    int
	Message string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%d %s", e.Code, http.StatusText(e.Code))
	if e.Message != "" && e.Message != http.StatusText(e.Code) {
		msg += ": " + e.Message
	}
	if e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden {
		msg += " (check GOOGLE_APPLICATION_CREDENTIALS and the bucket's permissions)"
	}
	return msg
}

// statusOf is the HTTP status of a refusal in err's chain, 0 when none.
func statusOf(err error) int {
	var a *apiError
	if errors.As(err, &a) {
		return a.Code
	}
	return 0
}

// readError builds the apiError of a failed response and closes its body.
// The JSON API answers {"error": {"code": N, "message": "..."}}; anything
// else (a proxy's page) is kept as a short line of text.
func readError(resp *http.Response) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	e := &apiError{Code: resp.StatusCode}
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Message = body.Error.Message
	} else {
		e.Message = string(b)
	}
	e.Message = oneLine(e.Message)
	return e
}

// oneLine keeps error text to one line of bounded length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// transient reports whether a failed request may succeed when sent again:
// no answer at all, or 408, 429 or a 5xx.
func transient(err error) bool {
	if errors.Is(err, storage.ErrPermanent) {
		return false
	}
	switch c := statusOf(err); {
	case c == 0:
		var src storage.SourceError
		return !errors.As(err, &src) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true
	}
	return false
}

// classify marks what a retry cannot change as storage.Permanent.
func classify(err error) error {
	if transient(err) {
		return err
	}
	return storage.Permanent(err)
}

// request is one API request. body, when set, is called for each try
// and returns the body and its length (-1: unknown); tries may be false
// for requests that cannot be sent twice.
type request struct {
	method string
	url    string
	header http.Header
	body   func() (io.Reader, int64, error)
	// ok lists the statuses that are answers rather than refusals
	// (200 unless set).
	ok []int
}

// do sends req, retrying transient failures up to c.retries times with a
// doubling, jittered backoff. The response's status is one of req.ok; its
// body is the caller's to close.
func (c *client) do(ctx context.Context, req request) (*http.Response, error) {
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, req)
		if err == nil || attempt >= c.retries || !transient(err) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(err, ctx.Err())
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// send makes one try of req.
func (c *client) send(ctx context.Context, req request) (*http.Response, error) {
	var body io.Reader
	size := int64(0)
	if req.body != nil {
		var err error
		if body, size, err = req.body(); err != nil {
			return nil, err
		}
	}
	r, err := http.NewRequestWithContext(ctx, req.method, req.url, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		// Not an io.ReadCloser of ours: the transport must not close the
		// caller's reader, nor retry on its own.
		r.Body = io.NopCloser(body)
		r.GetBody = nil
		r.ContentLength = size
		if size == 0 {
			r.Body = http.NoBody
		}
	}
	for k, v := range req.header {
		r.Header[k] = v
	}
	for k, v := range c.csek {
		r.Header[k] = v
	}
	r.Header.Set("User-Agent", "tusk")
	if c.tokens != nil {
		tok, err := c.tokens.Token()
		if err != nil {
			terr := fmt.Errorf("getting an access token with %s: %s", c.creds, tokenError(err))
			var re *oauth2.RetrieveError
			if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 && re.Response.StatusCode != http.StatusTooManyRequests {
				return nil, storage.Permanent(terr) // refused: wrong credentials
			}
			return nil, terr
		}
		tok.SetAuthHeader(r)
	}
	resp, err := c.http.Do(r)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known to the caller; keep one line
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("no answer from %s: %w", c.where, err)
	}
	ok := req.ok
	if ok == nil {
		ok = []int{http.StatusOK}
	}
	for _, code := range ok {
		if resp.StatusCode == code {
			return resp, nil
		}
	}
	return nil, readError(resp)
}

// tokenError is one line about a failed token request: the token
// endpoint's error code and description, never the response's whole body.
func tokenError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := "the token endpoint answered "
		if re.Response != nil {
			msg += re.Response.Status
		}
		code, desc := re.ErrorCode, re.ErrorDescription
		if code == "" {
			// The service account flow leaves the OAuth error in the body:
			// {"error": "invalid_grant", "error_description": "..."}.
			var b struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(re.Body, &b) == nil {
				code, desc = b.Error, b.Description
			}
		}
		if code != "" {
			msg += ": " + code
		}
		if desc != "" {
			msg += ": " + desc
		}
		return oneLine(msg)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return oneLine(ue.Op + " " + ue.URL + ": " + ue.Err.Error())
	}
	return oneLine(err.Error())
}

// objectURL is the JSON API URL of an object's metadata.
func (c *client) objectURL(bucket, name string, q url.Values) string {
	u := c.endpoint + "/storage/v1/b/" + url.PathEscape(bucket) + "/o/" + url.PathEscape(name)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// bucketURL is the JSON API URL of a bucket's object collection (o) or
// of the bucket itself (empty).
func (c *client) bucketURL(bucket, collection string, q url.Values) string {
	u := c.endpoint + "/storage/v1/b/" + url.PathEscape(bucket)
	if collection != "" {
		u += "/" + collection
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// uploadURL is the JSON API URL uploads start at.
func (c *client) uploadURL(bucket string, q url.Values) string {
	return c.endpoint + "/upload/storage/v1/b/" + url.PathEscape(bucket) + "/o?" + q.Encode()
}

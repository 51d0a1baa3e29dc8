package s3

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Network timeouts. None of them bounds a whole request, so a large part
// upload on a slow link is never cut off; the caller's context does that.
const (
	dialTimeout = 10 * time.Second
	tlsTimeout  = 10 * time.Second
	// responseHeaderTimeout runs from the end of the request body to the
	// response headers: a server that accepted the data but hangs is retried.
	responseHeaderTimeout = 2 * time.Minute
	idleConnTimeout       = 90 * time.Second
	// maxIdleConns bounds the kept-alive connections (and their buffers).
	maxIdleConns = 16

	// Backoff for errors that are not throttling (connection resets, 500s).
	retryBaseDelay = 50 * time.Millisecond
	retryMaxDelay  = 20 * time.Second
)

// newHTTPClient builds the one HTTP client of a Storage. It is a
// BuildableClient so the SDK can still add AWS_CA_BUNDLE to it.
func newHTTPClient(o Options) (*awshttp.BuildableClient, error) {
	var roots *x509.CertPool
	if o.CACertFile != "" {
		pem, err := os.ReadFile(o.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("CA certificate file: %w", err)
		}
		// Only the file's certificates, as WAL-G (its SDK's custom CA
		// bundle) trusts: adding the system roots as well parsed about 140
		// certificates in every process, 2.7 MiB of heap and 4 MiB of RSS
		// in a one-shot wal-push, for no certificate this server presents.
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate file %s: no PEM certificates in it", o.CACertFile)
		}
	}
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = dialTimeout
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(tr *http.Transport) {
			tr.TLSHandshakeTimeout = tlsTimeout
			tr.ResponseHeaderTimeout = responseHeaderTimeout
			tr.IdleConnTimeout = idleConnTimeout
			tr.MaxIdleConns = maxIdleConns
			tr.MaxIdleConnsPerHost = maxIdleConns
			if roots != nil {
				if tr.TLSClientConfig == nil {
					tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				} else {
					tr.TLSClientConfig = tr.TLSClientConfig.Clone()
				}
				// A clone per build: the SDK may append AWS_CA_BUNDLE to it.
				tr.TLSClientConfig.RootCAs = roots.Clone()
			}
		}), nil
}

// newRetryer retries transient errors (connection failures, 5xx, throttling)
// with jittered exponential backoff and no client-side retry quota: a backup
// tool would rather wait than fail once a burst of errors drained a token
// bucket.
func newRetryer(o Options) aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = o.MaxRetries + 1
		so.RateLimiter = ratelimit.None
		so.Backoff = backoff{
			throttle:    retry.IsErrorThrottles(so.Throttles),
			minThrottle: o.MinThrottlingRetryDelay,
			maxThrottle: o.MaxThrottlingRetryDelay,
		}
	})
}

type backoff struct {
	throttle                 retry.IsErrorThrottle
	minThrottle, maxThrottle time.Duration
}

// BackoffDelay doubles a base delay per attempt up to a cap and picks a random
// delay in the upper half, so concurrent clients spread out but never retry
// immediately. Throttling errors use WALG_S3_*_THROTTLING_RETRY_DELAY.
func (b backoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	base, limit := retryBaseDelay, retryMaxDelay
	if b.throttle.IsErrorThrottle(err) == aws.TrueTernary {
		base, limit = b.minThrottle, b.maxThrottle
	}
	d := limit
	if shift := attempt - 1; shift >= 0 && shift < 32 {
		if e := base << shift; e > 0 && e < limit {
			d = e
		}
	}
	if d <= 0 {
		return 0, nil
	}
	return d/2 + rand.N(d/2+1), nil
}

// addHeaders adds fixed headers to every request, before signing.
func addHeaders(headers map[string]string) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Build.Add(middleware.BuildMiddlewareFunc("tuskAdditionalHeaders",
			func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
				if req, ok := in.Request.(*smithyhttp.Request); ok {
					for k, v := range headers {
						req.Header.Set(k, v)
					}
				}
				return next.HandleBuild(ctx, in)
			}), middleware.After)
	}
}

// addContentMD5 sets Content-MD5 on DeleteObjects. S3 and most compatible
// servers require it (or a flexible checksum, which older servers do not
// know), and the SDK no longer sends it by itself.
func addContentMD5(stack *middleware.Stack) error {
	return stack.Build.Add(middleware.BuildMiddlewareFunc("tuskContentMD5",
		func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
			req, ok := in.Request.(*smithyhttp.Request)
			if ok && req.Header.Get("Content-MD5") == "" && req.GetStream() != nil {
				h := md5.New()
				if _, err := io.Copy(h, req.GetStream()); err != nil {
					return middleware.BuildOutput{}, middleware.Metadata{}, fmt.Errorf("hashing request body: %w", err)
				}
				if err := req.RewindStream(); err != nil {
					return middleware.BuildOutput{}, middleware.Metadata{}, fmt.Errorf("rewinding request body: %w", err)
				}
				req.Header.Set("Content-MD5", base64.StdEncoding.EncodeToString(h.Sum(nil)))
			}
			return next.HandleBuild(ctx, in)
		}), middleware.After)
}

// Package s3 is the storage backend for Amazon S3 and S3-compatible servers
// (WALG_S3_PREFIX), built on aws-sdk-go-v2.
//
// Memory: Get streams the response body; List holds one page (at most 1000
// keys); Put of a seekable reader of known size sends it directly (the SDK
// seeks back to retry). Any other Put reads into part buffers of PartSize
// bytes: one buffer when the object fits, otherwise a multipart upload with
// up to PartsInFlight buffers. Over HTTPS each part's request starts while
// its buffer fills, so one buffer keeps reading and uploading overlapped
// (the default); over plain HTTP a part is hashed whole before it is sent,
// so two are the default there (one filling while the other uploads).
// Buffers come from Options.Buffers or from the Storage's own pool of
// MaxBuffers buffers, allocated once and reused; see MemoryBound.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/storage"
)

// deleteBatch is S3's limit of keys per DeleteObjects request.
const deleteBatch = 1000

// Storage is a storage.Storage on one bucket and key prefix.
type Storage struct {
	client    *s3.Client
	opts      Options
	keyPrefix string // Options.Prefix + "/", or "" for the bucket root
	root      string // "s3://bucket/prefix"
	bufs      Buffers
	ownPool   bool

	sseCKey, sseCKeyMD5 *string
	// unsignedPayload: the endpoint is HTTPS, so bodies are not hashed.
	unsignedPayload bool

	// bucketSeen is set once the bucket is known to exist, so a 404 on an
	// object can be trusted to mean the object (not the bucket) is missing.
	bucketSeen atomic.Bool
}

var _ storage.Storage = (*Storage)(nil)

// New creates the client. It makes a network request only to detect the
// bucket's region when none is configured.
func New(ctx context.Context, opts Options) (*Storage, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("s3 storage: %w", err)
	}
	s := &Storage{opts: o, root: "s3://" + o.Bucket}
	if o.Prefix != "" {
		s.keyPrefix = o.Prefix + "/"
		s.root += "/" + o.Prefix
	}
	if o.Buffers != nil {
		s.bufs = o.Buffers
	} else {
		s.bufs = newPool(int(o.PartSize), o.MaxBuffers)
		s.ownPool = true
	}
	if o.SSECustomerKey != nil {
		k, m := sseCustomerHeaders(o.SSECustomerKey)
		s.sseCKey, s.sseCKeyMD5 = &k, &m
	}

	httpClient, err := newHTTPClient(o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.root, err)
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer { return newRetryer(o) }),
		// No flexible checksums / aws-chunked trailers: many S3-compatible
		// servers reject them.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if o.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.Region))
	}
	if o.Profile != "" {
		loadOpts = append(loadOpts, config.WithSharedConfigProfile(o.Profile))
	}
	static := credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, o.SessionToken)
	if o.AccessKeyID != "" && o.SecretAccessKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(static))
	}
	var cfg aws.Config
	if region, ok := directRegion(o, os.Environ()); ok {
		cfg = aws.Config{
			Region:                     region,
			Credentials:                static,
			HTTPClient:                 httpClient,
			Retryer:                    func() aws.Retryer { return newRetryer(o) },
			RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
			ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		}
	} else if cfg, err = config.LoadDefaultConfig(ctx, loadOpts...); err != nil {
		return nil, fmt.Errorf("%s: loading AWS configuration: %w", s.root, err)
	}
	if o.RoleARN != "" {
		stsClient := sts.NewFromConfig(cfg, func(so *sts.Options) {
			if so.Region == "" {
				so.Region = "us-east-1"
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, o.RoleARN,
			func(ao *stscreds.AssumeRoleOptions) { ao.RoleSessionName = o.RoleSessionName }))
	}

	s3opts := func(so *s3.Options) {
		so.UsePathStyle = o.ForcePathStyle
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		if len(o.RequestHeaders) > 0 {
			so.APIOptions = append(so.APIOptions, addHeaders(o.RequestHeaders))
		}
	}
	if cfg.Region == "" {
		if o.Endpoint != "" && !isAWSEndpoint(o.Endpoint) {
			// S3-compatible servers generally accept (and sign for) us-east-1.
			cfg.Region = "us-east-1"
		} else {
			region, err := manager.GetBucketRegion(ctx, s3.NewFromConfig(cfg, s3opts, func(so *s3.Options) {
				so.Region = "us-east-1"
			}), o.Bucket)
			if err != nil {
				return nil, fmt.Errorf("%s: no region configured (AWS_REGION) and detecting the bucket's region failed: %w", s.root, err)
			}
			cfg.Region = region
		}
	}
	s.opts.Region = cfg.Region
	s.unsignedPayload = !o.Traits().SignsPayload
	s.client = s3.NewFromConfig(cfg, s3opts)
	return s, nil
}

// directEnv are the AWS_ variables that tusk reads itself (through
// Options) or that do not change S3 requests: with only these set, and the
// keys and region given, the SDK's default loader has nothing to add.
var directEnv = map[string]bool{
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	"AWS_ACCESS_KEY": true, "AWS_SECRET_KEY": true,
	"AWS_REGION": true, "AWS_DEFAULT_REGION": true,
	"AWS_ENDPOINT": true, "AWS_S3_FORCE_PATH_STYLE": true,
	"AWS_ROLE_SESSION_NAME": true, "AWS_DEFAULT_OUTPUT": true,
}

// directRegion reports whether the client can be configured from the options
// alone, and for which region: static keys, no profile or role, a region
// given (or an S3-compatible endpoint, which signs for us-east-1), and no
// other AWS_ variable in the environment (AWS_CA_BUNDLE, AWS_CONFIG_FILE,
// AWS_ENDPOINT_URL, AWS_USE_FIPS_ENDPOINT, ... go to the SDK's loader).
// The loader otherwise reads the shared configuration files and resolves
// defaults that cost each one-shot process about 1 MiB of RSS and 10 ms of
// CPU. Like WAL-G's SDK, which reads ~/.aws/config only when asked
// (AWS_SDK_LOAD_CONFIG), this path does not read it.
func directRegion(o Options, environ []string) (string, bool) {
	if o.AccessKeyID == "" || o.SecretAccessKey == "" || o.Profile != "" || o.RoleARN != "" {
		return "", false
	}
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") && !directEnv[k] {
			return "", false
		}
	}
	switch {
	case o.Region != "":
		return o.Region, true
	case o.Endpoint != "" && !isAWSEndpoint(o.Endpoint):
		return "us-east-1", true
	}
	return "", false
}

// Traits are the backend's storage.Traits for these options: bodies are
// signed (hashed before sending) unless the endpoint is HTTPS; the SDK's
// default endpoint is.
func (o Options) Traits() storage.Traits {
	https := o.Endpoint == "" || strings.HasPrefix(strings.ToLower(o.Endpoint), "https://")
	return storage.Traits{SignsPayload: !https}
}

// requestBytes is what one request in flight holds beyond its body,
// measured in the daemon's benchmark: the HTTP/1.1 connection's bufio
// reader and writer, TLS record buffers (up to 16 KiB each way), headers
// and the SDK's middleware state.
const requestBytes = 256 << 10

// Memory is what a Storage with these options holds (for memory plans):
// per request, and the part buffers of bodies of unknown length (see
// MemoryBound).
func (o Options) Memory() memplan.Storage {
	d, err := o.withDefaults()
	if err != nil {
		d = o // reported when the storage is opened
	}
	m := memplan.Storage{
		Name:        "S3",
		Upload:      requestBytes,
		Download:    requestBytes,
		UnknownSize: int64(d.PartsInFlight) * d.PartSize,
		Note:        fmt.Sprintf("S3 multipart parts of %d MiB (S3_MAX_PART_SIZE)", d.PartSize>>20),
	}
	if d.Buffers == nil {
		m.UnknownSizeTotal = int64(d.MaxBuffers) * d.PartSize
		m.Note += fmt.Sprintf(", pool of %d", d.MaxBuffers)
	}
	return m
}

func isAWSEndpoint(endpoint string) bool {
	u, err := url.Parse(endpoint)
	return err == nil && strings.HasSuffix(u.Hostname(), ".amazonaws.com")
}

// String returns "s3://bucket/prefix".
func (s *Storage) String() string { return s.root }

// Region is the region requests are signed for.
func (s *Storage) Region() string { return s.opts.Region }

// PartSize is the multipart part size and part buffer size.
func (s *Storage) PartSize() int64 { return s.opts.PartSize }

// MemoryBound returns the most bytes of part buffers this Storage holds at
// once: MaxBuffers × PartSize for its own pool. With Options.Buffers the
// buffers belong to that pool's budget and this returns
// PartsInFlight × PartSize, the most one Put takes from it.
func (s *Storage) MemoryBound() int64 {
	if s.ownPool {
		return int64(s.opts.MaxBuffers) * s.opts.PartSize
	}
	return s.PutMemoryBound()
}

// PutMemoryBound returns the most bytes of part buffers one Put holds.
func (s *Storage) PutMemoryBound() int64 {
	return int64(s.opts.PartsInFlight) * s.opts.PartSize
}

// cleanKey is storage.CleanKey: S3 would accept "..", but a server or proxy
// that normalises paths could then reach outside the prefix.
func cleanKey(key string) (string, error) { return storage.CleanKey(key) }

func (s *Storage) objectError(key, op string, err error) error {
	return classify(fmt.Errorf("%s/%s: %s: %w", s.root, key, op, err))
}

// classify marks the server's refusals that a retry cannot change as
// storage.Permanent (see storage.IsTransient); network failures, 5xx,
// throttling and the 4xx codes S3 documents as retryable stay transient.
func classify(err error) error {
	code, status := errorCode(err)
	switch code {
	case "RequestTimeout", "RequestTimeTooSkewed", "ExpiredToken", "SlowDown", "Throttling",
		"InternalError", "OperationAborted", "ConditionalRequestConflict":
		return err
	}
	switch {
	case status == http.StatusNotImplemented,
		status >= 400 && status < 500 && status != http.StatusRequestTimeout &&
			status != http.StatusConflict && status != http.StatusTooManyRequests:
		return storage.Permanent(err)
	}
	return err
}

// errorCode returns the S3 error code and HTTP status of err, if any.
func errorCode(err error) (code string, status int) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	return code, status
}

// notFound maps a failed GET/HEAD to storage.ErrNotFound when the object is
// missing. NoSuchBucket is not "not found": a wrong bucket must not look like
// the end of the WAL. A 404 without a code (HEAD has no body) is confirmed
// once per Storage by checking that the bucket exists.
func (s *Storage) notFound(ctx context.Context, k, op string, err error) error {
	code, status := errorCode(err)
	switch {
	case code == "NoSuchKey":
		s.bucketSeen.Store(true)
		return storage.NotFoundError(s.root, k)
	case code == "NoSuchBucket":
		return storage.Permanent(s.objectError(k, op, fmt.Errorf("bucket %s does not exist: %w", s.opts.Bucket, err)))
	case status == http.StatusNotFound:
		if berr := s.checkBucket(ctx); berr != nil {
			return storage.Permanent(s.objectError(k, op, berr))
		}
		return storage.NotFoundError(s.root, k)
	}
	return s.objectError(k, op, err)
}

// checkBucket returns an error only when the bucket is definitely missing; a
// refused or failed HeadBucket leaves the object's 404 to stand.
func (s *Storage) checkBucket(ctx context.Context) error {
	if s.bucketSeen.Load() {
		return nil
	}
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.opts.Bucket)})
	if err == nil {
		s.bucketSeen.Store(true)
		return nil
	}
	if code, status := errorCode(err); code == "NoSuchBucket" || status == http.StatusNotFound {
		return fmt.Errorf("bucket %s does not exist: %w", s.opts.Bucket, err)
	}
	return nil
}

// Get opens the object; the body streams from the connection.
func (s *Storage) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := cleanKey(key)
	if err != nil {
		return nil, fmt.Errorf("%s: get: %w", s.root, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket:               aws.String(s.opts.Bucket),
		Key:                  aws.String(s.keyPrefix + k),
		SSECustomerAlgorithm: s.sseCAlgorithm(),
		SSECustomerKey:       s.sseCKey,
		SSECustomerKeyMD5:    s.sseCKeyMD5,
	})
	if err != nil {
		return nil, s.notFound(ctx, k, "get", err)
	}
	return out.Body, nil
}

// Stat issues a HEAD request.
func (s *Storage) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := cleanKey(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("%s: stat: %w", s.root, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:               aws.String(s.opts.Bucket),
		Key:                  aws.String(s.keyPrefix + k),
		SSECustomerAlgorithm: s.sseCAlgorithm(),
		SSECustomerKey:       s.sseCKey,
		SSECustomerKeyMD5:    s.sseCKeyMD5,
	})
	if err != nil {
		return storage.ObjectInfo{}, s.notFound(ctx, k, "stat", err)
	}
	oi := storage.ObjectInfo{Key: k, Size: aws.ToInt64(out.ContentLength)}
	if out.LastModified != nil {
		oi.ModTime = *out.LastModified
	}
	return oi, nil
}

func (s *Storage) sseCAlgorithm() *string {
	if s.sseCKey == nil {
		return nil
	}
	return aws.String("AES256")
}

// List pages through the objects under prefix (ListObjectsV2, or V1 when
// configured). Keys ending in '/' (folder markers made by some tools) are
// not objects and are skipped.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("%s: list: %w", s.root, err)
	}
	full := s.keyPrefix + strings.TrimLeft(prefix, "/")
	emit := func(objs []types.Object) error {
		for _, o := range objs {
			key, ok := strings.CutPrefix(aws.ToString(o.Key), s.keyPrefix)
			if !ok || key == "" || strings.HasSuffix(key, "/") {
				continue
			}
			oi := storage.ObjectInfo{Key: key, Size: aws.ToInt64(o.Size)}
			if o.LastModified != nil {
				oi.ModTime = *o.LastModified
			}
			if err := fn(oi); err != nil {
				return err
			}
		}
		return nil
	}
	listErr := func(err error) error {
		return classify(fmt.Errorf("%s/%s: list: %w", s.root, strings.TrimLeft(prefix, "/"), err))
	}
	if s.opts.UseListObjectsV1 {
		in := &s3.ListObjectsInput{Bucket: aws.String(s.opts.Bucket), Prefix: aws.String(full)}
		for {
			out, err := s.client.ListObjects(ctx, in)
			if err != nil {
				return listErr(err)
			}
			if err := emit(out.Contents); err != nil {
				return err
			}
			if !aws.ToBool(out.IsTruncated) || len(out.Contents) == 0 {
				return nil
			}
			// NextMarker is only returned with a delimiter; otherwise the
			// last key is the marker.
			next := aws.ToString(out.NextMarker)
			if next == "" {
				next = aws.ToString(out.Contents[len(out.Contents)-1].Key)
			}
			in.Marker = aws.String(next)
		}
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.opts.Bucket),
		Prefix: aws.String(full),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return listErr(err)
		}
		if err := emit(out.Contents); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes keys with DeleteObjects, 1000 per request. Missing keys are
// not errors (S3 reports them deleted).
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	objs := make([]types.ObjectIdentifier, 0, min(len(keys), deleteBatch))
	flush := func() error {
		if len(objs) == 0 {
			return nil
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.opts.Bucket),
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		}, func(so *s3.Options) { so.APIOptions = append(so.APIOptions, addContentMD5) })
		if err != nil {
			return fmt.Errorf("%s: delete %d objects starting with %s: %w", s.root, len(objs), aws.ToString(objs[0].Key), err)
		}
		var errs []error
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			errs = append(errs, fmt.Errorf("s3://%s/%s: delete: %s: %s", s.opts.Bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
		objs = objs[:0]
		return errors.Join(errs...)
	}
	for _, key := range keys {
		k, err := cleanKey(key)
		if err != nil {
			return fmt.Errorf("%s: delete: %w", s.root, err)
		}
		objs = append(objs, types.ObjectIdentifier{Key: aws.String(s.keyPrefix + k)})
		if len(objs) == deleteBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Registration declares the backend: WALG_S3_PREFIX selects it,
// SettingNames configure it, and the SDK retries by itself (S3_MAX_RETRIES).
func Registration() storage.Registration {
	return storage.Registration{Kind: "s3", Name: "S3", Prefix: "WALG_S3_PREFIX", Settings: SettingNames()[1:], SkipRetry: true}
}

// Configure states what a Storage with these options is, without I/O;
// Connect creates its client, logging to the process's logger.
func Configure(o Options) storage.Configured {
	root := "s3://" + o.Bucket
	if p := strings.Trim(o.Prefix, "/"); p != "" {
		root += "/" + p
	}
	return storage.Configured{
		Registration: Registration(),
		Root:         root,
		Traits:       o.Traits(),
		Memory:       o.Memory(),
		Connect: func(ctx context.Context, log *slog.Logger) (storage.Storage, error) {
			o.Logger = log
			return New(ctx, o)
		},
	}
}

// Backend is the S3 backend for a storage.Registry.
func Backend() storage.Backend {
	return storage.Backend{Registration: Registration(), Configure: storage.ConfigureWith(OptionsFromSettings, func(o Options) (storage.Configured, error) { return Configure(o), nil })}
}

package s3

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults, as WAL-G's.
const (
	DefaultPartSize                = 20 << 20
	DefaultMaxRetries              = 15
	DefaultMinThrottlingRetryDelay = 500 * time.Millisecond
	DefaultMaxThrottlingRetryDelay = 300 * time.Second
	DefaultStorageClass            = "STANDARD"
	// DefaultPartsInFlight is how many part buffers one Put may hold over
	// HTTPS. One suffices there: a part uploads while its buffer fills (see
	// fillingPart), so reading only waits for the end of each part's
	// request. Measured with backup-push at WALG_UPLOAD_CONCURRENCY=4
	// (docs/benchmarks.md): 20 MiB less RSS than two.
	DefaultPartsInFlight = 1
	// DefaultPartsInFlightSigned is the same over plain HTTP, where each
	// body is hashed for its signature before it is sent, so a part cannot
	// go up while it fills: one uploads while the next is filled.
	DefaultPartsInFlightSigned = 2
	// DefaultMaxBuffers is the size of a Storage's own buffer pool (when
	// Options.Buffers is nil): two Puts can stream multipart concurrently.
	DefaultMaxBuffers = 2 * DefaultPartsInFlightSigned

	// MinPartSize and MaxPartSize are S3's limits for a multipart part (the
	// last part may be smaller).
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
	// MaxParts is S3's limit on parts per multipart upload.
	MaxParts = 10000
)

// Options configure a Storage. Zero values mean the defaults above, except
// where a field says otherwise.
type Options struct {
	Bucket string
	// Prefix is the key prefix inside the bucket ("path/to/folder"); leading
	// and trailing '/' are ignored.
	Prefix string

	// Region; when empty the SDK's own sources (AWS_REGION,
	// AWS_DEFAULT_REGION, the shared config profile) are consulted, then the
	// bucket's region is detected, or "us-east-1" is used for a custom
	// non-AWS endpoint.
	Region string
	// Endpoint is a custom S3 endpoint URL (MinIO, Ceph, ...); https:// is
	// assumed when it has no scheme.
	Endpoint       string
	ForcePathStyle bool
	// CACertFile is a PEM bundle of the CAs trusted instead of the system
	// roots (as WAL-G's WALG_S3_CA_CERT_FILE).
	CACertFile string

	// Static credentials; used when both AccessKeyID and SecretAccessKey are
	// set, otherwise the SDK's default chain (environment, shared files with
	// Profile, web identity, ECS, EC2 instance metadata).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Profile         string
	// RoleARN, when set, is assumed (STS AssumeRole) with the credentials
	// above as the base.
	RoleARN         string
	RoleSessionName string

	// SSE is "AES256" (SSE-S3) or "aws:kms" (SSE-KMS, with SSEKMSKeyID).
	SSE         string
	SSEKMSKeyID string
	// SSECustomerKey, when set, is the 32-byte key for SSE-C; it is sent on
	// every put, get and head. SSE must then be empty.
	SSECustomerKey []byte

	StorageClass string

	// PartSize is the multipart part size and the size of each part buffer.
	PartSize int64
	// PartsInFlight bounds the part buffers one Put holds (>= 1).
	PartsInFlight int
	// Buffers supplies part buffers of at least PartSize bytes. When nil the
	// Storage keeps its own pool of MaxBuffers buffers, allocated on first
	// use and reused.
	Buffers Buffers
	// MaxBuffers sizes the Storage's own pool (ignored with Buffers).
	MaxBuffers int

	// MaxRetries is the number of retries after a failed attempt; 0 means
	// DefaultMaxRetries and a negative value means no retries.
	MaxRetries int
	// Backoff bounds for throttling errors (503 SlowDown, 429, ...).
	MinThrottlingRetryDelay time.Duration
	MaxThrottlingRetryDelay time.Duration

	UseListObjectsV1 bool
	// RequestHeaders are added to every request.
	RequestHeaders map[string]string

	// Logger receives warnings (e.g. a failed abort of a multipart upload);
	// slog.Default() when nil.
	Logger *slog.Logger
}

// SettingNames lists the canonical setting names OptionsFromSettings reads.
// The configuration layer maps WAL-G's aliases onto them (S3_X, WALE_S3_X ->
// WALG_S3_X; AWS_ACCESS_KEY -> AWS_ACCESS_KEY_ID; AWS_SECRET_KEY ->
// AWS_SECRET_ACCESS_KEY).
func SettingNames() []string {
	return []string{
		"WALG_S3_PREFIX",
		"AWS_REGION",
		"AWS_DEFAULT_REGION",
		"AWS_ENDPOINT",
		"AWS_S3_FORCE_PATH_STYLE",
		"WALG_S3_CA_CERT_FILE",
		"AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN",
		"AWS_PROFILE",
		"AWS_ROLE_ARN",
		"AWS_ROLE_SESSION_NAME",
		"AWS_WEB_IDENTITY_TOKEN_FILE",
		"WALG_S3_SSE",
		"WALG_S3_SSE_KMS_ID",
		"WALG_S3_SSE_C",
		"WALG_S3_STORAGE_CLASS",
		"WALG_S3_MAX_PART_SIZE",
		"WALG_S3_MAX_RETRIES",
		"WALG_S3_USE_LIST_OBJECTS_V1",
		"WALG_S3_REQUEST_ADDITIONAL_HEADERS",
		"WALG_S3_MIN_THROTTLING_RETRY_DELAY",
		"WALG_S3_MAX_THROTTLING_RETRY_DELAY",
	}
}

// OptionsFromSettings builds Options from canonical setting names (see
// SettingNames):
//
//	WALG_S3_PREFIX                      s3://bucket/path (required)
//	AWS_REGION, AWS_DEFAULT_REGION      region (first set wins)
//	AWS_ENDPOINT                        custom endpoint URL
//	AWS_S3_FORCE_PATH_STYLE             bool
//	WALG_S3_CA_CERT_FILE                extra trusted CA bundle (WAL-G: S3_CA_CERT_FILE)
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//	AWS_PROFILE                         shared config profile
//	AWS_ROLE_ARN, AWS_ROLE_SESSION_NAME role to assume; not assumed explicitly
//	                                    when AWS_WEB_IDENTITY_TOKEN_FILE is set (the
//	                                    SDK chain assumes it with the web identity)
//	WALG_S3_SSE                         AES256 | aws:kms
//	WALG_S3_SSE_KMS_ID                  required with aws:kms, refused otherwise
//	WALG_S3_SSE_C                       SSE-C key: applies only with WALG_S3_SSE=AES256,
//	                                    as in WAL-G; 32 raw bytes (WAL-G's form) or
//	                                    their base64
//	WALG_S3_STORAGE_CLASS               default STANDARD
//	WALG_S3_MAX_PART_SIZE               bytes, default 20 MiB, 5 MiB..5 GiB
//	WALG_S3_MAX_RETRIES                 default 15
//	WALG_S3_USE_LIST_OBJECTS_V1         bool
//	WALG_S3_REQUEST_ADDITIONAL_HEADERS  JSON object {"Name":"value"} or list of such objects
//	WALG_S3_MIN_THROTTLING_RETRY_DELAY  milliseconds, default 500
//	WALG_S3_MAX_THROTTLING_RETRY_DELAY  milliseconds, default 300000
//
// Buffer settings (PartsInFlight, Buffers, MaxBuffers) are left for the
// caller to fill in.
func OptionsFromSettings(get func(name string) (string, bool)) (Options, error) {
	val := func(name string) string {
		v, ok := get(name)
		if !ok {
			return ""
		}
		return strings.TrimSpace(v)
	}
	var o Options
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %w", name, err)) }

	prefix := val("WALG_S3_PREFIX")
	if prefix == "" {
		return o, errors.New("WALG_S3_PREFIX is not set")
	}
	bucket, path, err := ParsePrefix(prefix)
	if err != nil {
		return o, fmt.Errorf("WALG_S3_PREFIX: %w", err)
	}
	o.Bucket, o.Prefix = bucket, path

	o.Region = val("AWS_REGION")
	if o.Region == "" {
		o.Region = val("AWS_DEFAULT_REGION")
	}
	o.Endpoint = val("AWS_ENDPOINT")
	if v := val("AWS_S3_FORCE_PATH_STYLE"); v != "" {
		if o.ForcePathStyle, err = strconv.ParseBool(v); err != nil {
			bad("AWS_S3_FORCE_PATH_STYLE", err)
		}
	}
	o.CACertFile = val("WALG_S3_CA_CERT_FILE")
	o.AccessKeyID = val("AWS_ACCESS_KEY_ID")
	o.SecretAccessKey = val("AWS_SECRET_ACCESS_KEY")
	o.SessionToken = val("AWS_SESSION_TOKEN")
	o.Profile = val("AWS_PROFILE")
	if val("AWS_WEB_IDENTITY_TOKEN_FILE") == "" {
		o.RoleARN = val("AWS_ROLE_ARN")
		o.RoleSessionName = val("AWS_ROLE_SESSION_NAME")
	}

	sse, kmsID, ssec := val("WALG_S3_SSE"), val("WALG_S3_SSE_KMS_ID"), val("WALG_S3_SSE_C")
	switch {
	case sse == "aws:kms" && kmsID == "":
		bad("WALG_S3_SSE_KMS_ID", errors.New("must be set when WALG_S3_SSE is aws:kms"))
	case sse != "aws:kms" && kmsID != "":
		bad("WALG_S3_SSE_KMS_ID", errors.New("is only valid with WALG_S3_SSE=aws:kms"))
	}
	switch {
	case ssec != "" && sse == "AES256":
		key, err := DecodeSSECustomerKey(ssec)
		if err != nil {
			bad("WALG_S3_SSE_C", err)
		}
		o.SSECustomerKey = key
	case ssec != "" && sse == "":
		// WAL-G ignores the key without WALG_S3_SSE, so its objects under
		// such a configuration are not SSE-C encrypted; using the key would
		// make them unreadable.
		slog.Warn("WALG_S3_SSE_C is ignored because WALG_S3_SSE is not set to AES256 (as WAL-G does)")
	case ssec != "":
		bad("WALG_S3_SSE_C", fmt.Errorf("needs WALG_S3_SSE=AES256, not %q", sse))
	default:
		o.SSE, o.SSEKMSKeyID = sse, kmsID
	}
	if sse != "" && sse != "AES256" && sse != "aws:kms" {
		bad("WALG_S3_SSE", fmt.Errorf("%q is neither AES256 nor aws:kms", sse))
	}

	o.StorageClass = val("WALG_S3_STORAGE_CLASS")
	if v := val("WALG_S3_MAX_PART_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil:
			bad("WALG_S3_MAX_PART_SIZE", err)
		case n < MinPartSize || n > MaxPartSize:
			bad("WALG_S3_MAX_PART_SIZE", fmt.Errorf("%d is outside S3's part size limits [%d, %d]", n, MinPartSize, MaxPartSize))
		default:
			o.PartSize = n
		}
	} else {
		o.PartSize = DefaultPartSize
	}
	o.MaxRetries = DefaultMaxRetries
	if v := val("WALG_S3_MAX_RETRIES"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			bad("WALG_S3_MAX_RETRIES", err)
		case n < 0:
			bad("WALG_S3_MAX_RETRIES", fmt.Errorf("%d is negative", n))
		case n == 0:
			o.MaxRetries = -1 // Options' spelling of "no retries"
		default:
			o.MaxRetries = n
		}
	}
	if v := val("WALG_S3_USE_LIST_OBJECTS_V1"); v != "" {
		if o.UseListObjectsV1, err = strconv.ParseBool(v); err != nil {
			bad("WALG_S3_USE_LIST_OBJECTS_V1", err)
		}
	}
	if v := val("WALG_S3_REQUEST_ADDITIONAL_HEADERS"); v != "" {
		if o.RequestHeaders, err = ParseHeaders(v); err != nil {
			bad("WALG_S3_REQUEST_ADDITIONAL_HEADERS", err)
		}
	}
	ms := func(name string, def time.Duration) time.Duration {
		v := val(name)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			bad(name, fmt.Errorf("%q is not a number of milliseconds", v))
			return def
		}
		return time.Duration(n) * time.Millisecond
	}
	o.MinThrottlingRetryDelay = ms("WALG_S3_MIN_THROTTLING_RETRY_DELAY", DefaultMinThrottlingRetryDelay)
	o.MaxThrottlingRetryDelay = ms("WALG_S3_MAX_THROTTLING_RETRY_DELAY", DefaultMaxThrottlingRetryDelay)
	return o, errors.Join(errs...)
}

// ParsePrefix splits "s3://bucket/path/to" into bucket and path ("path/to",
// without surrounding slashes).
func ParsePrefix(prefix string) (bucket, path string, err error) {
	u, err := url.Parse(prefix)
	if err != nil {
		return "", "", fmt.Errorf("parse %q: %w", prefix, err)
	}
	if u.Scheme != "s3" {
		return "", "", fmt.Errorf("%q: want s3://bucket/path", prefix)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("%q: no bucket name", prefix)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// DecodeSSECustomerKey accepts the 32-byte key itself (how WAL-G reads
// S3_SSE_C) or its standard base64 encoding.
func DecodeSSECustomerKey(s string) ([]byte, error) {
	if len(s) == 32 {
		return []byte(s), nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, fmt.Errorf("SSE-C key must be 32 bytes (or their base64), got %d characters", len(s))
}

// ParseHeaders reads additional request headers: a JSON object of name to
// value, or a JSON list of such objects.
func ParseHeaders(s string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err == nil {
		return m, nil
	}
	var list []map[string]string
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, fmt.Errorf("want a JSON object of header names to values, or a list of such objects: %w", err)
	}
	m = make(map[string]string)
	for _, h := range list {
		for k, v := range h {
			m[k] = v
		}
	}
	return m, nil
}

// sseCustomerHeaders returns the base64 key and key MD5 for SSE-C headers.
func sseCustomerHeaders(key []byte) (b64Key, b64MD5 string) {
	sum := md5.Sum(key)
	return base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(sum[:])
}

// withDefaults fills zero fields and validates the rest.
func (o Options) withDefaults() (Options, error) {
	o.Prefix = strings.Trim(o.Prefix, "/")
	if o.Bucket == "" {
		return o, errors.New("no bucket")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < 0 || o.PartSize > MaxPartSize {
		return o, fmt.Errorf("part size %d outside (0, %d]", o.PartSize, int64(MaxPartSize))
	}
	if o.PartsInFlight == 0 {
		o.PartsInFlight = DefaultPartsInFlight
		if o.Traits().SignsPayload {
			o.PartsInFlight = DefaultPartsInFlightSigned
		}
	}
	if o.PartsInFlight < 1 {
		return o, fmt.Errorf("parts in flight %d < 1", o.PartsInFlight)
	}
	if o.MaxBuffers == 0 {
		o.MaxBuffers = max(DefaultMaxBuffers, o.PartsInFlight)
	}
	if o.MaxBuffers < 1 {
		return o, fmt.Errorf("max buffers %d < 1", o.MaxBuffers)
	}
	if o.StorageClass == "" {
		o.StorageClass = DefaultStorageClass
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	}
	if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.MinThrottlingRetryDelay == 0 {
		o.MinThrottlingRetryDelay = DefaultMinThrottlingRetryDelay
	}
	if o.MaxThrottlingRetryDelay == 0 {
		o.MaxThrottlingRetryDelay = DefaultMaxThrottlingRetryDelay
	}
	if o.MaxThrottlingRetryDelay < o.MinThrottlingRetryDelay {
		o.MaxThrottlingRetryDelay = o.MinThrottlingRetryDelay
	}
	switch o.SSE {
	case "", "AES256", "aws:kms":
	default:
		return o, fmt.Errorf("server-side encryption %q is neither AES256 nor aws:kms", o.SSE)
	}
	if (o.SSE == "aws:kms") != (o.SSEKMSKeyID != "") {
		return o, errors.New("a KMS key id is required with aws:kms and only with it")
	}
	if o.SSECustomerKey != nil {
		if len(o.SSECustomerKey) != 32 {
			return o, fmt.Errorf("SSE-C key has %d bytes, want 32", len(o.SSECustomerKey))
		}
		if o.SSE != "" {
			return o, errors.New("SSE-C cannot be combined with SSE-S3 or SSE-KMS")
		}
	}
	if o.Endpoint != "" && !strings.Contains(o.Endpoint, "://") {
		o.Endpoint = "https://" + o.Endpoint
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

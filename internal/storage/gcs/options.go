package gcs

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults. WAL-G's, except the chunk size: WAL-G buffers 50 MiB per upload
// (16 MiB is the client library's own default); tusk buffers only bodies of
// unknown length, in one chunk of DefaultChunkSize.
const (
	DefaultContextTimeout = time.Hour
	DefaultMaxRetries     = 16
	DefaultChunkSize      = 8 << 20

	// ChunkAlign is the resumable upload protocol's chunk granularity:
	// chunk sizes are multiples of it.
	ChunkAlign = 256 << 10
	// MaxChunkSize bounds GCS_MAX_CHUNK_SIZE: more buys nothing but memory.
	MaxChunkSize = 1 << 30
	// csekSize is the length of a customer-supplied AES-256 key.
	csekSize = 32
)

// Options configure a Storage. Zero values mean the defaults above.
type Options struct {
	Bucket string
	// Prefix is the object name prefix inside the bucket, used as given
	// (see ParsePrefix); a '/' is put between it and each key.
	Prefix string
	// CredentialsFile is a Google credentials JSON file
	// (GOOGLE_APPLICATION_CREDENTIALS): a service account key or gcloud's
	// user credentials. When empty, gcloud's application-default file
	// applies, else the metadata server (see creds.go).
	CredentialsFile string
	// EmulatorHost (STORAGE_EMULATOR_HOST) is an emulator's host:port, or
	// a URL: requests go there, over plain HTTP unless the URL says
	// otherwise, without credentials, as with Google's client libraries.
	EmulatorHost string
	// EncryptionKey is a customer-supplied AES-256 key (CSEK, 32 bytes)
	// sent with every object request.
	EncryptionKey []byte
	// ChunkSize is what an upload of a body of unknown length (or one that
	// cannot seek) buffers, rounded up to a multiple of ChunkAlign.
	ChunkSize int
	// MaxRetries is the number of retries after a failed request; 0 means
	// DefaultMaxRetries, negative means none.
	MaxRetries int
	// ContextTimeout bounds each Put, Stat, List and Delete.
	ContextTimeout time.Duration

	// endpoint replaces https://storage.googleapis.com, credentials
	// still applying, and metadataURL the metadata server's token URL
	// (tests of the authentication).
	endpoint, metadataURL string
}

// SettingNames lists the setting names OptionsFromSettings reads. The
// configuration layer maps WAL-G's WALG_/WALE_ spellings of the GCS_*
// settings onto them.
func SettingNames() []string {
	return []string{
		"WALG_GS_PREFIX",
		"GOOGLE_APPLICATION_CREDENTIALS",
		"GCS_CONTEXT_TIMEOUT",
		"GCS_NORMALIZE_PREFIX",
		"GCS_ENCRYPTION_KEY",
		"GCS_MAX_CHUNK_SIZE",
		"GCS_MAX_RETRIES",
		"STORAGE_EMULATOR_HOST",
	}
}

// OptionsFromSettings builds Options from settings named as in SettingNames:
//
//	WALG_GS_PREFIX                  gs://bucket/path (required)
//	GOOGLE_APPLICATION_CREDENTIALS  credentials JSON file
//	GCS_CONTEXT_TIMEOUT             seconds per operation, default 3600
//	GCS_NORMALIZE_PREFIX            bool, default true: false keeps the
//	                                prefix's extra slashes (WAL-E archives)
//	GCS_ENCRYPTION_KEY              CSEK: base64 of 32 bytes
//	GCS_MAX_CHUNK_SIZE              bytes buffered by an upload of unknown
//	                                length, default 8 MiB (WAL-G: 50 MiB)
//	GCS_MAX_RETRIES                 retries of a failed request, default 16
//	STORAGE_EMULATOR_HOST           emulator host:port, no credentials
//
// Every problem is reported, one per line, starting with the setting's
// name; no value of a secret is printed.
func OptionsFromSettings(get func(name string) (string, bool)) (Options, error) {
	val := func(name string) string {
		v, _ := get(name)
		return strings.TrimSpace(v)
	}
	var o Options
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %w", name, err)) }

	normalize := true
	if v := val("GCS_NORMALIZE_PREFIX"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("GCS_NORMALIZE_PREFIX", fmt.Errorf("%q is not a boolean", v))
		}
		normalize = b || err != nil
	}
	prefix := val("WALG_GS_PREFIX")
	if prefix == "" {
		return o, errors.New("WALG_GS_PREFIX is not set")
	}
	bucket, path, err := ParsePrefix(prefix, normalize)
	if err != nil {
		bad("WALG_GS_PREFIX", err)
	}
	o.Bucket, o.Prefix = bucket, path
	o.CredentialsFile = val("GOOGLE_APPLICATION_CREDENTIALS")
	o.EmulatorHost = val("STORAGE_EMULATOR_HOST")

	if v := val("GCS_CONTEXT_TIMEOUT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			bad("GCS_CONTEXT_TIMEOUT", fmt.Errorf("%q is not a positive number of seconds", v))
		} else {
			o.ContextTimeout = time.Duration(n) * time.Second
		}
	}
	if v, ok := get("GCS_ENCRYPTION_KEY"); ok && v != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		switch {
		case err != nil:
			bad("GCS_ENCRYPTION_KEY", errors.New("not standard base64"))
		case len(key) != csekSize:
			bad("GCS_ENCRYPTION_KEY", fmt.Errorf("decodes to %d bytes, a customer-supplied key has %d", len(key), csekSize))
		default:
			o.EncryptionKey = key
		}
	}
	if v := val("GCS_MAX_CHUNK_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n > MaxChunkSize {
			bad("GCS_MAX_CHUNK_SIZE", fmt.Errorf("%q is not a size in bytes in (0, %d]", v, MaxChunkSize))
		} else {
			o.ChunkSize = int(n)
		}
	}
	if v := val("GCS_MAX_RETRIES"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0:
			bad("GCS_MAX_RETRIES", fmt.Errorf("%q is not a count >= 0", v))
		case n == 0:
			o.MaxRetries = -1
		default:
			o.MaxRetries = n
		}
	}
	return o, errors.Join(errs...)
}

// ParsePrefix splits gs://bucket/path. With normalize (WAL-G's default) the
// path loses its leading and trailing slashes; without, only the one
// slash after the bucket goes, so "gs://b//x/" keeps the object names of
// WAL-E, which wrote "/x/..." there.
func ParsePrefix(prefix string, normalize bool) (bucket, path string, err error) {
	u, err := url.Parse(prefix)
	if err != nil {
		return "", "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "gs" {
		return "", "", errors.New("want gs://bucket/path")
	}
	if u.Host == "" {
		return "", "", errors.New("no bucket name in gs://bucket/path")
	}
	if normalize {
		return u.Host, strings.Trim(u.Path, "/"), nil
	}
	return u.Host, strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/"), nil
}

// withDefaults fills zero fields and validates the rest.
func (o Options) withDefaults() (Options, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize < 0 || o.ChunkSize > MaxChunkSize {
		return o, fmt.Errorf("chunk size %d outside (0, %d]", o.ChunkSize, MaxChunkSize)
	}
	o.ChunkSize = alignChunk(int64(o.ChunkSize))
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	}
	if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.ContextTimeout <= 0 {
		o.ContextTimeout = DefaultContextTimeout
	}
	if o.EncryptionKey != nil && len(o.EncryptionKey) != csekSize {
		return o, fmt.Errorf("encryption key of %d bytes, want %d", len(o.EncryptionKey), csekSize)
	}
	// Checked last: Memory uses the sizes above even without a bucket.
	if o.Bucket == "" {
		return o, errors.New("no bucket")
	}
	return o, nil
}

// alignChunk rounds n up to a multiple of ChunkAlign, as the library would.
func alignChunk(n int64) int {
	return int((max(n, 1) + ChunkAlign - 1) / ChunkAlign * ChunkAlign)
}

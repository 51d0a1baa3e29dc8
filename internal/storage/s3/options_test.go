package s3

import (
	"context"
	"encoding/json"
	"reflect"

	"errors"
	"github.com/aws/aws-sdk-go-v2/aws"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

func TestOptionsFromSettingsDefaults(t *testing.T) {
	o, err := OptionsFromSettings(lookup(map[string]string{"WALG_S3_PREFIX": "s3://bucket/path/to/"}))
	if err != nil {
		t.Fatal(err)
	}
	if o.Bucket != "bucket" || o.Prefix != "path/to" {
		t.Fatalf("bucket %q prefix %q", o.Bucket, o.Prefix)
	}
	if o.PartSize != 20<<20 || o.MaxRetries != 15 || o.MinThrottlingRetryDelay != 500*time.Millisecond ||
		o.MaxThrottlingRetryDelay != 300*time.Second || o.ForcePathStyle || o.UseListObjectsV1 {
		t.Fatalf("defaults: %+v", o)
	}
	full, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if full.StorageClass != "STANDARD" || full.PartsInFlight != 1 || full.MaxBuffers != 4 {
		t.Fatalf("withDefaults: %+v", full)
	}
	// Over plain HTTP a part is hashed before it is sent: two in flight.
	o.Endpoint = "http://minio:9000"
	if full, _ := o.withDefaults(); full.PartsInFlight != 2 {
		t.Fatalf("withDefaults over HTTP: %d parts in flight", full.PartsInFlight)
	}
}

func TestOptionsFromSettingsAll(t *testing.T) {
	settings := map[string]string{
		"WALG_S3_PREFIX":                     "s3://b",
		"AWS_REGION":                         "eu-west-1",
		"AWS_DEFAULT_REGION":                 "ignored",
		"AWS_ENDPOINT":                       "minio:9000",
		"AWS_S3_FORCE_PATH_STYLE":            "true",
		"WALG_S3_CA_CERT_FILE":               "/ca.pem",
		"AWS_ACCESS_KEY_ID":                  "ak",
		"AWS_SECRET_ACCESS_KEY":              "sk",
		"AWS_SESSION_TOKEN":                  "tok",
		"AWS_PROFILE":                        "prof",
		"AWS_ROLE_ARN":                       "arn:aws:iam::1:role/r",
		"AWS_ROLE_SESSION_NAME":              "sess",
		"WALG_S3_SSE":                        "aws:kms",
		"WALG_S3_SSE_KMS_ID":                 "kms-1",
		"WALG_S3_STORAGE_CLASS":              "STANDARD_IA",
		"WALG_S3_MAX_PART_SIZE":              "8388608",
		"WALG_S3_MAX_RETRIES":                "3",
		"WALG_S3_USE_LIST_OBJECTS_V1":        "1",
		"WALG_S3_REQUEST_ADDITIONAL_HEADERS": `{"X-A":"1"}`,
		"WALG_S3_MIN_THROTTLING_RETRY_DELAY": "100",
		"WALG_S3_MAX_THROTTLING_RETRY_DELAY": "2000\n",
	}
	o, err := OptionsFromSettings(lookup(settings))
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		Bucket: "b", Region: "eu-west-1", Endpoint: "minio:9000", ForcePathStyle: true, CACertFile: "/ca.pem",
		AccessKeyID: "ak", SecretAccessKey: "sk", SessionToken: "tok", Profile: "prof",
		RoleARN: "arn:aws:iam::1:role/r", RoleSessionName: "sess", SSE: "aws:kms", SSEKMSKeyID: "kms-1",
		StorageClass: "STANDARD_IA", PartSize: 8 << 20, MaxRetries: 3, UseListObjectsV1: true,
		MinThrottlingRetryDelay: 100 * time.Millisecond, MaxThrottlingRetryDelay: 2 * time.Second,
	}
	if !maps.Equal(o.RequestHeaders, map[string]string{"X-A": "1"}) {
		t.Fatalf("headers %v", o.RequestHeaders)
	}
	o.RequestHeaders = nil
	if !optionsEqual(o, want) {
		t.Fatalf("got  %+v\nwant %+v", o, want)
	}
	full, err := o.withDefaults()
	if err != nil || full.Endpoint != "https://minio:9000" {
		t.Fatalf("endpoint without scheme: %q %v", full.Endpoint, err)
	}

	// The web identity chain assumes the role itself.
	settings["AWS_WEB_IDENTITY_TOKEN_FILE"] = "/token"
	if o, _ := OptionsFromSettings(lookup(settings)); o.RoleARN != "" {
		t.Fatalf("RoleARN %q with a web identity token", o.RoleARN)
	}
	// Zero retries means none.
	settings["WALG_S3_MAX_RETRIES"] = "0"
	o, _ = OptionsFromSettings(lookup(settings))
	if full, _ := o.withDefaults(); full.MaxRetries != 0 {
		t.Fatalf("MaxRetries %d for WALG_S3_MAX_RETRIES=0", full.MaxRetries)
	}
}

func optionsEqual(a, b Options) bool {
	a.Logger, b.Logger = nil, nil
	a.RequestHeaders, b.RequestHeaders = nil, nil
	return reflect.DeepEqual(a, b)
}

func TestOptionsFromSettingsSSEC(t *testing.T) {
	raw := "0123456789abcdef0123456789abcdef"
	o, err := OptionsFromSettings(lookup(map[string]string{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE": "AES256", "WALG_S3_SSE_C": raw}))
	if err != nil || string(o.SSECustomerKey) != raw || o.SSE != "" {
		t.Fatalf("raw key: %q sse %q %v", o.SSECustomerKey, o.SSE, err)
	}
	b64 := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	o, err = OptionsFromSettings(lookup(map[string]string{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE": "AES256", "WALG_S3_SSE_C": b64}))
	if err != nil || string(o.SSECustomerKey) != raw {
		t.Fatalf("base64 key: %q %v", o.SSECustomerKey, err)
	}
	// Without WALG_S3_SSE the key is ignored, as WAL-G does.
	o, err = OptionsFromSettings(lookup(map[string]string{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE_C": raw}))
	if err != nil || o.SSECustomerKey != nil {
		t.Fatalf("key without SSE: %q %v", o.SSECustomerKey, err)
	}
	// Plain SSE-S3.
	o, err = OptionsFromSettings(lookup(map[string]string{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE": "AES256"}))
	if err != nil || o.SSE != "AES256" || o.SSECustomerKey != nil {
		t.Fatalf("SSE-S3: %+v %v", o, err)
	}
}

func TestOptionsFromSettingsErrors(t *testing.T) {
	bad := []map[string]string{
		{},
		{"WALG_S3_PREFIX": "gs://b/p"},
		{"WALG_S3_PREFIX": "s3:///p"},
		{"WALG_S3_PREFIX": "s3://b", "AWS_S3_FORCE_PATH_STYLE": "maybe"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_MAX_PART_SIZE": "1024"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_MAX_PART_SIZE": "20MB"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_MAX_RETRIES": "-1"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE": "aws:kms"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE_KMS_ID": "k"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE": "DES"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE": "AES256", "WALG_S3_SSE_C": "short"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_SSE": "aws:kms", "WALG_S3_SSE_KMS_ID": "k", "WALG_S3_SSE_C": "0123456789abcdef0123456789abcdef"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_REQUEST_ADDITIONAL_HEADERS": "X: y"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_MIN_THROTTLING_RETRY_DELAY": "1s"},
		{"WALG_S3_PREFIX": "s3://b", "WALG_S3_USE_LIST_OBJECTS_V1": "yes"},
	}
	for _, m := range bad {
		if _, err := OptionsFromSettings(lookup(m)); err == nil {
			t.Errorf("%v: no error", m)
		}
	}
	// Errors name the setting.
	_, err := OptionsFromSettings(lookup(map[string]string{"WALG_S3_PREFIX": "s3://b", "WALG_S3_MAX_RETRIES": "x"}))
	if err == nil || !strings.Contains(err.Error(), "WALG_S3_MAX_RETRIES") {
		t.Fatalf("error %v does not name the setting", err)
	}
}

// Every name OptionsFromSettings asks for is catalogued in SettingNames, and
// every catalogued name is asked for.
func TestSettingNamesComplete(t *testing.T) {
	asked := map[string]bool{}
	_, _ = OptionsFromSettings(func(name string) (string, bool) {
		asked[name] = true
		switch name {
		case "WALG_S3_PREFIX":
			return "s3://b", true
		case "WALG_S3_SSE", "WALG_S3_SSE_C":
			return "", false
		}
		return "", false
	})
	got := slices.Sorted(maps.Keys(asked))
	want := slices.Sorted(slices.Values(SettingNames()))
	if !slices.Equal(got, want) {
		t.Fatalf("asked %q\ncatalogued %q", got, want)
	}
}

func TestParseHeaders(t *testing.T) {
	m, err := ParseHeaders(`[{"A":"1"},{"B":"2"}]`)
	if err != nil || !maps.Equal(m, map[string]string{"A": "1", "B": "2"}) {
		t.Fatalf("list form: %v %v", m, err)
	}
	if _, err := ParseHeaders(`{"A":1}`); err == nil {
		t.Fatal("non-string value accepted")
	}
}

func TestWithDefaultsValidation(t *testing.T) {
	bad := []Options{
		{},
		{Bucket: "b", PartSize: -1},
		{Bucket: "b", PartsInFlight: -1},
		{Bucket: "b", SSE: "x"},
		{Bucket: "b", SSE: "aws:kms"},
		{Bucket: "b", SSEKMSKeyID: "k"},
		{Bucket: "b", SSECustomerKey: []byte("short")},
		{Bucket: "b", SSE: "AES256", SSECustomerKey: make([]byte, 32)},
	}
	for _, o := range bad {
		if _, err := New(context.Background(), o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	if _, err := New(context.Background(), Options{Bucket: "b", Endpoint: "http://127.0.0.1:1", CACertFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("missing CA file: %v", err)
	}
}

func TestPool(t *testing.T) {
	p := newPool(10, 2)
	a, ok1 := p.TryGet()
	b, err := p.Get(context.Background())
	if !ok1 || err != nil || len(a) != 10 || len(b) != 10 {
		t.Fatalf("first two buffers: %v %v", ok1, err)
	}
	if _, ok := p.TryGet(); ok {
		t.Fatal("TryGet beyond the cap succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get beyond the cap: %v", err)
	}
	p.Put(a[:3])
	c, ok := p.TryGet()
	if !ok || len(c) != 10 || &c[0] != &a[0] {
		t.Fatal("returned buffer not reused at full length")
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{throttle: throttleAlways{}, minThrottle: 100 * time.Millisecond, maxThrottle: time.Second}
	for attempt, max := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 20 {
			d, _ := b.BackoffDelay(attempt, errors.New("x"))
			if d < max/2 || d > max {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, max/2, max)
			}
		}
	}
}

type throttleAlways struct{}

func (throttleAlways) IsErrorThrottle(error) aws.Ternary { return aws.TrueTernary }

func FuzzParseHeaders(f *testing.F) {
	f.Add(`{"A":"1"}`)
	f.Add(`[{"A":"1"},{"B":"2"}]`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseHeaders(s)
		if err != nil {
			return
		}
		// What was accepted survives a round trip through its JSON form.
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseHeaders(string(b))
		if err != nil || len(m2) != len(m) || !maps.Equal(m, m2) {
			t.Fatalf("round trip of %q: %v, %v", s, m2, err)
		}
	})
}

func FuzzParsePrefix(f *testing.F) {
	f.Add("s3://bucket/path")
	f.Add("s3://b")
	f.Add("s3:///x")
	f.Fuzz(func(t *testing.T, s string) {
		bucket, path, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if bucket == "" || strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") {
			t.Fatalf("ParsePrefix(%q) = %q, %q", s, bucket, path)
		}
	})
}

func FuzzDecodeSSECustomerKey(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef")
	f.Add("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := DecodeSSECustomerKey(s)
		if err == nil && len(k) != 32 {
			t.Fatalf("%d-byte key accepted", len(k))
		}
	})
}

// With static keys and a region (or an S3-compatible endpoint) the client is
// configured from the options alone, as WAL-G's SDK does without
// AWS_SDK_LOAD_CONFIG: a shared configuration file is not read (here one
// the SDK's loader refuses). Any other AWS_ variable sends it to the loader.
func TestStaticKeysSkipTheSharedConfig(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".aws", "config"), []byte("[default]\nca_bundle = "+filepath.Join(home, "missing.pem")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	o := Options{Bucket: "b", Endpoint: "https://s3.example.test", AccessKeyID: "ak", SecretAccessKey: "sk"}
	if _, err := New(context.Background(), o); err != nil {
		t.Fatalf("static keys and an endpoint: %v", err)
	}
	o.Endpoint, o.Region = "", "eu-west-1"
	if _, err := New(context.Background(), o); err != nil {
		t.Fatalf("static keys and a region: %v", err)
	}
	// A profile is the loader's: it reads the file, and fails on it.
	o.Profile = "default"
	if _, err := New(context.Background(), o); err == nil {
		t.Fatal("a profile did not load the shared configuration")
	}
	o.Profile = ""
	t.Setenv("AWS_CA_BUNDLE", filepath.Join(home, "missing.pem"))
	if _, err := New(context.Background(), o); err == nil {
		t.Fatal("AWS_CA_BUNDLE did not go to the SDK's loader")
	}
}

func TestDirectRegion(t *testing.T) {
	keys := Options{AccessKeyID: "ak", SecretAccessKey: "sk"}
	for _, c := range []struct {
		name   string
		mod    func(*Options)
		env    []string
		region string
		direct bool
	}{
		{"region", func(o *Options) { o.Region = "eu-west-1" }, []string{"AWS_REGION=eu-west-1", "PATH=/bin"}, "eu-west-1", true},
		{"compatible endpoint", func(o *Options) { o.Endpoint = "https://minio:9000" }, nil, "us-east-1", true},
		{"AWS endpoint, no region", func(o *Options) { o.Endpoint = "https://s3.amazonaws.com" }, nil, "", false},
		{"no region", func(o *Options) {}, nil, "", false},
		{"no keys", func(o *Options) { *o = Options{Region: "r"} }, nil, "", false},
		{"profile", func(o *Options) { o.Region, o.Profile = "r", "p" }, nil, "", false},
		{"role", func(o *Options) { o.Region, o.RoleARN = "r", "arn:x" }, nil, "", false},
		{"endpoint URL variable", func(o *Options) { o.Region = "r" }, []string{"AWS_ENDPOINT_URL_S3=https://x"}, "", false},
		{"FIPS", func(o *Options) { o.Region = "r" }, []string{"AWS_USE_FIPS_ENDPOINT=true"}, "", false},
	} {
		o := keys
		c.mod(&o)
		region, direct := directRegion(o, c.env)
		if region != c.region || direct != c.direct {
			t.Errorf("%s: %q %v, want %q %v", c.name, region, direct, c.region, c.direct)
		}
	}
}

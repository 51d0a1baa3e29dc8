package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/storage/all"
	"github.com/tusk-pg/tusk/internal/storage/multi"
	"github.com/tusk-pg/tusk/internal/storage/s3"
)

// loadAll is Load in a program linking every backend, as tusk does.
func loadAll(opts LoadOptions) (*Config, []string, error) {
	if opts.Backends == nil {
		opts.Backends = all.Registry()
	}
	return Load(opts)
}

func load(t *testing.T, opts LoadOptions) (*Config, []string, error) {
	t.Helper()
	return loadAll(opts)
}

func mustLoad(t *testing.T, opts LoadOptions) (*Config, []string) {
	t.Helper()
	c, w, err := loadAll(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c, w
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, w := mustLoad(t, LoadOptions{})
	if len(w) != 0 {
		t.Errorf("warnings with no input: %q", w)
	}
	checks := []struct {
		got, want any
		what      string
	}{
		{c.UploadConcurrency(), 16, "UploadConcurrency"},
		{c.DownloadConcurrency(), 10, "DownloadConcurrency"},
		{c.UploadDiskConcurrency(), 1, "UploadDiskConcurrency"},
		{c.UploadQueue(), 2, "UploadQueue"},
		{c.intValue("TOTAL_BG_UPLOADED_LIMIT"), 32, "TOTAL_BG_UPLOADED_LIMIT"},
		{c.intValue("WALG_DOWNLOAD_FILE_RETRIES"), 15, "WALG_DOWNLOAD_FILE_RETRIES"},
		{c.WalSegmentSize(), int64(16 << 20), "WalSegmentSize"},
		{c.Compression().Name(), "lz4", "Compression"},
		{c.LogLevel(), slog.LevelInfo, "LogLevel"},
		{c.LogFormat(), "text", "LogFormat"},
		{c.bytesValue("WALG_TAR_SIZE_THRESHOLD"), int64(0), "WALG_TAR_SIZE_THRESHOLD (backup applies its default)"},
		{c.boolValue("WALG_PREVENT_WAL_OVERWRITE"), false, "WALG_PREVENT_WAL_OVERWRITE"},
		{c.boolValue("WALG_S3_SKIP_VALIDATION"), true, "WALG_S3_SKIP_VALIDATION"},
		{c.bytesValue("WALG_S3_MAX_PART_SIZE"), int64(0), "WALG_S3_MAX_PART_SIZE (s3 applies its default)"},
		{c.intValue("WALG_S3_RETENTION_PERIOD"), -1, "WALG_S3_RETENTION_PERIOD"},
		{c.intValue("UPLOAD_CONCURRENCY"), 16, "UPLOAD_CONCURRENCY inherits WALG_UPLOAD_CONCURRENCY's default"},
		{c.durationValue("WALG_DAEMON_WAL_UPLOAD_TIMEOUT"), 60 * time.Second, "WALG_DAEMON_WAL_UPLOAD_TIMEOUT"},
		{c.durationValue("WALG_ALIVE_CHECK_INTERVAL"), time.Minute, "WALG_ALIVE_CHECK_INTERVAL"},
		{c.durationValue("WALG_STOP_BACKUP_TIMEOUT"), time.Duration(0), "WALG_STOP_BACKUP_TIMEOUT"},
		{c.durationValue("TUSK_FETCH_RETRY_TIMEOUT"), 5 * time.Minute, "TUSK_FETCH_RETRY_TIMEOUT"},
		{c.boolValue("TUSK_FETCH_ABORT_ON_STORAGE_ERROR"), false, "TUSK_FETCH_ABORT_ON_STORAGE_ERROR"},
		{c.value("PGAPPNAME"), "wal-g", "PGAPPNAME"},
		{c.value("WALG_SLOTNAME"), "walg", "WALG_SLOTNAME"},
		{c.value("WALG_LIBSODIUM_KEY_TRANSFORM"), "none", "WALG_LIBSODIUM_KEY_TRANSFORM"},
		{c.DiskRateLimit(), int64(0), "DiskRateLimit"},
		{c.Crypt(), crypt.Settings{LibsodiumKeyTransform: "none"}, "Crypt"},
		{c.ConfigFileUsed(), "", "ConfigFileUsed"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	if _, ok := c.get("WALG_S3_PREFIX"); ok {
		t.Error("WALG_S3_PREFIX reported set with no input")
	}
	if v, ok := c.get("WALG_UPLOAD_CONCURRENCY"); !ok || v != "16" {
		t.Errorf("Get(WALG_UPLOAD_CONCURRENCY) = %q, %v; want 16, true (defaults count)", v, ok)
	}
	if c.isSet("WALG_UPLOAD_CONCURRENCY") {
		t.Error("IsSet true for a default")
	}
	if _, _, err := c.StorageKind(); !errors.Is(err, ErrNoStorage) {
		t.Errorf("StorageKind with nothing set: %v, want ErrNoStorage", err)
	}
}

// TestCatalogue keeps the table coherent: every default passes its own
// validation, names are unique, and a key shared by two lookups is the
// canonical name of one of them.
func TestCatalogue(t *testing.T) {
	settings := Settings()
	names := map[string]bool{}
	for _, s := range settings {
		if names[s.Name] {
			t.Errorf("duplicate setting %s", s.Name)
		}
		names[s.Name] = true
		if !slices.Contains(s.Lookup, s.Name) {
			t.Errorf("%s: lookup %v does not contain the name", s.Name, s.Lookup)
		}
		if s.Default != "" && s.Status != Inactive && s.Kind != KindString {
			if msg := checkValue(s, s.Default); msg != "" {
				t.Errorf("%s: default %q %s", s.Name, s.Default, msg)
			}
		}
		if s.Status == NotYet && s.Feature == "" {
			t.Errorf("%s: NotYet without a feature name", s.Name)
		}
		if s.Kind == KindEnum && len(s.Values) == 0 {
			t.Errorf("%s: enum without values", s.Name)
		}
	}
	owner := map[string]string{}
	for _, s := range settings {
		for _, k := range s.Lookup {
			if prev, ok := owner[k]; ok && !names[k] {
				t.Errorf("key %s is an alias of both %s and %s", k, prev, s.Name)
			}
			owner[k] = s.Name
		}
	}
	for _, want := range []string{
		"WALG_S3_CA_CERT_FILE", "WALG_S3_SSE", "WALG_S3_SSE_KMS_ID", "WALG_S3_SSE_C", "WALG_S3_STORAGE_CLASS",
		"WALG_S3_MAX_PART_SIZE", "WALG_S3_MAX_RETRIES", "WALG_S3_USE_LIST_OBJECTS_V1",
		"WALG_S3_REQUEST_ADDITIONAL_HEADERS", "WALG_S3_MIN_THROTTLING_RETRY_DELAY",
		"WALG_S3_MAX_THROTTLING_RETRY_DELAY", "WALG_S3_LOG_LEVEL", "WALG_S3_RANGE_BATCH_ENABLED",
		"WALG_S3_RANGE_MAX_RETRIES", "WALG_S3_ENDPOINT_SOURCE", "WALG_S3_ENDPOINT_PORT",
		"WALG_S3_SKIP_VALIDATION", "WALG_S3_DISABLE_100_CONTINUE", "WALG_S3_ENABLE_VERSIONING",
		"WALG_S3_DELETE_BATCH_SIZE", "WALG_S3_RETENTION_PERIOD", "WALG_S3_RETENTION_MODE",
		"WALG_S3_USE_YC_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
		"AWS_CA_BUNDLE", "AWS_DEFAULT_REGION", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_ROLE_SESSION_NAME", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_ENDPOINT", "AWS_S3_FORCE_PATH_STYLE", "AWS_REGION", "WALG_LOG_LEVEL", "WALG_LOG_DESTINATION",
		"WALG_DAEMON_WAL_UPLOAD_TIMEOUT", "PGDATA", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD",
		"PGPASSFILE", "PGDATABASE", "PGSSLMODE", "PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT",
		"WALG_GS_PREFIX", "WALG_AZ_PREFIX", "WALG_SSH_PREFIX", "WALG_SWIFT_PREFIX", "WALG_OSS_PREFIX",
		"WALG_FILE_PREFIX", "WALG_S3_PREFIX", "WALG_STORAGE_PREFIX",
	} {
		if !names[want] {
			t.Errorf("catalogue lacks %s", want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	const key = "WALG_UPLOAD_CONCURRENCY"
	tests := []struct {
		name            string
		file, env, flag string
		want            string
	}{
		{"default", "", "", "", "16"},
		{"file", "3", "", "", "3"},
		{"env beats file", "3", "5", "", "5"},
		{"flag beats env and file", "3", "5", "7", "7"},
		{"flag beats file", "3", "", "7", "7"},
		{"empty env is unset", "3", "", "", "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := LoadOptions{Home: dir}
			if tt.file != "" {
				writeFile(t, dir, ".walg.json", `{"`+key+`": `+tt.file+`}`)
			}
			opts.Environ = []string{key + "=" + tt.env}
			if tt.flag != "" {
				opts.Flags = map[string]string{key: tt.flag}
			}
			c, _ := mustLoad(t, opts)
			if got := c.value(key); got != tt.want {
				t.Errorf("%s = %q, want %q", key, got, tt.want)
			}
			if got := c.isSet(key); got != (tt.want != "16") {
				t.Errorf("IsSet = %v", got)
			}
		})
	}
}

func TestFileFormats(t *testing.T) {
	tests := []struct{ name, body string }{
		{".walg.json", `{"WALG_UPLOAD_CONCURRENCY": 4, "walg_s3_prefix": "s3://b/p", "WALG_PREVENT_WAL_OVERWRITE": true, "WALG_SENTINEL_USER_DATA": "{\"a\":1}"}`},
		{".walg.yaml", "WALG_UPLOAD_CONCURRENCY: 4\nwalg_s3_prefix: s3://b/p\nWALG_PREVENT_WAL_OVERWRITE: true\nWALG_SENTINEL_USER_DATA: '{\"a\":1}'\n"},
		{".walg.yml", "WALG_UPLOAD_CONCURRENCY: 4\nwalg_s3_prefix: \"s3://b/p\"\nWALG_PREVENT_WAL_OVERWRITE: true\nWALG_SENTINEL_USER_DATA: '{\"a\":1}'\n"},
		{".walg.toml", "WALG_UPLOAD_CONCURRENCY = 4\nwalg_s3_prefix = \"s3://b/p\"\nWALG_PREVENT_WAL_OVERWRITE = true\nWALG_SENTINEL_USER_DATA = '{\"a\":1}'\n"},
		{".walg.env", "WALG_UPLOAD_CONCURRENCY=4\nwalg_s3_prefix=s3://b/p\nWALG_PREVENT_WAL_OVERWRITE=true\nWALG_SENTINEL_USER_DATA='{\"a\":1}'\n"},
		{".walg.dotenv", "WALG_UPLOAD_CONCURRENCY=4\nexport walg_s3_prefix=s3://b/p\nWALG_PREVENT_WAL_OVERWRITE=true\nWALG_SENTINEL_USER_DATA='{\"a\":1}'\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, dir, tt.name, tt.body)
			c, w := mustLoad(t, LoadOptions{Home: dir})
			if len(w) != 0 {
				t.Errorf("warnings: %q", w)
			}
			if c.ConfigFileUsed() != p {
				t.Errorf("ConfigFileUsed = %q, want %q", c.ConfigFileUsed(), p)
			}
			if c.UploadConcurrency() != 4 {
				t.Errorf("WALG_UPLOAD_CONCURRENCY = %d, want 4", c.UploadConcurrency())
			}
			if !c.boolValue("WALG_PREVENT_WAL_OVERWRITE") {
				t.Error("WALG_PREVENT_WAL_OVERWRITE not true")
			}
			if got := c.value("WALG_SENTINEL_USER_DATA"); got != `{"a":1}` {
				t.Errorf("WALG_SENTINEL_USER_DATA = %q", got)
			}
			kind, prefix, err := c.StorageKind()
			if err != nil || kind != StorageS3 || prefix != "s3://b/p" {
				t.Errorf("StorageKind = %q, %q, %v", kind, prefix, err)
			}
		})
	}
}

func TestConfigFileLocation(t *testing.T) {
	home := t.TempDir()
	other := t.TempDir()
	writeFile(t, home, ".walg.json", `{"WALG_UPLOAD_CONCURRENCY": "2"}`)
	writeFile(t, home, ".walg.yaml", "WALG_UPLOAD_CONCURRENCY: 3\n")
	viaEnv := writeFile(t, other, "env.toml", "WALG_UPLOAD_CONCURRENCY = 5\n")
	viaFlag := writeFile(t, other, "flag.yaml", "WALG_UPLOAD_CONCURRENCY: 6\n")

	tests := []struct {
		name     string
		opts     LoadOptions
		want     int
		wantFile string
	}{
		{"home json beats home yaml (viper order)", LoadOptions{Home: home}, 2, filepath.Join(home, ".walg.json")},
		{"WALG_CONFIG_PATH beats home", LoadOptions{Home: home, Environ: []string{"WALG_CONFIG_PATH=" + viaEnv}}, 5, viaEnv},
		{"--config beats WALG_CONFIG_PATH", LoadOptions{Home: home, ConfigFile: viaFlag, Environ: []string{"WALG_CONFIG_PATH=" + viaEnv}}, 6, viaFlag},
		{"no home, no file", LoadOptions{}, 16, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoad(t, tt.opts)
			if c.UploadConcurrency() != tt.want || c.ConfigFileUsed() != tt.wantFile {
				t.Errorf("got %d from %q, want %d from %q", c.UploadConcurrency(), c.ConfigFileUsed(), tt.want, tt.wantFile)
			}
		})
	}
}

func TestHomeFileProblemsOnlyWarn(t *testing.T) {
	t.Run("unparsable json", func(t *testing.T) {
		home := t.TempDir()
		p := writeFile(t, home, ".walg.json", `{"WALG_UPLOAD_CONCURRENCY": `)
		c, w := mustLoad(t, LoadOptions{Home: home})
		if c.UploadConcurrency() != 16 || len(w) != 1 || !strings.Contains(w[0], p) {
			t.Errorf("concurrency %d, warnings %q", c.UploadConcurrency(), w)
		}
	})
	t.Run("unsupported ini is found first and ignored, as in WAL-G", func(t *testing.T) {
		home := t.TempDir()
		p := writeFile(t, home, ".walg.ini", "WALG_UPLOAD_CONCURRENCY=3\n")
		c, w := mustLoad(t, LoadOptions{Home: home})
		if c.UploadConcurrency() != 16 || len(w) != 1 || !strings.Contains(w[0], p) || !strings.Contains(w[0], "unsupported") {
			t.Errorf("concurrency %d, warnings %q", c.UploadConcurrency(), w)
		}
	})
	t.Run("directory is skipped", func(t *testing.T) {
		home := t.TempDir()
		if err := os.Mkdir(filepath.Join(home, ".walg.json"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, home, ".walg.yaml", "WALG_UPLOAD_CONCURRENCY: 3\n")
		c, w := mustLoad(t, LoadOptions{Home: home})
		if c.UploadConcurrency() != 3 || len(w) != 0 {
			t.Errorf("concurrency %d, warnings %q", c.UploadConcurrency(), w)
		}
	})
}

func TestExplicitFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.json", `{"WALG_S3_PREFIX": `)
	ini := writeFile(t, dir, "cfg.ini", "WALG_S3_PREFIX=s3://b\n")
	noext := writeFile(t, dir, "walg-config", `{"WALG_S3_PREFIX": "s3://b"}`)
	missing := filepath.Join(dir, "missing.json")
	for _, tt := range []struct {
		name string
		opts LoadOptions
		path string
	}{
		{"missing --config", LoadOptions{ConfigFile: missing}, missing},
		{"missing WALG_CONFIG_PATH", LoadOptions{Environ: []string{"WALG_CONFIG_PATH=" + missing}}, missing},
		{"unparsable", LoadOptions{ConfigFile: bad}, bad},
		{"unsupported format", LoadOptions{ConfigFile: ini}, ini},
		{"no extension", LoadOptions{ConfigFile: noext}, noext},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("err = %v, want one naming %s", err, tt.path)
			}
		})
	}
}

func TestAliases(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		file     string // JSON body of $HOME/.walg.json
		setting  string
		want     string
		wantWarn string
	}{
		{"exact S3 key first", []string{"S3_SSE=a", "WALG_S3_SSE=b", "WALE_S3_SSE=c"}, "", "WALG_S3_SSE", "a", "S3_SSE, WALG_S3_SSE and WALE_S3_SSE are set with different values; using S3_SSE"},
		{"WALG_ before WALE_", []string{"WALG_S3_SSE=b", "WALE_S3_SSE=c"}, "", "WALG_S3_SSE", "b", "WALG_S3_SSE and WALE_S3_SSE"},
		{"WALE_ alone", []string{"WALE_S3_CA_CERT_FILE=/ca"}, "", "WALG_S3_CA_CERT_FILE", "/ca", ""},
		{"exact key in file beats WALG_ in env", []string{"WALG_S3_STORAGE_CLASS=GLACIER"}, `{"S3_STORAGE_CLASS":"STANDARD_IA"}`, "WALG_S3_STORAGE_CLASS", "STANDARD_IA", "S3_STORAGE_CLASS and WALG_S3_STORAGE_CLASS"},
		{"same value, no warning", []string{"S3_SSE=a", "WALG_S3_SSE=a"}, "", "WALG_S3_SSE", "a", ""},
		{"WALE_S3_PREFIX", []string{"WALE_S3_PREFIX=s3://w/e"}, "", "WALG_S3_PREFIX", "s3://w/e", ""},
		{"WALG_S3_PREFIX before WALE_S3_PREFIX", []string{"WALE_S3_PREFIX=s3://w/e", "WALG_S3_PREFIX=s3://w/g"}, "", "WALG_S3_PREFIX", "s3://w/g", "WALG_S3_PREFIX and WALE_S3_PREFIX"},
		{"WALE_FILE_PREFIX", []string{"WALE_FILE_PREFIX=/b"}, "", "WALG_FILE_PREFIX", "/b", ""},
		{"AWS_ACCESS_KEY", []string{"AWS_ACCESS_KEY=AK"}, "", "AWS_ACCESS_KEY_ID", "AK", ""},
		{"AWS_ACCESS_KEY_ID first", []string{"AWS_ACCESS_KEY=AK", "AWS_ACCESS_KEY_ID=ID"}, "", "AWS_ACCESS_KEY_ID", "ID", "AWS_ACCESS_KEY_ID and AWS_ACCESS_KEY"},
		{"AWS_SECRET_KEY", []string{"AWS_SECRET_KEY=SK"}, "", "AWS_SECRET_ACCESS_KEY", "SK", ""},
		{"WALG_AWS_REGION", []string{"WALG_AWS_REGION=eu-west-3"}, "", "AWS_REGION", "eu-west-3", ""},
		{"UPLOAD_CONCURRENCY from WALG_UPLOAD_CONCURRENCY", []string{"WALG_UPLOAD_CONCURRENCY=3"}, "", "UPLOAD_CONCURRENCY", "3", ""},
		{"bare UPLOAD_CONCURRENCY wins, no conflict warning", []string{"WALG_UPLOAD_CONCURRENCY=3", "UPLOAD_CONCURRENCY=8"}, "", "UPLOAD_CONCURRENCY", "8", ""},
		{"GPG_KEY_ID spellings", []string{"WALE_GPG_KEY_ID=x"}, "", "WALG_GPG_KEY_ID", "x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file != "" {
				writeFile(t, dir, ".walg.json", tt.file)
			}
			c, w, err := load(t, LoadOptions{Environ: tt.env, Home: dir})
			if err != nil && tt.setting != "WALG_GPG_KEY_ID" {
				t.Fatal(err)
			}
			if tt.setting == "WALG_GPG_KEY_ID" {
				if err == nil || !strings.Contains(err.Error(), "WALE_GPG_KEY_ID") {
					t.Fatalf("err = %v, want refusal naming WALE_GPG_KEY_ID", err)
				}
				return
			}
			if got := c.value(tt.setting); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.setting, got, tt.want)
			}
			var conflict []string
			for _, x := range w {
				if strings.Contains(x, "different values") {
					conflict = append(conflict, x)
				}
			}
			switch {
			case tt.wantWarn == "" && len(conflict) > 0:
				t.Errorf("unexpected warnings %q", conflict)
			case tt.wantWarn != "" && (len(conflict) != 1 || !strings.Contains(conflict[0], tt.wantWarn)):
				t.Errorf("warnings %q, want one containing %q", conflict, tt.wantWarn)
			}
		})
	}
}

func TestLookupAcceptsWALGSpellings(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{Environ: []string{"WALE_S3_SSE=aws:kms", "AWS_SECRET_KEY=s"}})
	for key, want := range map[string]string{
		"S3_SSE": "aws:kms", "WALG_S3_SSE": "aws:kms", "WALE_S3_SSE": "aws:kms",
		"AWS_SECRET_KEY": "s", "AWS_SECRET_ACCESS_KEY": "s",
		"UPLOAD_CONCURRENCY": "16", "WALG_UPLOAD_CONCURRENCY": "16",
	} {
		if got, ok := c.lookup(key); !ok || got != want {
			t.Errorf("Lookup(%s) = %q, %v; want %q", key, got, ok, want)
		}
	}
	if _, ok := c.lookup("NOPE"); ok {
		t.Error("Lookup of an unknown key reported set")
	}
	// Get takes canonical names only.
	if _, ok := c.get("S3_SSE"); ok {
		t.Error("Get accepted an alias")
	}
	var fn func(string) (string, bool) = c.lookup
	if v, _ := fn("WALG_S3_SSE"); v != "aws:kms" {
		t.Errorf("method value = %q", v)
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		env  string
		want string // substring; must also name the variable
	}{
		{"WALG_UPLOAD_CONCURRENCY=abc", `WALG_UPLOAD_CONCURRENCY: "abc" is not a positive integer`},
		{"WALG_UPLOAD_CONCURRENCY=0", `WALG_UPLOAD_CONCURRENCY: "0" is not a positive integer`},
		{"WALG_DOWNLOAD_CONCURRENCY=-1", `WALG_DOWNLOAD_CONCURRENCY: "-1" is not a positive integer`},
		{"WALG_UPLOAD_DISK_CONCURRENCY=0", `WALG_UPLOAD_DISK_CONCURRENCY: "0" is not a positive integer`},
		{"WALG_UPLOAD_QUEUE=0", `WALG_UPLOAD_QUEUE: "0" is not a positive integer`},
		{"WALG_DOWNLOAD_FILE_RETRIES=-2", `WALG_DOWNLOAD_FILE_RETRIES: "-2" is not a non-negative integer`},
		{"TOTAL_BG_UPLOADED_LIMIT=x", `TOTAL_BG_UPLOADED_LIMIT: "x" is not an integer`},
		{"WALG_COMPRESSION_METHOD=lz5", `WALG_COMPRESSION_METHOD: "lz5" is not one of lz4, lzma, zstd, brotli, none`},
		{"WALG_COMPRESSION_METHOD=LZ4", `WALG_COMPRESSION_METHOD: "LZ4" is not one of`},
		{"WALG_PREVENT_WAL_OVERWRITE=yes", `WALG_PREVENT_WAL_OVERWRITE: "yes" is not a boolean`},
		{"PG_READY_RENAME=on", `PG_READY_RENAME: "on" is not a boolean`},
		{"WALG_DAEMON_WAL_UPLOAD_TIMEOUT=60", `WALG_DAEMON_WAL_UPLOAD_TIMEOUT: "60" is not a duration`},
		{"TUSK_FETCH_RETRY_TIMEOUT=soon", `TUSK_FETCH_RETRY_TIMEOUT: "soon" is not a duration`},
		{"WALG_PG_WAL_SIZE=15", `WALG_PG_WAL_SIZE: "15" is not a power of two between 1 and 1024`},
		{"WALG_PG_WAL_SIZE=2048", `WALG_PG_WAL_SIZE: "2048" is not a power of two`},
		{"WALG_PG_WAL_SIZE=0", `WALG_PG_WAL_SIZE: "0" is not a positive integer`},
		{"WALG_PG_BLOCK_SIZE=65536", `WALG_PG_BLOCK_SIZE: "65536" is not a power of two`},
		{"WALG_LIBSODIUM_KEY_TRANSFORM=b64", `WALG_LIBSODIUM_KEY_TRANSFORM: "b64" is not one of none, hex, base64`},
		{"WALG_LOG_LEVEL=VERBOSE", `WALG_LOG_LEVEL: "VERBOSE" is not one of NORMAL, DEVEL, ERROR`},
		{"WALG_LOG_LEVEL=devel", `WALG_LOG_LEVEL: "devel" is not one of`},
		{"WALG_UPLOAD_WAL_METADATA=ALL", `WALG_UPLOAD_WAL_METADATA: "ALL" is not one of NOMETADATA, INDIVIDUAL, BULK`},
		{"WALG_DELTA_ORIGIN=FIRST", `WALG_DELTA_ORIGIN: "FIRST" is not one of LATEST, LATEST_FULL`},
		{"WALG_ZSTD_LEVEL=ultra", `WALG_ZSTD_LEVEL: "ultra" is not one of fastest, default, better, best`},
		{"WALG_DISK_RATE_LIMIT=1mb", `WALG_DISK_RATE_LIMIT: "1mb" is not a number of bytes`},
		{"WALG_NETWORK_RATE_LIMIT=-5", `WALG_NETWORK_RATE_LIMIT: "-5" is not a number of bytes`},
		{"WALG_TAR_SIZE_THRESHOLD=0", `WALG_TAR_SIZE_THRESHOLD: "0" is not a number of bytes`},
		{"WALG_SENTINEL_USER_DATA={bad", `WALG_SENTINEL_USER_DATA: "{bad" is not valid JSON`},
		{"WALG_SLOTNAME=my-slot", `WALG_SLOTNAME: "my-slot" is not a valid replication slot name`},
		{"WALG_S3_PREFIX=bucket/path", `WALG_S3_PREFIX: "bucket/path" is not a storage URL`},
		{"WALE_S3_PREFIX=s3:///nohost", `WALE_S3_PREFIX: "s3:///nohost" is not a storage URL`},
		{"S3_MAX_PART_SIZE=20MB", `S3_MAX_PART_SIZE: "20MB" is not a number of bytes`},
		{"WALG_S3_ENABLE_VERSIONING=true", `WALG_S3_ENABLE_VERSIONING: "true" is not one of enabled, disabled`},
		{"AWS_S3_FORCE_PATH_STYLE=sure", `AWS_S3_FORCE_PATH_STYLE: "sure" is not a boolean`},
		{"UPLOAD_CONCURRENCY=0", `UPLOAD_CONCURRENCY: "0" is not a positive integer`},
		{"GOMAXPROCS=many", `GOMAXPROCS: "many" is not a non-negative integer`},
		{"TUSK_FETCH_ABORT_ON_STORAGE_ERROR=maybe", `TUSK_FETCH_ABORT_ON_STORAGE_ERROR: "maybe" is not a boolean`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			_, _, err := load(t, LoadOptions{Environ: []string{tt.env}})
			if err == nil {
				t.Fatal("Load accepted it")
			}
			name, _, _ := strings.Cut(tt.env, "=")
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), name) {
				t.Errorf("err = %q, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("one bad variable gave several lines: %q", err)
			}
		})
	}
}

func TestValidationDetails(t *testing.T) {
	t.Run("several problems, one line each", func(t *testing.T) {
		_, _, err := load(t, LoadOptions{Environ: []string{"WALG_UPLOAD_CONCURRENCY=x", "WALG_LOG_LEVEL=loud"}})
		if err == nil || len(strings.Split(err.Error(), "\n")) != 2 {
			t.Fatalf("err = %q", err)
		}
	})
	t.Run("file source named", func(t *testing.T) {
		dir := t.TempDir()
		p := writeFile(t, dir, "c.yaml", "WALG_DOWNLOAD_CONCURRENCY: zero\n")
		_, _, err := load(t, LoadOptions{ConfigFile: p})
		if err == nil || !strings.Contains(err.Error(), "WALG_DOWNLOAD_CONCURRENCY") || !strings.Contains(err.Error(), p) {
			t.Fatalf("err = %q", err)
		}
	})
	t.Run("flag source named", func(t *testing.T) {
		_, _, err := load(t, LoadOptions{Flags: map[string]string{"WALG_PG_WAL_SIZE": "3"}})
		if err == nil || !strings.Contains(err.Error(), "--walg-pg-wal-size") {
			t.Fatalf("err = %q", err)
		}
	})
	t.Run("secret values are not echoed", func(t *testing.T) {
		_, _, err := load(t, LoadOptions{Environ: []string{"WALG_FAILOVER_STORAGES=topsecret"}})
		if err == nil || strings.Contains(err.Error(), "topsecret") {
			t.Fatalf("err = %q", err)
		}
	})
	t.Run("list where a value is expected", func(t *testing.T) {
		dir := t.TempDir()
		p := writeFile(t, dir, "c.yaml", "WALG_S3_PREFIX:\n  - s3://a\n  - s3://b\n")
		_, _, err := load(t, LoadOptions{ConfigFile: p})
		if err == nil || !strings.Contains(err.Error(), "WALG_S3_PREFIX: expected a single value") {
			t.Fatalf("err = %q", err)
		}
	})
	t.Run("zstd level only with zstd", func(t *testing.T) {
		_, _, err := load(t, LoadOptions{Environ: []string{"WALG_ZSTD_LEVEL=best"}})
		if err == nil || !strings.Contains(err.Error(), "WALG_ZSTD_LEVEL") || !strings.Contains(err.Error(), `"lz4"`) {
			t.Fatalf("err = %q", err)
		}
		c, _ := mustLoad(t, LoadOptions{Environ: []string{"WALG_ZSTD_LEVEL=Best", "WALG_COMPRESSION_METHOD=zstd"}})
		if z, ok := c.Compression().(interface{ Level() codec.ZstdLevel }); !ok || z.Level() != codec.ZstdBest {
			t.Errorf("Compression = %v", c.Compression())
		}
	})
	t.Run("plain and envelope PGP together", func(t *testing.T) {
		_, _, err := load(t, LoadOptions{Environ: []string{"WALG_PGP_KEY_PATH=/k", "WALG_ENVELOPE_PGP_KEY_PATH=/e"}})
		if err == nil || !strings.Contains(err.Error(), "WALG_PGP_KEY_PATH and WALG_ENVELOPE_PGP_KEY_PATH are both set") {
			t.Fatalf("err = %q", err)
		}
	})
	t.Run("trailing CR LF trimmed", func(t *testing.T) {
		c, _ := mustLoad(t, LoadOptions{Environ: []string{"WALG_UPLOAD_CONCURRENCY=3\r\n", "WALG_S3_PREFIX=s3://b/p\n"}})
		if c.UploadConcurrency() != 3 || c.value("WALG_S3_PREFIX") != "s3://b/p" {
			t.Errorf("got %d, %q", c.UploadConcurrency(), c.value("WALG_S3_PREFIX"))
		}
	})
	t.Run("unknown flag key", func(t *testing.T) {
		_, _, err := load(t, LoadOptions{Flags: map[string]string{"WALG_NOPE": "1"}})
		if err == nil || !strings.Contains(err.Error(), "WALG_NOPE") {
			t.Fatalf("err = %q", err)
		}
	})
	t.Run("inactive values are not validated", func(t *testing.T) {
		mustLoad(t, LoadOptions{Environ: []string{"OSS_CONNECT_TIMEOUT=soon", "WALG_STREAM_SPLITTER_PARTITIONS=x"}})
	})
}

func TestUnknownWarnings(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, ".walg.json", `{"WALG_DOWNLOAD_CONCURENCY": 3, "S3_PREFIXX": "x"}`)
	_, w := mustLoad(t, LoadOptions{Home: dir, Environ: []string{
		"WALG_UPLOAD_CONCURENCY=3", "TUSK_TOTALLY_DIFFERENT_THING=1", "WALE_S3_PREFIXX=s3://a",
		"HOME=/root", "PATH=/bin", "MY_WALG_THING=1",
	}})
	want := []string{
		"TUSK_TOTALLY_DIFFERENT_THING is unknown",
		"WALE_S3_PREFIXX is unknown (did you mean WALE_S3_PREFIX?)",
		"WALG_UPLOAD_CONCURENCY is unknown (did you mean WALG_UPLOAD_CONCURRENCY?)",
		"S3_PREFIXX in config file " + p + " is unknown",
		"WALG_DOWNLOAD_CONCURENCY in config file " + p + " is unknown (did you mean WALG_DOWNLOAD_CONCURRENCY?)",
	}
	if !slices.Equal(w, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(w, "\n"), strings.Join(want, "\n"))
	}
}

func TestNotYet(t *testing.T) {
	refused := []string{
		"WALG_GPG_KEY_ID=k", "WALE_GPG_KEY_ID=k", "GPG_KEY_ID=k",
		"WALG_ENVELOPE_PGP_KEY=k", "WALG_ENVELOPE_PGP_KEY_PATH=/k",
		"YC_CSE_KMS_KEY_ID=id", "YC_SERVICE_ACCOUNT_KEY_FILE=/f",
		"WALG_USE_WAL_DELTA=true", "WALG_FORCE_WAL_DELTA=1",
		"WALG_S3_ENDPOINT_SOURCE=http://x", "S3_RETENTION_PERIOD=86400",
		"WALG_SWIFT_PREFIX=swift://c/p", "WALG_OSS_PREFIX=oss://b/p", "WALE_SWIFT_PREFIX=swift://c/p",
	}
	for _, kv := range refused {
		t.Run(kv, func(t *testing.T) {
			_, _, err := load(t, LoadOptions{Environ: []string{kv}})
			name, _, _ := strings.Cut(kv, "=")
			if err == nil || !strings.HasPrefix(err.Error(), name+" is set") || !strings.Contains(err.Error(), "refusing") {
				t.Fatalf("err = %v", err)
			}
		})
	}
	inert := []string{"WALG_USE_WAL_DELTA=false", "WALG_FORCE_WAL_DELTA=0", "WALG_TARGET_STORAGE=default",
		"WALG_UPLOAD_WAL_METADATA=NOMETADATA", "WALG_USE_RATING_COMPOSER=false", "S3_SKIP_VALIDATION=1",
		"WALG_S3_RETENTION_PERIOD=-1",
		// Reaches UPLOAD_CONCURRENCY through WALG_UPLOAD_CONCURRENCY, which is honoured.
		"WALG_UPLOAD_CONCURRENCY=3"}
	for _, kv := range inert {
		t.Run(kv, func(t *testing.T) {
			_, w := mustLoad(t, LoadOptions{Environ: []string{kv}})
			if len(w) != 0 {
				t.Errorf("warnings %q", w)
			}
		})
	}
	benign := []string{"WALG_STATSD_ADDRESS=localhost:8125", "HTTP_LISTEN=:8080", "PROFILE_MODE=cpu",
		"WALG_UPLOAD_WAL_METADATA=INDIVIDUAL", "WALG_USE_COPY_COMPOSER=true", "WALG_DIRECT_IO=true",
		"WALE_S3_USE_YC_SESSION_TOKEN=true",
		"UPLOAD_CONCURRENCY=4", "S3_SKIP_VALIDATION=false", "AWS_DUAL_STACK=true", "WALG_S3_DELETE_BATCH_SIZE=100"}
	for _, kv := range benign {
		t.Run(kv, func(t *testing.T) {
			_, w := mustLoad(t, LoadOptions{Environ: []string{kv}})
			name, _, _ := strings.Cut(kv, "=")
			if len(w) != 1 || !strings.HasPrefix(w[0], name+" is recognised but not implemented by tusk yet") ||
				!strings.HasSuffix(w[0], "; ignored") {
				t.Errorf("warnings %q", w)
			}
		})
	}
}

func TestFailoverStorages(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "c.yaml", `WALG_FILE_PREFIX: /backups/main
WALG_STORAGE_PREFIX: sub
WALG_FAILOVER_STORAGES:
  Second:
    WALG_FILE_PREFIX: /backups/second
  first:
    AWS_ACCESS_KEY_ID: id
    AWS_SECRET_ACCESS_KEY: key
    WALE_S3_PREFIX: s3://bucket/p
    AWS_REGION: us-east-1
`)
	c, w := mustLoad(t, LoadOptions{ConfigFile: p, Environ: []string{"AWS_ENDPOINT=http://ignored"}})
	if len(w) != 0 {
		t.Errorf("warnings %q", w)
	}
	fo := c.FailoverStorages()
	if len(fo) != 2 || fo[0].Name != "first" || fo[1].Name != "second" {
		t.Fatalf("failovers %+v", fo)
	}
	// WALG_STORAGE_PREFIX applies to every storage.
	if fo[0].Storage.Root != "s3://bucket/p/sub" || fo[1].Storage.Root != "file:///backups/second/sub" {
		t.Errorf("roots %q %q", fo[0].Storage.Root, fo[1].Storage.Root)
	}
	if fo[0].Hash == "" || fo[0].Hash == fo[1].Hash || c.StorageHash() == fo[1].Hash {
		t.Errorf("hashes %q %q %q", c.StorageHash(), fo[0].Hash, fo[1].Hash)
	}
	o := c.FailoverOptions()
	if !o.Check || o.CheckSize != 1<<20 || o.CacheLifetime != 15*time.Minute || o.CheckTimeout != 30*time.Second ||
		o.EMA != multi.DefaultEMA() {
		t.Errorf("options %+v", o)
	}

	// Without failovers the checks are off unless asked for.
	c, _ = mustLoad(t, LoadOptions{Environ: []string{"WALG_FILE_PREFIX=/x", "WALG_FAILOVER_STORAGES_CHECK_SIZE=3kb"}})
	if o := c.FailoverOptions(); o.Check || o.CheckSize != 3<<10 {
		t.Errorf("options %+v", o)
	}

	// JSON in the environment works as in WAL-G.
	c, _ = mustLoad(t, LoadOptions{Environ: []string{"WALG_FILE_PREFIX=/x",
		`WALG_FAILOVER_STORAGES={"b":{"WALG_FILE_PREFIX":"/y"}}`, "WALG_FAILOVER_STORAGES_CHECK=false"}})
	if fo := c.FailoverStorages(); len(fo) != 1 || fo[0].Storage.Root != "file:///y" || c.FailoverOptions().Check {
		t.Errorf("from the environment: %+v", fo)
	}

	for body, want := range map[string]string{
		"WALG_FAILOVER_STORAGES:\n  default:\n    WALG_FILE_PREFIX: /a\n":               `storage "default": the name is reserved`,
		"WALG_FAILOVER_STORAGES:\n  b:\n    AWS_REGION: x\n":                            `storage "b": no storage configured`,
		"WALG_FAILOVER_STORAGES:\n  b:\n    WALG_S3_PREFIX: s3://b\n    S3_SSE: nope\n": `storage "b": S3_SSE`,
		"WALG_FAILOVER_STORAGES:\n  b: 3\n":                                             "WALG_FAILOVER_STORAGES: the value is not a map",
		"WALG_FAILOVER_STORAGES_CACHE_EMA_DEAD_LIMIT: 0.995\n":                          "ALIVE_LIMIT (0.99) must not be below",
		"WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_DEAD_MIN: 2\n":                          `WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_DEAD_MIN: "2" is not a number between 0 and 1`,
		"WALG_FAILOVER_STORAGES_CHECK_SIZE: 1tb\n":                                      `WALG_FAILOVER_STORAGES_CHECK_SIZE: "1tb" is not a size`,
	} {
		p := writeFile(t, t.TempDir(), "c.yaml", "WALG_FILE_PREFIX: /a\n"+body)
		_, _, err := load(t, LoadOptions{ConfigFile: p})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", body, err, want)
		}
	}
}

func TestStorageSelection(t *testing.T) {
	tests := []struct {
		name       string
		env        []string
		flags      map[string]string
		kind, pfx  string
		loadErr    string
		warnSubstr string
	}{
		{name: "s3", env: []string{"WALG_S3_PREFIX=s3://b/p"}, kind: StorageS3, pfx: "s3://b/p"},
		{name: "file", env: []string{"WALG_FILE_PREFIX=/var/backups"}, kind: StorageFile, pfx: "/var/backups"},
		{name: "wale file", env: []string{"WALE_FILE_PREFIX=file://localhost/var/b"}, kind: StorageFile, pfx: "file://localhost/var/b"},
		{name: "s3 before file", env: []string{"WALG_FILE_PREFIX=/x", "WALG_S3_PREFIX=s3://b"}, kind: StorageS3, pfx: "s3://b", warnSubstr: "WALG_FILE_PREFIX is ignored: WALG_S3_PREFIX is set"},
		{name: "s3 before gs: gs ignored", env: []string{"WALG_GS_PREFIX=gs://b", "WALG_S3_PREFIX=s3://b"}, kind: StorageS3, pfx: "s3://b", warnSubstr: "WALG_GS_PREFIX is ignored"},
		{name: "file before ssh", env: []string{"WALG_SSH_PREFIX=ssh://h/p", "WALE_FILE_PREFIX=/f"}, kind: StorageFile, pfx: "/f", warnSubstr: "WALG_SSH_PREFIX is ignored: WALE_FILE_PREFIX"},
		{name: "oss before s3: refused", env: []string{"WALG_OSS_PREFIX=oss://b", "WALG_S3_PREFIX=s3://b"}, loadErr: "WALG_OSS_PREFIX is set, but tusk does not support Alibaba OSS storage yet"},
		{name: "gs only", env: []string{"WALG_GS_PREFIX=gs://b"}, kind: StorageGS, pfx: "gs://b"},
		{name: "azure by flag", flags: map[string]string{"WALG_AZ_PREFIX": "azure://c", "AZURE_STORAGE_ACCOUNT": "a", "AZURE_STORAGE_ACCESS_KEY": "a2V5"}, kind: StorageAzure, pfx: "azure://c"},
		{name: "swift only: refused", env: []string{"WALG_SWIFT_PREFIX=swift://c"}, loadErr: "WALG_SWIFT_PREFIX is set, but tusk does not support"},
		{name: "azure without account", env: []string{"WALG_AZ_PREFIX=azure://c"}, loadErr: "AZURE_STORAGE_ACCOUNT: must be set"},
		{name: "storage prefix", env: []string{"WALG_S3_PREFIX=s3://b/p", "WALG_STORAGE_PREFIX=sub"}, kind: StorageS3, pfx: "s3://b/p/sub"},
		{name: "storage prefix slashes", env: []string{"WALG_S3_PREFIX=s3://b/p/", "WALG_STORAGE_PREFIX=/sub/dir/"}, kind: StorageS3, pfx: "s3://b/p/sub/dir"},
		{name: "storage prefix on bucket root", env: []string{"WALG_S3_PREFIX=s3://b"}, flags: map[string]string{"WALG_STORAGE_PREFIX": "x"}, kind: StorageS3, pfx: "s3://b/x"},
		{name: "storage prefix on file root", env: []string{"WALG_FILE_PREFIX=/", "WALG_STORAGE_PREFIX=x"}, kind: StorageFile, pfx: "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w, err := load(t, LoadOptions{Environ: tt.env, Flags: tt.flags})
			if tt.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.loadErr) {
					t.Fatalf("err = %v, want %q", err, tt.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			kind, pfx, err := c.StorageKind()
			if err != nil || kind != tt.kind || pfx != tt.pfx {
				t.Errorf("StorageKind = %q, %q, %v; want %q, %q", kind, pfx, err, tt.kind, tt.pfx)
			}
			if tt.warnSubstr != "" && !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, tt.warnSubstr) }) {
				t.Errorf("warnings %q lack %q", w, tt.warnSubstr)
			}
			if tt.warnSubstr == "" && len(w) != 0 {
				t.Errorf("unexpected warnings %q", w)
			}
		})
	}
	t.Run("none configured", func(t *testing.T) {
		c, _ := mustLoad(t, LoadOptions{Environ: []string{"WALG_STORAGE_PREFIX=x"}})
		_, _, err := c.StorageKind()
		if !errors.Is(err, ErrNoStorage) || !strings.Contains(err.Error(), "WALG_S3_PREFIX") || !strings.Contains(err.Error(), "WALG_FILE_PREFIX") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, ".walg.yaml", "AWS_SECRET_KEY: fromfile\nAWS_REGION: eu-west-1\nWALG_STATSD_EXTRA_TAGS:\n  a: b\n"+
		"WALG_UPLOAD_CONCURRENCY: 4\nAWS_EC2_METADATA_DISABLED: true\nOTHER_LIST: [1, 2]\n")
	c, _ := mustLoad(t, LoadOptions{Home: dir, Environ: []string{"PGHOST=db", "WALG_LOG_LEVEL=DEVEL"},
		Flags: map[string]string{"S3_SSE": "AES256"}})
	got := map[string]string{}
	var order []string
	c.Export(func(k, v string) { got[k] = v; order = append(order, k) })
	for k, want := range map[string]string{
		"AWS_SECRET_KEY": "fromfile", "AWS_REGION": "eu-west-1", "WALG_UPLOAD_CONCURRENCY": "4",
		"PGHOST": "db", "WALG_LOG_LEVEL": "DEVEL", "S3_SSE": "AES256",
		"PGAPPNAME": "wal-g", "WALG_COMPRESSION_METHOD": "lz4", "WALG_DOWNLOAD_CONCURRENCY": "10",
		"AWS_EC2_METADATA_DISABLED": "true", // unknown to tusk, exported as WAL-G does
	} {
		if got[k] != want {
			t.Errorf("exported %s = %q, want %q", k, got[k], want)
		}
	}
	for _, k := range []string{"WALG_STATSD_EXTRA_TAGS", "OTHER_LIST", "AWS_SECRET_ACCESS_KEY", "WALG_S3_SSE", "WALG_S3_PREFIX"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s exported", k)
		}
	}
	if !slices.IsSorted(order) {
		t.Error("export order not deterministic")
	}
}

func TestDump(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{Environ: []string{
		"AWS_SECRET_KEY=verysecret", "PGPASSWORD=pw", "WALE_S3_PREFIX=s3://b/p", "WALG_LIBSODIUM_KEY=k",
	}})
	d := strings.Join(c.Dump(), "\n")
	for _, secret := range []string{"verysecret", "=pw", "=k "} {
		if strings.Contains(d, secret) {
			t.Errorf("dump leaks %q:\n%s", secret, d)
		}
	}
	for _, want := range []string{
		"AWS_SECRET_ACCESS_KEY=--HIDDEN-- (env AWS_SECRET_KEY)",
		"PGPASSWORD=--HIDDEN-- (env)",
		"WALG_S3_PREFIX=s3://b/p (env WALE_S3_PREFIX)",
		"WALG_UPLOAD_CONCURRENCY=16 (default)",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
}

func TestFlagNames(t *testing.T) {
	f := FlagNames()
	for k, want := range map[string]string{
		"WALG_S3_PREFIX": "walg-s3-prefix", "WALE_S3_PREFIX": "wale-s3-prefix", "S3_SSE": "s3-sse",
		"WALG_STORAGE_PREFIX": "walg-storage-prefix", "AWS_ACCESS_KEY": "aws-access-key",
		"TUSK_FETCH_RETRY_TIMEOUT": "tusk-fetch-retry-timeout", "UPLOAD_CONCURRENCY": "upload-concurrency",
	} {
		if f[k] != want {
			t.Errorf("FlagNames()[%s] = %q, want %q", k, f[k], want)
		}
	}
	if _, ok := f["WALG_CONFIG_PATH"]; ok {
		t.Error("WALG_CONFIG_PATH has a flag")
	}
	// Every flag key is accepted by Load.
	flags := map[string]string{}
	for k := range f {
		flags[k] = ""
	}
	mustLoad(t, LoadOptions{Flags: flags})
}

func TestTurboAndEncryption(t *testing.T) {
	env := []string{"WALG_DISK_RATE_LIMIT=1048576", "WALG_NETWORK_RATE_LIMIT=2048", "GOMAXPROCS=2", "WALG_UPLOAD_DISK_CONCURRENCY=2"}
	c, _ := mustLoad(t, LoadOptions{Environ: env})
	if c.DiskRateLimit() != 1048576 || c.NetworkRateLimit() != 2048 || c.GoMaxProcs() != 2 || c.UploadDiskConcurrency() != 2 {
		t.Errorf("without turbo: %d %d %d %d", c.DiskRateLimit(), c.NetworkRateLimit(), c.GoMaxProcs(), c.UploadDiskConcurrency())
	}
	c, _ = mustLoad(t, LoadOptions{Environ: env, Turbo: true})
	if c.DiskRateLimit() != 0 || c.NetworkRateLimit() != 0 || c.GoMaxProcs() != 0 || c.UploadDiskConcurrency() != 4 || !c.Turbo() {
		t.Errorf("with turbo: %d %d %d %d", c.DiskRateLimit(), c.NetworkRateLimit(), c.GoMaxProcs(), c.UploadDiskConcurrency())
	}

	for _, tt := range []struct {
		env      []string
		want     crypt.Settings
		warnings int
	}{
		{[]string{"WALG_LIBSODIUM_KEY_PATH=/k"}, crypt.Settings{LibsodiumKeyPath: "/k", LibsodiumKeyTransform: "none"}, 0},
		{[]string{"WALG_PGP_KEY=-----BEGIN"}, crypt.Settings{PGPKey: "-----BEGIN", LibsodiumKeyTransform: "none"}, 0},
		{[]string{"WALG_PGP_KEY_PATH=/p", "WALG_LIBSODIUM_KEY=x"},
			crypt.Settings{PGPKeyPath: "/p", LibsodiumKey: "x", LibsodiumKeyTransform: "none"}, 1},
		{[]string{"WALG_CSE_KMS_ID=alias/k", "WALG_CSE_KMS_REGION=eu-west-2", "TUSK_KMS_ENDPOINT=http://127.0.0.1:1"},
			crypt.Settings{KMSKeyID: "alias/k", KMSRegion: "eu-west-2", KMSEndpoint: "http://127.0.0.1:1", LibsodiumKeyTransform: "none"}, 0},
		// WAL-G's precedence: OpenPGP over KMS over libsodium.
		{[]string{"WALG_CSE_KMS_ID=k", "WALG_LIBSODIUM_KEY_PATH=/k"},
			crypt.Settings{KMSKeyID: "k", LibsodiumKeyPath: "/k", LibsodiumKeyTransform: "none"}, 1},
		{[]string{"WALG_PGP_KEY_PATH=/p", "WALG_CSE_KMS_ID=k", "WALG_LIBSODIUM_KEY=x"},
			crypt.Settings{PGPKeyPath: "/p", KMSKeyID: "k", LibsodiumKey: "x", LibsodiumKeyTransform: "none"}, 2},
	} {
		c, w := mustLoad(t, LoadOptions{Environ: tt.env})
		if c.Crypt() != tt.want || len(w) != tt.warnings {
			t.Errorf("%v: Crypt = %+v, warnings %q", tt.env, c.Crypt(), w)
		}
	}
}

func TestAccessorMisuse(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{})
	for name, fn := range map[string]func(){
		"Int on bool":      func() { c.intValue("WALG_PREVENT_WAL_OVERWRITE") },
		"Bool on alias":    func() { c.boolValue("S3_SKIP_VALIDATION") },
		"Duration unknown": func() { c.durationValue("WALG_NOPE") },
		"Bytes on int":     func() { c.bytesValue("WALG_UPLOAD_CONCURRENCY") },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			fn()
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"WALG_UPLOAD_CONCURENCY", "WALG_UPLOAD_CONCURRENCY", 1}} {
		if got := editDistance(tt.a, tt.b); got != tt.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.d)
		}
	}
}

func TestFileValueTypes(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "c.toml", "WALG_TAR_SIZE_THRESHOLD = 1048576\nWALG_SENTINEL_USER_DATA = '{\"x\":1.5}'\n"+
		"WALG_DELTA_FROM_NAME = 1979-05-27T07:32:00Z\nWALG_S3_MAX_RETRIES = 3.0\nWALG_TAR_DISABLE_FSYNC = false\n")
	c, _ := mustLoad(t, LoadOptions{ConfigFile: p})
	if c.bytesValue("WALG_TAR_SIZE_THRESHOLD") != 1048576 || c.intValue("WALG_S3_MAX_RETRIES") != 3 ||
		c.value("WALG_DELTA_FROM_NAME") != "1979-05-27T07:32:00Z" || !c.isSet("WALG_TAR_DISABLE_FSYNC") {
		t.Errorf("got %v", c.Dump())
	}
	// An empty YAML value is unset, as viper's GetString gives "".
	p = writeFile(t, dir, "c.yaml", "WALG_S3_PREFIX:\nWALG_UPLOAD_CONCURRENCY: 1e1\n")
	c, _ = mustLoad(t, LoadOptions{ConfigFile: p})
	if c.isSet("WALG_S3_PREFIX") || c.UploadConcurrency() != 10 {
		t.Errorf("got %v", c.Dump())
	}
}

// TestS3SettingNames: every name the s3 package reads is a canonical,
// implemented setting, so s3.OptionsFromSettings never asks for a name Load did not
// resolve.
func TestS3SettingNames(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{})
	for _, name := range s3.SettingNames() {
		i, ok := c.index[name]
		if !ok || c.settings[i].Name != name || c.settings[i].Status != Implemented {
			t.Errorf("%s: not an implemented canonical setting", name)
		}
	}
}

func TestS3Options(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{Environ: []string{"WALE_S3_PREFIX=s3://b/p", "S3_STORAGE_CLASS=STANDARD_IA",
		"WALG_STORAGE_PREFIX=sub", "AWS_ACCESS_KEY=ak"}})
	setting, err := c.StorageSettings()
	if err != nil {
		t.Fatal(err)
	}
	o, err := s3.OptionsFromSettings(setting)
	if err != nil {
		t.Fatal(err)
	}
	if o.Bucket != "b" || o.Prefix != "p/sub" || o.StorageClass != "STANDARD_IA" || o.AccessKeyID != "ak" {
		t.Errorf("S3 options = %+v", o)
	}
	c, _ = mustLoad(t, LoadOptions{Environ: []string{"WALG_FILE_PREFIX=/x"}})
	if setting, err := c.StorageSettings(); err != nil {
		t.Error(err)
	} else if v, _ := setting("WALG_FILE_PREFIX"); v != "/x" {
		t.Errorf("file prefix %q", v)
	}
}

func TestSource(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "c.json", `{"WALG_UPLOAD_CONCURRENCY": "3", "S3_SSE": "AES256"}`)
	c, _ := mustLoad(t, LoadOptions{ConfigFile: p, Environ: []string{"WALG_DOWNLOAD_CONCURRENCY=4"},
		Flags: map[string]string{"WALG_UPLOAD_QUEUE": "5"}})
	for name, want := range map[string]Source{
		"WALG_UPLOAD_CONCURRENCY":   SourceFile,
		"WALG_S3_SSE":               SourceFile,
		"WALG_DOWNLOAD_CONCURRENCY": SourceEnv,
		"WALG_UPLOAD_QUEUE":         SourceFlag,
		"WALG_LOG_LEVEL":            SourceDefault,
		"WALG_S3_PREFIX":            SourceDefault,
	} {
		if got := c.Source(name); got != want {
			t.Errorf("Source(%s) = %v, want %v", name, got, want)
		}
	}
	// UPLOAD_CONCURRENCY (S3 multipart) falls back on WALG_UPLOAD_CONCURRENCY.
	want := []string{"UPLOAD_CONCURRENCY", "WALG_DOWNLOAD_CONCURRENCY", "WALG_S3_SSE", "WALG_UPLOAD_CONCURRENCY", "WALG_UPLOAD_QUEUE"}
	if got := c.Explicit(); !slices.Equal(got, want) {
		t.Errorf("Explicit = %q, want %q", got, want)
	}
}

// TestEveryAccessorResolves calls every argument-free accessor: one that
// names a setting the catalogue lacks, or of another kind, panics here
// rather than in a command.
func TestEveryAccessorResolves(t *testing.T) {
	c, _ := mustLoad(t, LoadOptions{Environ: []string{"WALG_FILE_PREFIX=/x"}})
	v := reflect.ValueOf(c)
	n := 0
	for i := range v.NumMethod() {
		m := v.Type().Method(i)
		if m.Type.NumIn() != 1 { // the receiver only
			continue
		}
		n++
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s panics: %v", m.Name, r)
				}
			}()
			v.Method(i).Call(nil)
		}()
	}
	if n < 30 {
		t.Errorf("only %d accessors found", n)
	}
}

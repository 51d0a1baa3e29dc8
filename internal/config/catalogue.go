package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/tusk-pg/tusk/internal/codec"
	"github.com/tusk-pg/tusk/internal/crypt"
)

// Kind says how a setting's value is parsed and validated.
type Kind int

const (
	KindString   Kind = iota // any text
	KindInt                  // decimal integer, optionally bounded
	KindBool                 // strconv.ParseBool, as WAL-G
	KindDuration             // time.ParseDuration, e.g. 30s, 5m
	KindBytes                // plain decimal number of bytes (WAL-G reads sizes with GetInt64)
	KindEnum                 // one of Values
	KindJSON                 // a JSON text (user data)
)

func (k Kind) String() string {
	switch k {
	case KindInt:
		return "int"
	case KindBool:
		return "bool"
	case KindDuration:
		return "duration"
	case KindBytes:
		return "bytes"
	case KindEnum:
		return "enum"
	case KindJSON:
		return "json"
	default:
		return "string"
	}
}

// Status says what tusk does with a setting.
type Status int

const (
	// Implemented settings are honoured by the package that consumes them.
	Implemented Status = iota
	// NotYet settings are WAL-G features tusk lacks. When the user sets one
	// (to a value other than its inert ones): Risky ones make Load fail,
	// because ignoring them could leak or lose data or break compatibility;
	// the others produce a warning and are ignored.
	NotYet
	// Inactive settings are known so they are not reported as unknown, but
	// have no effect, silently: options of storages other than the selected
	// one, WAL-G settings of other database flavours' code paths. Their
	// values are not validated.
	Inactive
)

func (s Status) String() string {
	switch s {
	case NotYet:
		return "not-yet"
	case Inactive:
		return "inactive"
	default:
		return "implemented"
	}
}

// Storage kinds returned by (*Config).StorageKind.
const (
	StorageOSS   = "oss"
	StorageS3    = "s3"
	StorageFile  = "file"
	StorageGS    = "gs"
	StorageAzure = "az"
	StorageSwift = "swift"
	StorageSSH   = "ssh"
)

// Setting describes one entry of the catalogue.
type Setting struct {
	// Name is the canonical name; Get and the typed accessors take it.
	Name string
	// Lookup lists the keys consulted, in WAL-G's order; the first one set
	// (by any source) wins. It always contains Name.
	Lookup []string
	// Default applies when no key of Lookup is set; "" means none.
	Default string
	Kind    Kind
	// Values are the accepted values of a KindEnum setting.
	Values []string
	// FoldCase makes enum matching case-insensitive.
	FoldCase bool
	// Secret values are shown as --HIDDEN-- in dumps and messages.
	Secret bool
	Status Status
	// Risky marks NotYet settings that make Load fail when set.
	Risky bool
	// Feature names the missing feature in NotYet messages.
	Feature string
	// Inert values of a NotYet setting mean "feature off" and are accepted.
	Inert []string
	// Storage is the storage kind a WALG_<T>_PREFIX setting selects.
	Storage string
	// NoFlag settings get no --x-y-z flag (WALG_CONFIG_PATH: --config exists).
	NoFlag bool
	// Complex settings may hold a map or list in a config file and are not
	// exported to the environment (WAL-G's complexSettings).
	Complex bool
	// Meaning is one line on what the setting does (Settings fills it
	// from meanings).
	Meaning string
	// NoEffect says why an Implemented setting, accepted and checked, has
	// no effect in tusk.
	NoEffect string
	// Why says why an Inactive setting has no effect.
	Why string

	min    int64
	hasMin bool
	check  func(v string) string // extra rule; returns the problem or ""
}

func str(name string) Setting { return Setting{Name: name, Lookup: []string{name}} }

func integer(name, def string, min int64) Setting {
	s := str(name)
	s.Kind, s.Default, s.min, s.hasMin = KindInt, def, min, true
	return s
}

func anyInt(name, def string) Setting {
	s := str(name)
	s.Kind, s.Default = KindInt, def
	return s
}

func boolean(name, def string) Setting {
	s := str(name)
	s.Kind, s.Default = KindBool, def
	return s
}

func duration(name, def string) Setting {
	s := str(name)
	s.Kind, s.Default = KindDuration, def
	return s
}

func size(name, def string, min int64) Setting {
	s := str(name)
	s.Kind, s.Default, s.min, s.hasMin = KindBytes, def, min, true
	return s
}

func enum(name, def string, values ...string) Setting {
	s := str(name)
	s.Kind, s.Default, s.Values = KindEnum, def, values
	return s
}

func jsonText(name string) Setting {
	s := str(name)
	s.Kind = KindJSON
	return s
}

func (s Setting) def(v string) Setting       { s.Default = v; return s }
func (s Setting) secret() Setting            { s.Secret = true; return s }
func (s Setting) foldCase() Setting          { s.FoldCase = true; return s }
func (s Setting) inert(v ...string) Setting  { s.Inert = v; return s }
func (s Setting) lookup(k ...string) Setting { s.Lookup = k; return s }
func (s Setting) complex() Setting           { s.Complex = true; return s }
func (s Setting) noFlag() Setting            { s.NoFlag = true; return s }
func (s Setting) inactive(why string) Setting {
	s.Status, s.Why = Inactive, why
	return s
}
func (s Setting) noEffect(why string) Setting { s.NoEffect = why; return s }
func (s Setting) rule(fn func(string) string) Setting {
	s.check = fn
	return s
}

// later marks a WAL-G feature tusk ignores with a warning.
func (s Setting) later(feature string) Setting {
	s.Status, s.Feature = NotYet, feature
	return s
}

// refuse marks a WAL-G feature tusk must not silently ignore.
func (s Setting) refuse(feature string) Setting {
	s.Status, s.Feature, s.Risky = NotYet, feature, true
	return s
}

// walCompat applies WAL-G's lookup for storage options and GPG_KEY_ID:
// the exact key, then WALG_<key>, then WALE_<key>
// (internal/storage_adapter.go loadSettings, GetWaleCompatibleSettingFrom).
func walCompat(key string) []string { return []string{key, "WALG_" + key, "WALE_" + key} }

// s3opt declares an S3 storage option. WAL-G reads S3 options by their bare
// key (S3_SSE) with WALG_/WALE_ fallbacks; tusk's canonical name is the
// WALG_S3_* spelling WAL-G documents, and AWS_* keys keep their own name.
func s3opt(key string, s Setting) Setting {
	name := key
	if len(key) > 3 && key[:3] == "S3_" {
		name = "WALG_" + key
	}
	s.Name, s.Lookup = name, walCompat(key)
	return s
}

// foreign declares an option of a storage tusk does not implement: known,
// silent, looked up like WAL-G's storage options.
func foreign(key string) Setting {
	s := str(key).inactive("an option of a storage tusk does not implement")
	s.Lookup = walCompat(key)
	return s
}

// prefix declares WALG_<T>_PREFIX, looked up as WALG_ then WALE_ (WAL-G does
// not consult a bare <T>_PREFIX). It is supported when tusk has a backend
// of its kind (implementedStorage).
func prefix(t, kind string) Setting {
	s := str("WALG_"+t+"_PREFIX").lookup("WALG_"+t+"_PREFIX", "WALE_"+t+"_PREFIX")
	s.Storage = kind
	if !implementedStorage(kind) {
		s.Status, s.Risky, s.Feature = NotYet, true, storageName(kind)+" storage"
	}
	return s
}

var slotName = regexp.MustCompile(`^[0-9A-Za-z_]+$`)

func powerOfTwo(lo, hi int64, unit string) func(string) string {
	return func(v string) string {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi || n&(n-1) != 0 {
			return fmt.Sprintf("is not a power of two between %d and %d%s", lo, hi, unit)
		}
		return ""
	}
}

// storageURL mirrors WAL-G's GetPathFromPrefix: scheme and host required.
func storageURL(example string) func(string) string {
	return func(v string) string {
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "is not a storage URL (expected " + example + ")"
		}
		return ""
	}
}

// storageName is the human name of a storage kind for messages.
func storageName(kind string) string {
	switch kind {
	case StorageOSS:
		return "Alibaba OSS"
	case StorageS3:
		return "S3"
	case StorageGS:
		return "Google Cloud"
	case StorageAzure:
		return "Azure"
	case StorageSwift:
		return "Swift"
	case StorageSSH:
		return "SSH"
	}
	return kind
}

// storageOrder is WAL-G's adapter order (internal/storage_adapter.go): the
// first configured prefix wins.
func storageOrder() []string {
	return []string{
		"WALG_OSS_PREFIX", "WALG_S3_PREFIX", "WALG_FILE_PREFIX", "WALG_GS_PREFIX",
		"WALG_AZ_PREFIX", "WALG_SWIFT_PREFIX", "WALG_SSH_PREFIX",
	}
}

// catalogue returns every setting tusk knows. Names, defaults and aliases
// follow WAL-G v3.0.9 (internal/config/config.go, pkg/storages/*/configure.go).
// It is built per call so that no package-level table can be mutated.
//
// A default that the consuming package applies to a zero value is not
// repeated here: the S3 options (s3.Default*), the tar size threshold
// (push.DefaultTarSizeThreshold). Lists of accepted values owned by a
// package come from it (codec.Methods, codec.ZstdLevels,
// crypt.KeyTransforms).
func catalogue() []Setting {
	return []Setting{
		// Core.
		enum("WALG_COMPRESSION_METHOD", codec.DefaultMethod, codec.Methods()...),
		enum("WALG_ZSTD_LEVEL", "", codec.ZstdLevels()...).foldCase(),
		integer("WALG_UPLOAD_CONCURRENCY", "16", 1),
		integer("WALG_DOWNLOAD_CONCURRENCY", "10", 1),
		integer("WALG_UPLOAD_DISK_CONCURRENCY", "1", 1),
		integer("WALG_UPLOAD_QUEUE", "2", 1),
		integer("WALG_DOWNLOAD_FILE_RETRIES", "15", 0),
		anyInt("TOTAL_BG_UPLOADED_LIMIT", "32"),
		boolean("WALG_PREVENT_WAL_OVERWRITE", "false"),
		enum("WALG_UPLOAD_WAL_METADATA", "NOMETADATA", "NOMETADATA", "INDIVIDUAL", "BULK").
			later("WAL metadata sidecars").inert("NOMETADATA"),
		integer("WALG_DELTA_MAX_STEPS", "0", 0),
		enum("WALG_DELTA_ORIGIN", "", "LATEST", "LATEST_FULL"),
		str("WALG_DELTA_FROM_NAME"),
		jsonText("WALG_DELTA_FROM_USER_DATA"),
		jsonText("WALG_SENTINEL_USER_DATA"),
		jsonText("WALG_FETCH_TARGET_USER_DATA"),
		size("WALG_TAR_SIZE_THRESHOLD", "", 1), // default: push.DefaultTarSizeThreshold
		boolean("WALG_TAR_DISABLE_FSYNC", "false"),
		boolean("WALG_USE_WAL_DELTA", "false").refuse("WAL-delta maps").inert("false"),
		boolean("WALG_FORCE_WAL_DELTA", "false").refuse("WAL-delta maps").inert("false"),
		boolean("WALG_USE_REVERSE_UNPACK", "false").noEffect("backup-fetch restores a delta chain oldest first, with the same result"),
		boolean("WALG_SKIP_REDUNDANT_TARS", "false").noEffect("it refines reverse unpack, which tusk does not use"),
		boolean("WALG_VERIFY_PAGE_CHECKSUMS", "false"),
		boolean("WALG_STORE_ALL_CORRUPT_BLOCKS", "false"),
		boolean("WALG_USE_RATING_COMPOSER", "false").later("the rating tar composer").inert("false"),
		boolean("WALG_USE_COPY_COMPOSER", "false").later("the copy tar composer").inert("false"),
		boolean("WALG_USE_DATABASE_COMPOSER", "false").later("the database tar composer").inert("false"),
		boolean("WALG_WITHOUT_FILES_METADATA", "false"),
		boolean("WALG_DISABLE_PARTIAL_RESTORE", ""),
		size("WALG_DISK_RATE_LIMIT", "", 0),
		size("WALG_NETWORK_RATE_LIMIT", "", 0),
		integer("WALG_INTEGRITY_MAX_DELAYED_WALS", "0", 0),
		str("WALG_PREFETCH_DIR"),
		enum("WALG_LOG_LEVEL", "NORMAL", "NORMAL", "DEVEL", "ERROR"),
		str("WALG_LOG_DESTINATION"),
		str("WALG_STORAGE_PREFIX"),
		str("WALG_CONFIG_PATH").noFlag(),

		// Encryption (codecs-and-crypto.md §4-5).
		str("WALG_LIBSODIUM_KEY").secret(),
		str("WALG_LIBSODIUM_KEY_PATH"),
		enum("WALG_LIBSODIUM_KEY_TRANSFORM", crypt.KeyTransforms()[0], crypt.KeyTransforms()...),
		str("WALG_PGP_KEY").secret(),
		str("WALG_PGP_KEY_PATH"),
		str("WALG_PGP_KEY_PASSPHRASE").secret(),
		str("WALG_GPG_KEY_ID").lookup(walCompat("GPG_KEY_ID")...).secret().
			refuse("GnuPG keyring encryption (use WALG_PGP_KEY or WALG_PGP_KEY_PATH instead)"),
		str("WALG_ENVELOPE_PGP_KEY").secret().refuse("envelope PGP encryption"),
		str("WALG_ENVELOPE_PGP_KEY_PATH").refuse("envelope PGP encryption"),
		str("WALG_ENVELOPE_PGP_YC_CSE_KMS_KEY_ID").later("envelope PGP encryption"),
		str("WALG_ENVELOPE_PGP_YC_SERVICE_ACCOUNT_KEY_FILE").later("envelope PGP encryption"),
		str("WALG_ENVELOPE_PGP_YC_ENDPOINT").later("envelope PGP encryption"),
		str("WALG_ENVELOPE_CACHE_EXPIRATION").def("0").later("envelope PGP encryption"),
		str("WALG_CSE_KMS_ID"),
		str("WALG_CSE_KMS_REGION"),
		// WAL-G reaches only AWS's regional KMS endpoint; emulators and
		// private (VPC) endpoints need a URL.
		str("TUSK_KMS_ENDPOINT"),
		str("YC_CSE_KMS_KEY_ID").refuse("Yandex Cloud KMS encryption"),
		str("YC_SERVICE_ACCOUNT_KEY_FILE").refuse("Yandex Cloud KMS encryption"),

		// Observability and runtime.
		str("WALG_STATSD_ADDRESS").later("StatsD metrics"),
		str("WALG_STATSD_EXTRA_TAGS").complex().later("StatsD metrics"),
		str("HTTP_LISTEN").later("the debug HTTP server"),
		str("HTTP_EXPOSE_PPROF").later("the debug HTTP server"),
		str("HTTP_EXPOSE_EXPVAR").later("the debug HTTP server"),
		str("PROFILE_SAMPLING_RATIO").later("profiling"),
		str("PROFILE_MODE").later("profiling"),
		str("PROFILE_PATH").later("profiling"),
		integer("GOMAXPROCS", "", 0),
		str("GODEBUG"),

		// WAL-G settings of code paths PostgreSQL does not use.
		str("WALG_STREAM_CREATE_COMMAND").inactive(otherDatabases),
		str("WALG_STREAM_RESTORE_COMMAND").inactive(otherDatabases),
		str("WALG_SERIALIZER_TYPE").inactive(otherDatabases),
		str("WALG_STREAM_SPLITTER_PARTITIONS").inactive(otherDatabases),
		str("WALG_STREAM_SPLITTER_BLOCK_SIZE").inactive(otherDatabases),
		str("WALG_STREAM_SPLITTER_MAX_FILE_SIZE").inactive(otherDatabases),
		boolean("WALG_DIRECT_IO", "false").later("direct I/O").inert("false"),
		str("WALG_DIRECT_IO_BLOCK_COUNT").def("32").inactive("it sizes WALG_DIRECT_IO reads, which tusk does not do"),

		// PostgreSQL (PGAllowedSettings / PGDefaultSettings). pgx reads the
		// PG* variables itself once exported.
		str("PGDATA"),
		str("PGHOST"),
		str("PGPORT"),
		str("PGUSER"),
		str("PGPASSWORD").secret(),
		str("PGPASSFILE"),
		str("PGDATABASE"),
		str("PGSSLMODE"),
		str("PGSSLCERT"),
		str("PGSSLKEY"),
		str("PGSSLROOTCERT"),
		str("PGAPPNAME").def("wal-g"),
		str("WALG_SLOTNAME").def("walg").rule(func(v string) string {
			if !slotName.MatchString(v) {
				return "is not a valid replication slot name (letters, digits and _ only)"
			}
			return ""
		}),
		integer("WALG_PG_WAL_SIZE", "16", 1).rule(powerOfTwo(1, 1024, " (MiB)")),
		integer("WALG_PG_WAL_PAGE_SIZE", "8192", 1).rule(powerOfTwo(1024, 65536, " (bytes)")).
			noEffect("checked, but no tusk command reads it"),
		integer("WALG_PG_BLOCK_SIZE", "8192", 1).rule(powerOfTwo(1024, 32768, " (bytes)")).
			noEffect("checked, but backup-push asks the server for its block size"),
		boolean("PG_READY_RENAME", "false"),
		duration("WALG_ALIVE_CHECK_INTERVAL", "1m"),
		duration("WALG_STOP_BACKUP_TIMEOUT", ""),
		duration("WALG_DAEMON_WAL_UPLOAD_TIMEOUT", "60s"),
		str("WALG_TARGET_STORAGE"),
		str("PGBACKREST_STANZA").def("main").inactive("for WAL-G's pgbackrest commands, which tusk does not have"),
		// Failover storages (internal/configure.go ConfigureMultiStorage):
		// the check's default is on exactly when failovers are configured.
		str("WALG_FAILOVER_STORAGES").complex().secret().rule(checkFailoverMap),
		boolean("WALG_FAILOVER_STORAGES_CHECK", ""),
		duration("WALG_FAILOVER_STORAGES_CHECK_TIMEOUT", "30s"),
		duration("WALG_FAILOVER_STORAGES_CACHE_LIFETIME", "15m"),
		fraction("WALG_FAILOVER_STORAGES_CACHE_EMA_ALIVE_LIMIT", "0.99"),
		fraction("WALG_FAILOVER_STORAGES_CACHE_EMA_DEAD_LIMIT", "0.88"),
		fraction("WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_ALIVE_MAX", "0.05"),
		fraction("WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_ALIVE_MIN", "0.01"),
		fraction("WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_DEAD_MAX", "0.5"),
		fraction("WALG_FAILOVER_STORAGES_CACHE_EMA_ALPHA_DEAD_MIN", "0.1"),
		str("WALG_FAILOVER_STORAGES_CHECK_SIZE").def("1mb").rule(func(v string) string {
			if _, err := parseSizeInBytes(v); err != nil {
				return "is not a size (bytes, or with kb, mb or gb)"
			}
			return ""
		}),

		// tusk's own settings.
		boolean("TUSK_FETCH_ABORT_ON_STORAGE_ERROR", "false"),
		duration("TUSK_FETCH_RETRY_TIMEOUT", "5m"),
		// How wal-push learns an object's length for S3: compress twice
		// (memory independent of segment size) or buffer the output.
		enum("TUSK_WAL_UPLOAD_BUFFER", "recompress", "recompress", "memory"),
		// Where a delta backup learns which pages changed: PostgreSQL 17+
		// WAL summaries when available (auto), or always the page scan.
		enum("TUSK_DELTA_SOURCE", "auto", "auto", "page-scan", "wal-summaries"),
		// Connections the daemon serves at once; more clients wait.
		integer("TUSK_DAEMON_MAX_CONNECTIONS", "16", 1),
		// How long a stopping daemon lets uploads in flight finish.
		duration("TUSK_DAEMON_SHUTDOWN_GRACE", "30s"),
		// Log records as key=value text or as JSON lines (log shippers).
		enum("TUSK_LOG_FORMAT", "text", "text", "json"),
		// Where wal-receive spools the segment it is receiving; empty: a
		// private directory under the system temp dir, removed at exit.
		str("TUSK_WAL_RECEIVE_DIR"),

		// Storage prefixes, in WAL-G's adapter order.
		prefix("OSS", StorageOSS),
		prefix("S3", StorageS3).rule(storageURL("s3://bucket/path")),
		prefix("FILE", StorageFile),
		prefix("GS", StorageGS),
		prefix("AZ", StorageAzure),
		prefix("SWIFT", StorageSwift),
		prefix("SSH", StorageSSH),

		// S3 (pkg/storages/s3/configure.go SettingList).
		str("AWS_ACCESS_KEY_ID").secret().lookup(append(walCompat("AWS_ACCESS_KEY_ID"), walCompat("AWS_ACCESS_KEY")...)...),
		str("AWS_SECRET_ACCESS_KEY").secret().lookup(append(walCompat("AWS_SECRET_ACCESS_KEY"), walCompat("AWS_SECRET_KEY")...)...),
		s3opt("AWS_SESSION_TOKEN", str("").secret()),
		s3opt("AWS_ROLE_ARN", str("")),
		s3opt("AWS_ROLE_SESSION_NAME", str("")),
		s3opt("AWS_REGION", str("")),
		s3opt("AWS_ENDPOINT", str("")),
		s3opt("AWS_S3_FORCE_PATH_STYLE", boolean("", "false")),
		s3opt("AWS_DUAL_STACK", boolean("", "false").later("S3 dual-stack endpoints").inert("false")),
		s3opt("S3_ENDPOINT_SOURCE", str("").refuse("S3 endpoint discovery")),
		s3opt("S3_ENDPOINT_PORT", str("").def("443").later("S3 endpoint discovery")),
		s3opt("S3_ENDPOINT_PROTOCOL", str("").later("S3 endpoint discovery")),
		s3opt("S3_SSE", str("")),
		s3opt("S3_SSE_KMS_ID", str("")),
		s3opt("S3_SSE_C", str("").secret()),
		s3opt("S3_STORAGE_CLASS", str("")),
		s3opt("S3_CA_CERT_FILE", str("")),
		s3opt("S3_MAX_PART_SIZE", size("", "", 1)),
		// WAL-G's S3 multipart concurrency: a bare UPLOAD_CONCURRENCY, else
		// WALG_UPLOAD_CONCURRENCY (and its default of 16). tusk's S3 backend
		// bounds parts in flight by its own memory budget instead.
		s3opt("UPLOAD_CONCURRENCY", integer("", "", 1).later("S3 multipart concurrency (memory-bounded instead)")),
		s3opt("S3_MAX_RETRIES", integer("", "", 0)),
		s3opt("S3_MIN_THROTTLING_RETRY_DELAY", integer("", "", 0)), // ms
		s3opt("S3_MAX_THROTTLING_RETRY_DELAY", integer("", "", 0)), // ms
		s3opt("S3_USE_LIST_OBJECTS_V1", boolean("", "false")),
		s3opt("S3_SKIP_VALIDATION", boolean("", "true").later("S3 credential validation at start").inert("true")),
		s3opt("S3_LOG_LEVEL", str("").later("S3 SDK logging")),
		s3opt("S3_RANGE_BATCH_ENABLED", boolean("", "false").later("S3 ranged-GET resume").inert("false")),
		s3opt("S3_RANGE_MAX_RETRIES", integer("", "10", 0).later("S3 ranged-GET resume")),
		s3opt("S3_REQUEST_ADDITIONAL_HEADERS", str("")),
		// Object-lock retention, in seconds; -1 disables. Objects written
		// without the lock the user asked for would be a silent downgrade.
		s3opt("S3_RETENTION_PERIOD", anyInt("", "-1").refuse("S3 object-lock retention").inert("-1")),
		s3opt("S3_RETENTION_MODE", str("").def("GOVERNANCE").later("S3 object-lock retention")),
		s3opt("S3_DISABLE_100_CONTINUE", boolean("", "false").later("disabling Expect: 100-continue").inert("false")),
		s3opt("S3_ENABLE_VERSIONING", enum("", "", "enabled", "disabled").later("S3 object-version handling")),
		s3opt("S3_DELETE_BATCH_SIZE", integer("", "1000", 1).later("S3 delete batch size")),
		s3opt("S3_USE_YC_SESSION_TOKEN", boolean("", "").later("Yandex Cloud session tokens").inert("false")),
		// SSH (pkg/storages/sh/configure.go), read like the other storage
		// options: bare name, then WALG_, then WALE_.
		integer("SSH_PORT", "22", 1).lookup(walCompat("SSH_PORT")...).rule(func(v string) string {
			if n, err := strconv.Atoi(v); err != nil || n > 65535 {
				return "is not a TCP port (1 to 65535)"
			}
			return ""
		}),
		str("SSH_USERNAME").lookup(walCompat("SSH_USERNAME")...),
		str("SSH_PASSWORD").lookup(walCompat("SSH_PASSWORD")...).secret(),
		str("SSH_PRIVATE_KEY_PATH").lookup(walCompat("SSH_PRIVATE_KEY_PATH")...),
		// WAL-G accepts any SSH host key; tusk checks it against this
		// OpenSSH known_hosts file (default ~/.ssh/known_hosts) unless
		// TUSK_SSH_INSECURE_IGNORE_HOST_KEY=true (unsafe: whoever can
		// intercept the connection gets the backups and the password).
		str("TUSK_SSH_KNOWN_HOSTS"),
		boolean("TUSK_SSH_INSECURE_IGNORE_HOST_KEY", "false"),
		// AWS SDK environment, read by the SDK itself after Export.
		str("AWS_PROFILE"),
		str("AWS_SHARED_CREDENTIALS_FILE"),
		str("AWS_CONFIG_FILE"),
		str("AWS_CA_BUNDLE"),
		str("AWS_DEFAULT_REGION"),
		str("AWS_WEB_IDENTITY_TOKEN_FILE"),
		str("AWS_DEFAULT_OUTPUT").inactive("the AWS CLI's; no effect on S3 requests"),

		// Google Cloud Storage (pkg/storages/gcs/configure.go), read like
		// the other storage options: bare name, then WALG_, then WALE_.
		str("GOOGLE_APPLICATION_CREDENTIALS"),
		// As Google's client libraries read it: an emulator's host:port
		// (or URL), spoken to without credentials.
		str("STORAGE_EMULATOR_HOST"),
		integer("GCS_CONTEXT_TIMEOUT", "3600", 1).lookup(walCompat("GCS_CONTEXT_TIMEOUT")...),
		boolean("GCS_NORMALIZE_PREFIX", "true").lookup(walCompat("GCS_NORMALIZE_PREFIX")...),
		str("GCS_ENCRYPTION_KEY").lookup(walCompat("GCS_ENCRYPTION_KEY")...).secret(),
		// WAL-G buffers this much per upload (50 MiB); tusk only for a body
		// of unknown length, and by default 8 MiB.
		integer("GCS_MAX_CHUNK_SIZE", "8388608", 1).lookup(walCompat("GCS_MAX_CHUNK_SIZE")...),
		integer("GCS_MAX_RETRIES", "16", 0).lookup(walCompat("GCS_MAX_RETRIES")...),
		// Azure Blob Storage (pkg/storages/azure/configure.go); WAL-G
		// documents the buffer settings as WALG_AZURE_*, which walCompat
		// covers.
		str("AZURE_STORAGE_ACCOUNT").lookup(walCompat("AZURE_STORAGE_ACCOUNT")...),
		str("AZURE_STORAGE_ACCESS_KEY").lookup(walCompat("AZURE_STORAGE_ACCESS_KEY")...).secret(),
		str("AZURE_STORAGE_SAS_TOKEN").lookup(walCompat("AZURE_STORAGE_SAS_TOKEN")...).secret(),
		str("AZURE_ENDPOINT_SUFFIX").lookup(walCompat("AZURE_ENDPOINT_SUFFIX")...),
		str("AZURE_ENVIRONMENT_NAME").def("AzurePublicCloud").lookup(walCompat("AZURE_ENVIRONMENT_NAME")...),
		anyInt("AZURE_BUFFER_SIZE", "8388608").lookup(walCompat("AZURE_BUFFER_SIZE")...),
		anyInt("AZURE_MAX_BUFFERS", "4").lookup(walCompat("AZURE_MAX_BUFFERS")...),
		integer("AZURE_TRY_TIMEOUT", "5", 1).lookup(walCompat("AZURE_TRY_TIMEOUT")...),
		str("AZURE_BLOB_STORE_API_VERSION").lookup(walCompat("AZURE_BLOB_STORE_API_VERSION")...),
		// The Blob service URL for Azurite (path-style,
		// http://127.0.0.1:10000/devstoreaccount1) and private endpoints;
		// WAL-G builds only https://ACCOUNT.blob.SUFFIX.
		str("TUSK_AZURE_ENDPOINT"),
		foreign("OS_AUTH_URL"),
		foreign("OS_USERNAME"),
		foreign("OS_PASSWORD").secret(),
		foreign("OS_TENANT_NAME"),
		foreign("OS_REGION_NAME"),
		foreign("OSS_ACCESS_KEY_ID").secret(),
		foreign("OSS_ACCESS_KEY_SECRET").secret(),
		foreign("OSS_SESSION_TOKEN").secret(),
		foreign("OSS_ENDPOINT"),
		foreign("OSS_REGION"),
		foreign("OSS_ROLE_ARN"),
		foreign("OSS_ROLE_SESSION_NAME"),
		foreign("OSS_SKIP_VALIDATION"),
		foreign("OSS_MAX_RETRIES"),
		foreign("OSS_CONNECT_TIMEOUT"),
		foreign("OSS_UPLOAD_PART_SIZE"),
		foreign("OSS_COPY_PART_SIZE"),
	}
}

// otherDatabases is why WAL-G's settings of other databases' code paths
// have no effect.
const otherDatabases = "WAL-G uses it for other databases, not PostgreSQL"

// Settings returns a copy of the catalogue with each setting's Meaning,
// for documentation and tooling.
func Settings() []Setting {
	list, m := catalogue(), meanings()
	for i := range list {
		list[i].Meaning = m[list[i].Name]
	}
	return list
}

// State is what tusk does with a setting that is set, as the settings
// reference shows it.
type State string

const (
	// Honoured: tusk does what WAL-G does with it (or, for TUSK_*, what
	// its meaning says).
	Honoured State = "honoured"
	// Refused: tusk stops with an error rather than run without the
	// feature (except at the values meaning "off").
	Refused State = "refused"
	// Ignored: accepted without effect (with a warning for WAL-G features
	// tusk lacks).
	Ignored State = "ignored"
)

// State says what tusk does with s when it is set, and why when that is
// not honouring it.
func (s Setting) State() (State, string) {
	switch {
	case s.Status == NotYet && s.Risky:
		why := "not in tusk yet: " + s.Feature
		if len(s.Inert) > 0 {
			why += "; accepted when " + strings.Join(s.Inert, " or ")
		}
		return Refused, why
	case s.Status == NotYet:
		return Ignored, "not in tusk yet, and a warning says so: " + s.Feature
	case s.Status == Inactive:
		return Ignored, s.Why
	case s.NoEffect != "":
		return Ignored, s.NoEffect
	}
	return Honoured, ""
}

// FlagNames maps every known key (canonical names and aliases) to WAL-G's
// hidden flag name for it: lower case, '_' replaced by '-' (WAL-G
// ToFlagName). WAL-G registers flags for its allowed settings only; tusk
// registers one per key, a superset, so every spelling can be passed.
func FlagNames() map[string]string {
	out := map[string]string{}
	for _, s := range catalogue() {
		if s.NoFlag {
			continue
		}
		for _, k := range s.Lookup {
			out[k] = flagName(k)
		}
	}
	return out
}

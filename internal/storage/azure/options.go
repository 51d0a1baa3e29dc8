package azure

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults, as WAL-G's.
const (
	DefaultBufferSize  = 8 << 20
	DefaultMaxBuffers  = 4
	DefaultTryTimeout  = 5 * time.Minute
	DefaultEnvironment = "AzurePublicCloud"
	// MinBufferSize is WAL-G's floor for AZURE_BUFFER_SIZE; smaller values
	// are raised to it, as WAL-G does.
	MinBufferSize = 1024
	// MaxBufferSize is the service's limit on one staged block.
	MaxBufferSize = 4000 << 20
)

// Options configure a Storage. Zero values mean the defaults above.
type Options struct {
	Container string
	// Prefix is the blob name prefix inside the container; leading and
	// trailing '/' are ignored.
	Prefix string

	AccountName string
	// AccessKey (shared key) or SASToken authenticates; exactly one is
	// needed.
	AccessKey string
	SASToken  string

	// EndpointSuffix builds the host-style service URL
	// https://ACCOUNT.blob.SUFFIX, as WAL-G does; it defaults from
	// Environment.
	EndpointSuffix string
	Environment    string
	// Endpoint, when set, is the service URL used instead: an emulator's
	// or a private endpoint's, host-style (https://host) or path-style
	// (http://127.0.0.1:10000/devstoreaccount1).
	Endpoint string

	// BufferSize is the size of each block buffer of an upload and
	// MaxBuffers how many one upload may hold (and stage at once).
	BufferSize int64
	MaxBuffers int

	// TryTimeout bounds one HTTP attempt.
	TryTimeout time.Duration
	// APIVersion, when set, overrides the x-ms-version the client sends.
	APIVersion string
}

// SettingNames lists the setting names OptionsFromSettings reads. The
// configuration layer maps WAL-G's WALG_/WALE_ spellings (such as
// WALG_AZURE_BUFFER_SIZE, the one WAL-G documents) onto them.
func SettingNames() []string {
	return []string{
		"WALG_AZ_PREFIX",
		"AZURE_STORAGE_ACCOUNT",
		"AZURE_STORAGE_ACCESS_KEY",
		"AZURE_STORAGE_SAS_TOKEN",
		"AZURE_ENDPOINT_SUFFIX",
		"AZURE_ENVIRONMENT_NAME",
		"AZURE_BUFFER_SIZE",
		"AZURE_MAX_BUFFERS",
		"AZURE_TRY_TIMEOUT",
		"AZURE_BLOB_STORE_API_VERSION",
		"TUSK_AZURE_ENDPOINT",
	}
}

// OptionsFromSettings builds Options from settings named as in SettingNames:
//
//	WALG_AZ_PREFIX                 azure://container/path (required)
//	AZURE_STORAGE_ACCOUNT          account name (required)
//	AZURE_STORAGE_ACCESS_KEY       shared key; wins over the SAS token, as in WAL-G
//	AZURE_STORAGE_SAS_TOKEN        SAS token, with or without its leading '?'
//	AZURE_ENDPOINT_SUFFIX          default from AZURE_ENVIRONMENT_NAME
//	AZURE_ENVIRONMENT_NAME         AzurePublicCloud (default), AzureUSGovernmentCloud,
//	                               AzureChinaCloud, AzureGermanCloud
//	AZURE_BUFFER_SIZE              block buffer bytes, default 8 MiB, at least 1024
//	AZURE_MAX_BUFFERS              block buffers per upload, default 4, at least 1
//	AZURE_TRY_TIMEOUT              minutes per HTTP attempt, default 5
//	AZURE_BLOB_STORE_API_VERSION   x-ms-version to send instead of the SDK's
//	TUSK_AZURE_ENDPOINT            service URL for emulators and private endpoints
//
// Every problem is reported, one per line, starting with the setting's
// name; no secret's value is printed.
func OptionsFromSettings(get func(name string) (string, bool)) (Options, error) {
	val := func(name string) string {
		v, _ := get(name)
		return strings.TrimSpace(v)
	}
	var o Options
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %w", name, err)) }

	prefix := val("WALG_AZ_PREFIX")
	if prefix == "" {
		return o, errors.New("WALG_AZ_PREFIX is not set")
	}
	container, path, err := ParsePrefix(prefix)
	if err != nil {
		bad("WALG_AZ_PREFIX", err)
	}
	o.Container, o.Prefix = container, path

	if o.AccountName = val("AZURE_STORAGE_ACCOUNT"); o.AccountName == "" {
		bad("AZURE_STORAGE_ACCOUNT", errors.New("must be set with WALG_AZ_PREFIX"))
	}
	o.AccessKey = val("AZURE_STORAGE_ACCESS_KEY")
	if o.AccessKey == "" {
		o.SASToken = val("AZURE_STORAGE_SAS_TOKEN")
	}
	if o.AccessKey == "" && o.SASToken == "" {
		bad("AZURE_STORAGE_ACCESS_KEY", errors.New("set it or AZURE_STORAGE_SAS_TOKEN: tusk does not use the Azure default credential chain"))
	}
	o.EndpointSuffix = val("AZURE_ENDPOINT_SUFFIX")
	o.Environment = val("AZURE_ENVIRONMENT_NAME")
	if v := val("TUSK_AZURE_ENDPOINT"); v != "" {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("TUSK_AZURE_ENDPOINT", fmt.Errorf("%q is not an http(s) URL", v))
		} else {
			o.Endpoint = v
		}
	}
	if v := val("AZURE_BUFFER_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > MaxBufferSize {
			bad("AZURE_BUFFER_SIZE", fmt.Errorf("%q is not a size in bytes up to %d", v, int64(MaxBufferSize)))
		} else {
			o.BufferSize = max(n, MinBufferSize)
		}
	}
	if v := val("AZURE_MAX_BUFFERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			bad("AZURE_MAX_BUFFERS", fmt.Errorf("%q is not a number", v))
		} else {
			o.MaxBuffers = max(n, 1)
		}
	}
	if v := val("AZURE_TRY_TIMEOUT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			bad("AZURE_TRY_TIMEOUT", fmt.Errorf("%q is not a positive number of minutes", v))
		} else {
			o.TryTimeout = time.Duration(n) * time.Minute
		}
	}
	o.APIVersion = val("AZURE_BLOB_STORE_API_VERSION")
	return o, errors.Join(errs...)
}

// ParsePrefix splits azure://container/path.
func ParsePrefix(prefix string) (container, path string, err error) {
	u, err := url.Parse(prefix)
	if err != nil {
		return "", "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "azure" {
		return "", "", errors.New("want azure://container/path")
	}
	if u.Host == "" {
		return "", "", errors.New("no container name in azure://container/path")
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// endpointSuffix is WAL-G's mapping of environment names; unknown names
// mean the public cloud.
func endpointSuffix(environment string) string {
	switch environment {
	case "AzureUSGovernmentCloud":
		return "core.usgovcloudapi.net"
	case "AzureChinaCloud":
		return "core.chinacloudapi.cn"
	case "AzureGermanCloud":
		return "core.cloudapi.de"
	}
	return "core.windows.net"
}

// withDefaults fills zero fields and validates the rest.
func (o Options) withDefaults() (Options, error) {
	o.Prefix = strings.Trim(o.Prefix, "/")
	if o.BufferSize == 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.BufferSize < 1 || o.BufferSize > MaxBufferSize {
		return o, fmt.Errorf("buffer size %d outside [1, %d]", o.BufferSize, int64(MaxBufferSize))
	}
	if o.MaxBuffers == 0 {
		o.MaxBuffers = DefaultMaxBuffers
	}
	if o.MaxBuffers < 1 {
		return o, fmt.Errorf("max buffers %d < 1", o.MaxBuffers)
	}
	if o.TryTimeout <= 0 {
		o.TryTimeout = DefaultTryTimeout
	}
	if o.Environment == "" {
		o.Environment = DefaultEnvironment
	}
	if o.EndpointSuffix == "" {
		o.EndpointSuffix = endpointSuffix(o.Environment)
	}
	o.SASToken = strings.TrimPrefix(o.SASToken, "?")
	// Checked last: Memory uses the sizes above even without a container.
	if o.Container == "" {
		return o, errors.New("no container")
	}
	if o.AccountName == "" {
		return o, errors.New("no storage account")
	}
	return o, nil
}

// serviceURL is the Blob service's URL without a trailing '/'.
func (o Options) serviceURL() string {
	if o.Endpoint != "" {
		return strings.TrimRight(o.Endpoint, "/")
	}
	return "https://" + o.AccountName + ".blob." + o.EndpointSuffix
}

package sftp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Defaults applied to zero Options fields.
const (
	DefaultPort = 22
	// DefaultRequests is how many SFTP read or write requests of one
	// object are in flight at once: 8 × 32 KiB keeps a 100 ms round trip
	// at about 2.5 MiB/s per stream, with 256 KiB held per transfer.
	DefaultRequests    = 8
	DefaultDialTimeout = 30 * time.Second
)

// packetSize is pkg/sftp's default (and OpenSSH's comfortable) payload of
// one read or write request.
const packetSize = 32 << 10

// Options configure a Storage.
type Options struct {
	// Host and Port of the SSH server.
	Host string
	Port int
	// Path is the storage root on the server, absolute.
	Path string

	// User logs in with the key in PrivateKeyPath and/or Password, tried
	// in that order.
	User           string
	Password       string
	PrivateKeyPath string

	// KnownHostsPath is the OpenSSH known_hosts file the server's host key
	// must be listed in. InsecureIgnoreHostKey accepts any host key
	// instead: anyone who can intercept the connection then receives the
	// backups and the password.
	KnownHostsPath        string
	InsecureIgnoreHostKey bool

	// Requests in flight per transfer (DefaultRequests when 0).
	Requests int
	// DialTimeout bounds the TCP connection and SSH handshake.
	DialTimeout time.Duration
}

// ParsePrefix reads WALG_SSH_PREFIX, ssh://host/absolute/path, as WAL-G
// does (the URL's host and path; the port is SSH_PORT's).
func ParsePrefix(prefix string) (host, path string, err error) {
	u, err := url.Parse(prefix)
	if err != nil {
		return "", "", errors.New("is not a URL (expected ssh://host/path)")
	}
	switch {
	case u.Scheme != "ssh":
		return "", "", fmt.Errorf("scheme %q: expected ssh://host/path", u.Scheme)
	case u.Host == "":
		return "", "", errors.New("has no host (expected ssh://host/path)")
	case u.Port() != "":
		return "", "", errors.New("has a port: set it in SSH_PORT, as WAL-G reads it")
	case u.User != nil:
		return "", "", errors.New("has a user name: set it in SSH_USERNAME, as WAL-G reads it")
	case strings.Trim(u.Path, "/") == "":
		return "", "", errors.New("has no directory (expected ssh://host/path)")
	}
	return u.Hostname(), "/" + strings.Trim(u.Path, "/"), nil
}

// OptionsFromSettings reads WALG_SSH_PREFIX, WAL-G's SSH_* settings and
// tusk's host key settings through get, which answers each with the value
// WAL-G would use (defaults included): the names Registration lists.
// TUSK_SSH_KNOWN_HOSTS defaults to ~/.ssh/known_hosts.
func OptionsFromSettings(get func(name string) (string, bool)) (Options, error) {
	val := func(name string) string {
		v, _ := get(name)
		return v
	}
	host, dir, err := ParsePrefix(val("WALG_SSH_PREFIX"))
	if err != nil {
		return Options{}, fmt.Errorf("WALG_SSH_PREFIX: %w", err)
	}
	known := val("TUSK_SSH_KNOWN_HOSTS")
	if known == "" {
		if home, err := os.UserHomeDir(); err == nil {
			known = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	port, _ := strconv.Atoi(val("SSH_PORT"))
	insecure, _ := strconv.ParseBool(val("TUSK_SSH_INSECURE_IGNORE_HOST_KEY"))
	return Options{
		Host:                  host,
		Port:                  port,
		Path:                  dir,
		User:                  val("SSH_USERNAME"),
		Password:              val("SSH_PASSWORD"),
		PrivateKeyPath:        val("SSH_PRIVATE_KEY_PATH"),
		KnownHostsPath:        known,
		InsecureIgnoreHostKey: insecure,
	}, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Requests <= 0 {
		o.Requests = DefaultRequests
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	var errs []error
	if o.Host == "" || o.Path == "" {
		errs = append(errs, errors.New("WALG_SSH_PREFIX: expected ssh://host/path"))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("SSH_PORT: %d is not a TCP port", o.Port))
	}
	if o.User == "" {
		errs = append(errs, errors.New("SSH_USERNAME: not set (the user to log in as)"))
	}
	if o.Password == "" && o.PrivateKeyPath == "" {
		errs = append(errs, errors.New("SSH_PRIVATE_KEY_PATH: neither it nor SSH_PASSWORD is set: no way to log in"))
	}
	if o.KnownHostsPath == "" && !o.InsecureIgnoreHostKey {
		errs = append(errs, errors.New("TUSK_SSH_KNOWN_HOSTS: no known_hosts file to check the server's host key against"))
	}
	return o, errors.Join(errs...)
}

// addr is host:port, IPv6 literals bracketed.
func (o Options) addr() string { return net.JoinHostPort(o.Host, strconv.Itoa(o.Port)) }

package storage

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tusk-pg/tusk/internal/memplan"
)

// Registration is what one backend declares about itself. Each backend
// folder exports one (file.Registration, s3.Registration, ...) and a
// Backend built on it; a program's main lists the backends it links in a
// Registry, and nothing else in tusk knows the backends by name.
type Registration struct {
	// Kind is the storage kind of the catalogue's prefix setting that
	// selects the backend ("file", "s3", "ssh").
	Kind string
	// Name names the backend in messages.
	Name string
	// Prefix is the setting that selects it (WALG_S3_PREFIX); Settings
	// are the other catalogue settings its options are read from.
	Prefix   string
	Settings []string
	// SkipRetry: the backend retries transient failures with a backoff of
	// its own (the S3 SDK), or has none worth retrying (a local
	// directory). Every other backend is wrapped in Retry.
	SkipRetry bool
}

// Backend is one backend as a program links it: its registration and how
// its options are read from the settings.
type Backend struct {
	Registration
	// Configure reads the backend's options through setting, which answers
	// Prefix (with WALG_STORAGE_PREFIX applied) and each of Settings with
	// the value WAL-G would use, defaults included, and checks them without
	// I/O.
	Configure func(setting func(name string) (string, bool)) (Configured, error)
}

// Registry is the set of backends a program links, built by its main
// (package storage/all lists every one), in the restic way: no package
// registers itself, so a program that does not list a backend does not
// link it, nor run its packages' initialisers on every start.
type Registry []Backend

// Lookup returns the backend of a storage kind.
func (r Registry) Lookup(kind string) (Backend, bool) {
	for _, b := range r {
		if b.Kind == kind {
			return b, true
		}
	}
	return Backend{}, false
}

// ConfigureWith is a Backend's Configure made of the backend's settings
// reader (OptionsFromSettings) and its Configure.
func ConfigureWith[O any](read func(func(string) (string, bool)) (O, error),
	configure func(O) (Configured, error)) func(func(string) (string, bool)) (Configured, error) {
	return func(setting func(string) (string, bool)) (Configured, error) {
		o, err := read(setting)
		if err != nil {
			return Configured{}, err
		}
		return configure(o)
	}
}

// Configured is a backend with its options read and checked, not yet
// connected: what a memory plan needs (computed offline, it must come to
// the running process's decisions), and how to connect.
type Configured struct {
	Registration
	// Root names the storage for messages before it is opened
	// ("s3://bucket/prefix").
	Root   string
	Traits Traits
	// Memory is what the backend holds per upload and download.
	Memory memplan.Storage
	// Connect opens the backend itself; Open adds the wrappers.
	Connect func(ctx context.Context, log *slog.Logger) (Storage, error)
}

// Wrappers are the layers every backend gets around it, whatever it is.
type Wrappers struct {
	// NetworkRateLimit bounds the bytes per second sent to and read from
	// storage, all requests of the process together
	// (WALG_NETWORK_RATE_LIMIT); 0: unlimited.
	NetworkRateLimit int64
	// Retry is the policy for backends that do not retry by themselves;
	// the zero value is DefaultRetry().
	Retry RetryPolicy
}

// Open connects the configured backend and wraps it: retries (unless the
// backend skips them), then the network rate limit, innermost.
// Without a limit, a backend that skips retries is returned as is.
func Open(ctx context.Context, c Configured, w Wrappers, log *slog.Logger) (Storage, error) {
	if c.Connect == nil {
		return nil, fmt.Errorf("%s storage: no way to connect", c.Name)
	}
	s, err := c.Connect(ctx, log)
	if err != nil {
		return nil, err
	}
	s = RateLimit(s, w.NetworkRateLimit)
	if !c.SkipRetry {
		s = Retry(s, w.Retry, log)
	}
	return s, nil
}

package storage

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tusk-pg/tusk/internal/memplan"
)

// Registration is what one backend declares about itself. Each backend
// folder exports one (file.Registration, s3.Registration, ...); the
// configuration's storage adapter lists them, maps the settings named
// here to the backend's options, and nothing else in tusk knows the
// backends by name.
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

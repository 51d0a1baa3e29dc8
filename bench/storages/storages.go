// Package storages starts the storage a benchmark archives to, one of
// tusk's backends with the server the tests use: a directory (file),
// versitygw over TLS (s3), OpenSSH's SFTP server (sftp) and Azurite
// (azure) and fake-gcs-server with its objects on disk (gcs). Every benchmark then gives tusk the same settings but the
// storage's own, so its figures compare backends.
package storages

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tusk-pg/tusk/internal/testenv/azurite"
	"github.com/tusk-pg/tusk/internal/testenv/gcsserver"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
	"github.com/tusk-pg/tusk/internal/testenv/sshserver"
)

// Kinds are the storages Start knows, S3 first (the reference).
var Kinds = []string{"s3", "file", "sftp", "azure", "gcs"}

// Store is a running storage.
type Store struct {
	// Kind is one of Kinds; Desc says what serves it, for reports.
	Kind, Desc string
	// Pids are the server's processes (none for file).
	Pids []int
	// Secrets are values to redact from logs.
	Secrets []string
	// S3 is the versitygw server of kind s3, nil otherwise.
	S3 *s3server.Server

	env     func(prefix string) []string
	objects func(ctx context.Context, prefix string) (map[string]int64, error)
	close   func()
}

// Start starts storage kind with its data under dir. bucket names the S3
// bucket. uid and gid (-1: unchanged) own a file storage's directory, for
// archivers that run as another user.
func Start(kind, dir, bucket string, uid, gid int) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	switch kind {
	case "s3":
		srv, err := s3server.Run(s3server.Options{TLS: true, Bucket: bucket, Dir: filepath.Join(dir, "s3")})
		if err != nil {
			return nil, err
		}
		return &Store{
			Kind: kind, Desc: "S3: versitygw " + s3server.VersitygwVersion + " (posix backend, TLS, loopback)",
			Pids: []int{srv.Pid()}, Secrets: []string{srv.SecretKey, srv.AccessKey}, S3: srv,
			env: srv.EnvFor,
			objects: func(ctx context.Context, prefix string) (map[string]int64, error) {
				return srv.Objects(ctx, prefix)
			},
			close: func() { srv.Close() },
		}, nil
	case "file":
		root := filepath.Join(dir, "file")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(root, uid, gid); err != nil {
			return nil, err
		}
		return &Store{
			Kind: kind, Desc: "file: a local directory",
			env: func(prefix string) []string { return []string{"WALG_FILE_PREFIX=" + filepath.Join(root, prefix)} },
			objects: func(_ context.Context, prefix string) (map[string]int64, error) {
				return walk(root, prefix)
			},
			close: func() {},
		}, nil
	case "sftp":
		srv, err := sshserver.Run()
		if err != nil {
			return nil, err
		}
		return &Store{
			Kind: kind, Desc: "SFTP: OpenSSH's sshd (internal-sftp, loopback, key login)",
			Pids: []int{srv.Pid()},
			env:  srv.Env,
			objects: func(_ context.Context, prefix string) (map[string]int64, error) {
				return walk(srv.Dir, prefix)
			},
			close: srv.Close,
		}, nil
	case "azure":
		srv, err := azurite.Run(filepath.Join(dir, "azurite"))
		if err != nil {
			return nil, err
		}
		return &Store{
			Kind: kind, Desc: "Azure: Azurite " + azurite.Version + " (path-style endpoint, loopback, account key)",
			Pids: []int{srv.Pid()}, Secrets: []string{azurite.Key},
			env: srv.Env,
			objects: func(ctx context.Context, prefix string) (map[string]int64, error) {
				return srv.Objects(ctx, prefix)
			},
			close: srv.Stop,
		}, nil
	case "gcs":
		srv, err := gcsserver.Run(filepath.Join(dir, "gcs"))
		if err != nil {
			return nil, err
		}
		return &Store{
			Kind: kind, Desc: "GCS: fake-gcs-server " + gcsserver.Version + " (filesystem backend, loopback, STORAGE_EMULATOR_HOST)",
			Pids: []int{srv.Pid()},
			env:  srv.Env,
			objects: func(ctx context.Context, prefix string) (map[string]int64, error) {
				return srv.Objects(ctx, prefix)
			},
			close: srv.Stop,
		}, nil
	}
	return nil, fmt.Errorf("storage %q: want one of %s", kind, strings.Join(Kinds, ", "))
}

// Env is the settings that point tusk at prefix in the storage.
func (s *Store) Env(prefix string) []string { return s.env(strings.Trim(prefix, "/")) }

// Objects maps every object under prefix (a path in the storage, ending
// in "/") to its size.
func (s *Store) Objects(ctx context.Context, prefix string) (map[string]int64, error) {
	return s.objects(ctx, prefix)
}

// Close stops the server; its data stays under the directory given to Start.
func (s *Store) Close() { s.close() }

// walk lists the regular files under root/prefix, keyed by their path
// below root.
func walk(root, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	err := filepath.WalkDir(filepath.Join(root, prefix), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = fi.Size()
		return nil
	})
	return out, err
}

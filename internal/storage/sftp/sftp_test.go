package sftp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/sftp"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
	"github.com/tusk-pg/tusk/internal/testenv/sshserver"
)

func options(srv *sshserver.Server, dir string) sftp.Options {
	return sftp.Options{
		Host: srv.Host, Port: srv.Port, Path: filepath.Join(srv.Dir, dir),
		User: srv.User, PrivateKeyPath: srv.KeyFile, KnownHostsPath: srv.KnownHosts,
	}
}

func open(t *testing.T, o sftp.Options) *sftp.Storage {
	t.Helper()
	s, err := sftp.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	srv := sshserver.Start(t)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return open(t, options(srv, fmt.Sprintf("c%d/root", n.Add(1))))
	})
}

// The wrappers every backend gets keep the contract over SFTP too.
func TestContractWrapped(t *testing.T) {
	srv := sshserver.Start(t)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s := open(t, options(srv, fmt.Sprintf("w%d", n.Add(1))))
		return storage.Retry(storage.RateLimit(s, 1<<30), storage.RetryPolicy{}, nil)
	})
}

// Objects land as plain files under the root, with no temporary left.
func TestLayout(t *testing.T) {
	srv := sshserver.Start(t)
	s := open(t, options(srv, "layout"))
	ctx := context.Background()
	if err := s.Put(ctx, "wal_005/000000010000000000000001.lz4", strings.NewReader("wal"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "basebackups_005/b_backup_stop_sentinel.json", strings.NewReader("{}"), -1); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(srv.Dir, "layout/wal_005/000000010000000000000001.lz4"))
	if err != nil || string(got) != "wal" {
		t.Fatalf("file on the server: %q, %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Join(srv.Dir, "layout/basebackups_005"))
	if len(entries) != 1 {
		t.Errorf("basebackups_005 holds %d entries, want only the sentinel: %v", len(entries), entries)
	}
	// A WAL-G temporary file left by a crash is never listed.
	leftover := filepath.Join(srv.Dir, "layout/wal_005/000000010000000000000002.lz4.tmp.20260101T000000Z-0123456789abcdef")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys := storagetest.Keys(t, s, "wal_005/"); len(keys) != 1 {
		t.Errorf("listing shows %q", keys)
	}
}

// Each refusal is one line saying what to fix, and is not retried.
func TestConnectErrors(t *testing.T) {
	srv := sshserver.Start(t)
	ctx := context.Background()

	unknown := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(unknown, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(t.TempDir(), "known_hosts")
	other, err := os.ReadFile(srv.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	// The same host name with another key of the same type.
	pem, err := os.ReadFile(srv.WrongKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	wrongLine := strings.Fields(string(other))[0] + " " + string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	if err := os.WriteFile(changed, []byte(wrongLine), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		edit      func(o *sftp.Options)
		want      string
		permanent bool
	}{
		{"wrong key", func(o *sftp.Options) { o.PrivateKeyPath = srv.WrongKeyFile }, `SSH login as "root" on 127.0.0.1:`, true},
		{"wrong password", func(o *sftp.Options) { o.PrivateKeyPath, o.Password = "", "nope" }, "refused: check SSH_USERNAME", true},
		{"unknown host key", func(o *sftp.Options) { o.KnownHostsPath = unknown }, "is not in " + unknown + " (TUSK_SSH_KNOWN_HOSTS)", true},
		{"changed host key", func(o *sftp.Options) { o.KnownHostsPath = changed }, "does not match the one in " + changed + " line 1", true},
		{"no known_hosts", func(o *sftp.Options) { o.KnownHostsPath = "/nonexistent/known_hosts" }, "TUSK_SSH_KNOWN_HOSTS /nonexistent/known_hosts", true},
		{"missing key file", func(o *sftp.Options) { o.PrivateKeyPath = "/nonexistent/id" }, "SSH_PRIVATE_KEY_PATH: open /nonexistent/id", true},
		{"unreachable", func(o *sftp.Options) { o.Port = 1 }, "connect to 127.0.0.1:1: ", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := options(srv, "errors")
			tc.edit(&o)
			_, err := open(t, o).Stat(ctx, "x")
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.want)
			}
			if storage.IsTransient(err) == tc.permanent || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%v: transient %v, want %v", err, storage.IsTransient(err), !tc.permanent)
			}
		})
	}

	// Without the check, a key known_hosts lacks is accepted.
	o := options(srv, "errors")
	o.KnownHostsPath, o.InsecureIgnoreHostKey = unknown, true
	if _, err := open(t, o).Stat(ctx, "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("insecure: %v, want not found", err)
	}
}

// A server killed mid-upload leaves no object under the key (uploads go
// to a temporary name, renamed once whole), and the next request
// reconnects once it is back: see storagetest.KilledMidUpload.
func TestServerKilledMidUpload(t *testing.T) {
	srv := sshserver.Start(t)
	storagetest.KilledMidUpload(t, open(t, options(srv, "outage")), storagetest.Server{
		Kill: srv.Stop, Restart: srv.Restart,
	}, 8<<20)
}

func TestParsePrefix(t *testing.T) {
	host, path, err := sftp.ParsePrefix("ssh://backup.example.com/srv/walg/")
	if err != nil || host != "backup.example.com" || path != "/srv/walg" {
		t.Errorf("got %q %q %v", host, path, err)
	}
	for _, bad := range []string{"ssh://host", "ssh://host/", "ssh://host:2222/p", "ssh://u@host/p", "s3://b/p", "ssh:///p"} {
		if _, _, err := sftp.ParsePrefix(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tusk-pg/tusk/internal/storage"
)

// conn is one SSH connection with its SFTP session; done is closed once
// the connection is gone, whatever closed it.
type conn struct {
	ssh  *ssh.Client
	sftp *sftp.Client
	done chan struct{}
}

func (c *conn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// dialer holds the one connection a Storage shares among its requests,
// made on first use and again after the server dropped it.
type dialer struct {
	o  Options
	mu sync.Mutex
	c  *conn
}

// client returns the live SFTP session, connecting when there is none.
func (d *dialer) client(ctx context.Context) (*sftp.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.c != nil && d.c.alive() {
		return d.c.sftp, nil
	}
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	d.c = c
	return c.sftp, nil
}

// dial connects, checks the host key and logs in. Refusals a retry cannot
// change (host key, credentials, unreadable key files) are permanent.
func (d *dialer) dial(ctx context.Context) (*conn, error) {
	o := d.o
	addr := o.addr()
	cfg, err := d.clientConfig(addr)
	if err != nil {
		return nil, storage.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// The handshake has no context of its own: the deadline bounds it.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, classifyHandshake(addr, o, err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	sess, err := sftp.NewClient(client,
		sftp.MaxPacket(packetSize),
		sftp.MaxConcurrentRequestsPerFile(o.Requests),
		sftp.UseConcurrentWrites(true),
		sftp.UseFstat(true))
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("start SFTP on %s (is the sftp subsystem enabled?): %w", addr, err)
	}
	c := &conn{ssh: client, sftp: sess, done: make(chan struct{})}
	go func() {
		_ = client.Wait()
		close(c.done)
	}()
	return c, nil
}

// clientConfig reads the key files and builds the host key check.
func (d *dialer) clientConfig(addr string) (*ssh.ClientConfig, error) {
	o := d.o
	cfg := &ssh.ClientConfig{User: o.User}
	if o.PrivateKeyPath != "" {
		pem, err := os.ReadFile(o.PrivateKeyPath)
		if err != nil {
			return nil, fmt.Errorf("SSH_PRIVATE_KEY_PATH: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			var pass *ssh.PassphraseMissingError
			if errors.As(err, &pass) {
				return nil, fmt.Errorf("SSH_PRIVATE_KEY_PATH %s: the key is encrypted with a passphrase, which tusk cannot ask for", o.PrivateKeyPath)
			}
			return nil, fmt.Errorf("SSH_PRIVATE_KEY_PATH %s: not a private key tusk can read: %w", o.PrivateKeyPath, err)
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if o.Password != "" {
		pw := o.Password
		cfg.Auth = append(cfg.Auth, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	if o.InsecureIgnoreHostKey {
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey()
		return cfg, nil
	}
	check, err := knownhosts.New(o.KnownHostsPath)
	if err != nil {
		return nil, fmt.Errorf("TUSK_SSH_KNOWN_HOSTS %s: %w", o.KnownHostsPath, err)
	}
	cfg.HostKeyCallback = check
	// Ask only for the key types known_hosts holds for this host, so a
	// server offering another type first is not taken for a changed key.
	cfg.HostKeyAlgorithms = knownAlgorithms(check, addr)
	return cfg, nil
}

// knownAlgorithms lists the host key algorithms known_hosts has for addr,
// learnt by checking a key no file holds: the error lists the known ones.
func knownAlgorithms(check ssh.HostKeyCallback, addr string) []string {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(check(addr, tcp, probeKey{}), &keyErr) {
		return nil
	}
	var algos []string
	for _, k := range keyErr.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			// An RSA host key signs with SHA-2 on current servers.
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	return algos
}

// probeKey is a public key no known_hosts line can hold.
type probeKey struct{}

func (probeKey) Type() string                            { return "tusk-probe" }
func (probeKey) Marshal() []byte                         { return []byte("tusk-probe") }
func (probeKey) Verify(_ []byte, _ *ssh.Signature) error { return errors.New("probe") }

// classifyHandshake turns a failed SSH handshake into one line saying
// what to fix: host key and login refusals are permanent; anything else
// (a reset, a server restarting) may pass.
func classifyHandshake(addr string, o Options, err error) error {
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return storage.Permanent(fmt.Errorf("SSH host key of %s is not in %s (TUSK_SSH_KNOWN_HOSTS): add it after checking its fingerprint, e.g. with ssh-keyscan -p %d %s", addr, o.KnownHostsPath, o.Port, o.Host))
	case errors.As(err, &keyErr):
		w := keyErr.Want[0]
		return storage.Permanent(fmt.Errorf("SSH host key of %s does not match the one in %s line %d: refusing to connect (the server's key changed, or someone is in between)", addr, w.Filename, w.Line))
	case errors.As(err, &revoked):
		return storage.Permanent(fmt.Errorf("SSH host key of %s is revoked in %s", addr, o.KnownHostsPath))
	case strings.Contains(err.Error(), "unable to authenticate"):
		return storage.Permanent(fmt.Errorf("SSH login as %q on %s refused: check SSH_USERNAME and SSH_PRIVATE_KEY_PATH or SSH_PASSWORD", o.User, addr))
	case errors.Is(err, io.EOF):
		return fmt.Errorf("SSH handshake with %s: the server closed the connection", addr)
	}
	return fmt.Errorf("SSH handshake with %s: %w", addr, err)
}

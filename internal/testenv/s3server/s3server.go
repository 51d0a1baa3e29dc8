// Package s3server runs a throwaway S3 server for tests and benchmarks:
// versitygw with its posix backend on a private directory, listening on
// 127.0.0.1, over plain HTTP or TLS with a freshly generated CA. Run returns
// plain errors (benchmarks use it); Start binds the server to a test.
//
// The versitygw binary is found through $TUSK_VERSITYGW, PATH, or the Go bin
// directory (scripts/install-deps.sh installs it there). When it is missing
// a test is skipped, except under CI=true where that is a failure.
package s3server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersitygwModule and VersitygwVersion are the server scripts/install-deps.sh
// installs.
const (
	VersitygwModule  = "github.com/versity/versitygw/cmd/versitygw"
	VersitygwVersion = "v1.8.0"
)

// InstallHint says how to get the server binary.
const InstallHint = "go install " + VersitygwModule + "@" + VersitygwVersion + " (or scripts/install-deps.sh), or set TUSK_VERSITYGW"

// ErrNoBinary is returned by FindBinary when there is no versitygw.
var ErrNoBinary = errors.New("versitygw not found; install with " + InstallHint)

const (
	startTimeout = 20 * time.Second
	stopTimeout  = 5 * time.Second
)

// Options configure a server. The zero value is a plain-HTTP server with
// bucket "tusk" and generated keys.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost signed
	// by a CA generated for this server; Server.CAFile holds that CA.
	TLS bool
	// Bucket is created at start; "tusk" when empty.
	Bucket string
	// Prefix is the path inside the bucket that Env puts in WALG_S3_PREFIX.
	Prefix string
	// AccessKey and SecretKey of the root user; generated when empty.
	AccessKey, SecretKey string
	// Dir holds the server's data and log; a new temp dir when empty. Run
	// removes only a dir it made.
	Dir string
}

// Server is a running (or stopped) versitygw. Its fields are fixed for its
// lifetime, across Stop and Restart.
type Server struct {
	Endpoint  string // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT"
	Bucket    string
	Prefix    string
	Region    string
	AccessKey string
	SecretKey string
	// CAFile is the PEM file of the CA that signed the server certificate
	// (empty without TLS). It is world-readable, so a tusk run as another OS
	// user (archive_command under the postgres user) can read it.
	CAFile string
	// DataDir is the posix backend's root; the bucket is DataDir/Bucket.
	DataDir string

	t        testing.TB // set by Start; Restart fails it
	bin      string
	work     string // removed by Close when ownWork
	ownWork  bool
	addr     string
	logPath  string
	certFile string
	keyFile  string
	roots    *x509.CertPool // nil without TLS
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start runs a server for the test and stops it, removing its files, when the
// test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := FindBinary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("s3server: versitygw not found (CI=true requires it); install with %s", InstallHint)
		}
		t.Skipf("skipped: %v", err)
	}
	if opts.Dir == "" {
		// Removed after the cleanup below stops the server (cleanups run
		// last-in first-out).
		opts.Dir = t.TempDir()
	}
	s, err := Run(opts)
	if err != nil {
		t.Fatalf("s3server: %v", err)
	}
	s.t = t
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("s3server: versitygw log tail:\n%s", s.logTail(4096))
		}
		if err := s.Close(); err != nil {
			t.Errorf("s3server: %v", err)
		}
	})
	return s
}

// Run starts a server and creates its bucket. Close stops it and removes
// its files.
func Run(opts Options) (s *Server, err error) {
	bin, err := FindBinary()
	if err != nil {
		return nil, err
	}
	s = &Server{
		Bucket:    opts.Bucket,
		Prefix:    strings.Trim(opts.Prefix, "/"),
		Region:    "us-east-1",
		AccessKey: opts.AccessKey,
		SecretKey: opts.SecretKey,
		bin:       bin,
		work:      opts.Dir,
	}
	if s.Bucket == "" {
		s.Bucket = "tusk"
	}
	if s.AccessKey == "" {
		s.AccessKey = "tusk" + randomHex(8)
	}
	if s.SecretKey == "" {
		s.SecretKey = randomHex(20)
	}
	if s.work == "" {
		if s.work, err = os.MkdirTemp("", "tusk-s3-"); err != nil {
			return nil, err
		}
		s.ownWork = true
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	s.DataDir = filepath.Join(s.work, "data")
	s.logPath = filepath.Join(s.work, "versitygw.log")
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return s, err
	}
	scheme := "http"
	if opts.TLS {
		scheme = "https"
		if err := s.makeCerts(); err != nil {
			return s, fmt.Errorf("generating TLS certificates: %w", err)
		}
	}
	// A free port can be taken between our probe and versitygw's bind; try a
	// few ports before giving up.
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return s, err
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.Endpoint = scheme + "://" + s.addr
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		return s, fmt.Errorf("starting versitygw: %w", err)
	}
	if err := s.createBucket(); err != nil {
		return s, fmt.Errorf("creating bucket %s: %w", s.Bucket, err)
	}
	return s, nil
}

// Close stops the server and removes its certificates, and its data and log
// unless they are in the caller's opts.Dir.
func (s *Server) Close() error {
	s.Stop()
	var err error
	if s.CAFile != "" {
		err = os.RemoveAll(filepath.Dir(s.CAFile))
	}
	if s.ownWork {
		err = errors.Join(err, os.RemoveAll(s.work))
	}
	return err
}

// FindBinary returns the versitygw executable: $TUSK_VERSITYGW, PATH, or the
// Go bin directories.
func FindBinary() (string, error) {
	if p := os.Getenv("TUSK_VERSITYGW"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("TUSK_VERSITYGW=%s is not an executable file", p)
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNoBinary
}

func goBinDirs() []string {
	var dirs []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) >= 1 && strings.TrimSpace(lines[0]) != "" {
			dirs = append(dirs, strings.TrimSpace(lines[0]))
		}
		if len(lines) >= 2 {
			for p := range strings.SplitSeq(strings.TrimSpace(lines[1]), string(os.PathListSeparator)) {
				if p != "" {
					dirs = append(dirs, filepath.Join(p, "bin"))
				}
			}
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	return dirs
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Port is the server's TCP port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Pid is the server process's pid, 0 when stopped.
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// URL is the s3:// URL of path inside the bucket.
func (s *Server) URL(path string) string {
	path = strings.Trim(path, "/")
	if path == "" {
		return "s3://" + s.Bucket
	}
	return "s3://" + s.Bucket + "/" + path
}

// Env returns the settings that point tusk (or WAL-G) at this server's
// Prefix, as NAME=value strings for an environment.
func (s *Server) Env() []string { return s.EnvFor(s.Prefix) }

// EnvFor is Env with another path inside the bucket as WALG_S3_PREFIX.
func (s *Server) EnvFor(prefix string) []string {
	env := []string{
		"WALG_S3_PREFIX=" + s.URL(prefix),
		"AWS_ENDPOINT=" + s.Endpoint,
		"AWS_REGION=" + s.Region,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_S3_FORCE_PATH_STYLE=true",
	}
	if s.CAFile != "" {
		env = append(env, "WALG_S3_CA_CERT_FILE="+s.CAFile)
	}
	return env
}

// Setting looks name up in Env, in the shape of a settings lookup function.
func (s *Server) Setting(name string) (string, bool) {
	for _, kv := range s.Env() {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// HTTPClient returns a client that trusts the server's CA, for tests that
// talk to the server directly.
func (s *Server) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.roots}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Client returns an S3 client with the root keys, for tests that need to
// inspect or arrange the bucket behind the code under test.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:   s.HTTPClient(),
		// versitygw, like other S3 implementations, does not need the SDK's
		// default flexible checksums.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Objects maps every key under prefix in the bucket to its size.
func (s *Server) Objects(ctx context.Context, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s.URL(prefix), err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return out, nil
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Stop terminates the server (its whole process group) and waits for it. The
// data stays; Restart brings the server back on the same address. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Kill kills the server at once (SIGKILL to its process group), as a crash
// would, and waits for it; requests in flight get no answer. The data stays
// for Restart. Killing a stopped server does nothing.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// Restart stops the server if it runs and starts it again with the same
// address, keys and data, failing the test of a server from Start.
func (s *Server) Restart() {
	if s.t == nil {
		panic("s3server: Restart needs a server from Start; use Relaunch")
	}
	s.t.Helper()
	if err := s.Relaunch(); err != nil {
		s.t.Fatalf("s3server: %v", err)
	}
}

// Relaunch is Restart with the error returned.
func (s *Server) Relaunch() error {
	s.Stop()
	if err := s.start(); err != nil {
		return fmt.Errorf("restarting versitygw on %s: %w", s.addr, err)
	}
	return nil
}

func (s *Server) start() error {
	args := []string{
		"--access", s.AccessKey,
		"--secret", s.SecretKey,
		"--region", s.Region,
		"--port", s.addr,
	}
	if s.certFile != "" {
		args = append(args, "--cert", s.certFile, "--key", s.keyFile)
	}
	args = append(args, "posix", s.DataDir)
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, args...)
	// Keys come from the flags only, never from a stray ROOT_ACCESS_KEY or
	// VGW_* in the test's environment.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.work}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	if err := s.waitReady(); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// waitReady polls until the server answers HTTP (any status: an anonymous
// request gets 403) or the process exits.
func (s *Server) waitReady() error {
	client := s.HTTPClient()
	client.Timeout = time.Second
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("versitygw exited during start-up: %v", s.cmd.ProcessState)
		default:
		}
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %v: %w", s.Endpoint, startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) createBucket() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)})
	return err
}

func (s *Server) logTail(n int64) string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return err.Error()
	}
	return string(buf)
}

// makeCerts writes a CA and a server certificate for 127.0.0.1 / localhost
// into a world-readable directory (only the CA must be readable by other
// users; the key stays 0600).
func (s *Server) makeCerts() error {
	dir, err := os.MkdirTemp("", "tusk-s3-tls-")
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tusk test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return err
	}
	s.roots = x509.NewCertPool()
	s.roots.AddCert(caCert)
	s.CAFile = filepath.Join(dir, "ca.pem")
	s.certFile = filepath.Join(dir, "server.pem")
	s.keyFile = filepath.Join(dir, "server-key.pem")
	return errors.Join(
		writePEM(s.CAFile, "CERTIFICATE", caDER, 0o644),
		writePEM(s.certFile, "CERTIFICATE", srvDER, 0o644),
		writePEM(s.keyFile, "EC PRIVATE KEY", keyDER, 0o600),
	)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// randomHex returns n random bytes as hex; crypto/rand does not fail on
// Linux.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

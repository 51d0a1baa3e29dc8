// Package s3env is the S3 side both benchmark harnesses share: a CA and a
// server certificate made with openssl, a versitygw (posix backend, TLS,
// 127.0.0.1 only) command line, and clients for the bucket. Starting and
// stopping the process stays with each harness, which owns its children.
package s3env

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersitygwModule and VersitygwVersion are what the harnesses install.
const (
	VersitygwModule  = "github.com/versity/versitygw/cmd/versitygw"
	VersitygwVersion = "v1.8.0"
)

// Server describes one versitygw instance and its bucket.
type Server struct {
	Region, Bucket        string
	Access, Secret        string
	Port                  int
	Endpoint              string // https://127.0.0.1:Port
	CAFile, CertFile, Key string
	DataDir               string
	versitygw, home       string
}

// New makes the TLS files under dir/tls and picks credentials; Command
// then gives the command line for a free port. The CA file is readable by
// every user, since archivers running as the server user are handed it.
func New(ctx context.Context, dir, region, bucket string) (*Server, error) {
	gw, err := FindVersitygw()
	if err != nil {
		return nil, err
	}
	s := &Server{Region: region, Bucket: bucket, Access: "bench" + RandomHex(6), Secret: RandomHex(20),
		DataDir: filepath.Join(dir, "s3"), versitygw: gw, home: dir}
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, err
	}
	if err := s.makeCerts(ctx, filepath.Join(dir, "tls")); err != nil {
		return nil, fmt.Errorf("making TLS certificates: %w", err)
	}
	return s, nil
}

func (s *Server) makeCerts(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.CAFile, s.CertFile, s.Key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	caKey, csr, ext := filepath.Join(dir, "ca.key"), filepath.Join(dir, "server.csr"), filepath.Join(dir, "server.ext")
	if err := os.WriteFile(ext, []byte("subjectAltName=DNS:localhost,IP:127.0.0.1\n"+
		"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", caKey, "-out", s.CAFile, "-days", "7", "-subj", "/CN=tusk bench CA",
			"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"},
		{"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", s.Key, "-out", csr, "-subj", "/CN=localhost"},
		{"x509", "-req", "-in", csr, "-CA", s.CAFile, "-CAkey", caKey, "-CAcreateserial",
			"-out", s.CertFile, "-days", "7", "-extfile", ext},
	} {
		if out, err := exec.CommandContext(ctx, "openssl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("openssl %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
		}
	}
	for _, f := range []string{caKey, s.Key} {
		if err := os.Chmod(f, 0o600); err != nil {
			return err
		}
	}
	return os.Chmod(s.CAFile, 0o644)
}

// Command picks a free port and returns the versitygw command line for it.
// Another process can take the port before versitygw binds it: callers
// retry with a new Command when Wait fails.
func (s *Server) Command() (*exec.Cmd, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s.Port, s.Endpoint = port, fmt.Sprintf("https://127.0.0.1:%d", port)
	cmd := exec.Command(s.versitygw, "--access", s.Access, "--secret", s.Secret, "--region", s.Region,
		"--port", fmt.Sprintf("127.0.0.1:%d", port), "--cert", s.CertFile, "--key", s.Key, "posix", s.DataDir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.home}
	return cmd, nil
}

// Wait polls the endpoint until it answers, running reports false, or
// within passes.
func (s *Server) Wait(ctx context.Context, running func() bool, within time.Duration) error {
	client := s.HTTPClient()
	client.Timeout = time.Second
	deadline := time.Now().Add(within)
	for {
		if running != nil && !running() {
			return errors.New("versitygw exited during start-up (see its log)")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no answer on %s: %w", s.Endpoint, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CreateBucket creates the server's bucket.
func (s *Server) CreateBucket(ctx context.Context) error {
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		return fmt.Errorf("creating bucket %s: %w", s.Bucket, err)
	}
	return nil
}

// HTTPClient trusts the server's CA.
func (s *Server) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(s.CAFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// Client is an S3 client for the server.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.Access, s.Secret, ""),
		HTTPClient:   s.HTTPClient(),
		// versitygw does not need the SDK's default flexible checksums.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Objects maps every key under prefix to its size.
func (s *Server) Objects(ctx context.Context, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", s.Bucket, prefix, err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return out, nil
}

// Env points tusk (or WAL-G) at the bucket under prefix.
func (s *Server) Env(prefix string) []string {
	return []string{
		"WALG_S3_PREFIX=s3://" + s.Bucket + "/" + strings.Trim(prefix, "/"),
		"AWS_ENDPOINT=" + s.Endpoint,
		"AWS_REGION=" + s.Region,
		"AWS_ACCESS_KEY_ID=" + s.Access,
		"AWS_SECRET_ACCESS_KEY=" + s.Secret,
		"AWS_S3_FORCE_PATH_STYLE=true",
		"WALG_S3_CA_CERT_FILE=" + s.CAFile,
	}
}

// FindVersitygw looks in TUSK_VERSITYGW, PATH, then GOBIN and GOPATH/bin.
func FindVersitygw() (string, error) {
	if p := os.Getenv("TUSK_VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var dirs []string
		if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
			dirs = append(dirs, strings.TrimSpace(lines[0]))
		}
		if len(lines) > 1 {
			for d := range strings.SplitSeq(strings.TrimSpace(lines[1]), ":") {
				dirs = append(dirs, filepath.Join(d, "bin"))
			}
		}
		for _, d := range dirs {
			p := filepath.Join(d, "versitygw")
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", errors.New("versitygw not found (go install " + VersitygwModule + "@" + VersitygwVersion + ")")
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomHex returns n random bytes as hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b)
}

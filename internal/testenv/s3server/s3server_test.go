package s3server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func roundTrip(t *testing.T, s *Server, key, body string) {
	t.Helper()
	ctx := context.Background()
	c := s.Client()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String(key), Body: strings.NewReader(body),
	}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	wantObject(t, s, key, body)
}

func wantObject(t *testing.T, s *Server, key, body string) {
	t.Helper()
	out, err := s.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer out.Body.Close()
	got, err := io.ReadAll(out.Body)
	if err != nil || string(got) != body {
		t.Fatalf("GetObject = %q, %v; want %q", got, err, body)
	}
}

func TestHTTPStopRestart(t *testing.T) {
	s := Start(t, Options{Bucket: "bkt1", Prefix: "/some/path/"})
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") || s.CAFile != "" {
		t.Fatalf("Endpoint %q CAFile %q", s.Endpoint, s.CAFile)
	}
	if v, ok := s.Setting("WALG_S3_PREFIX"); !ok || v != "s3://bkt1/some/path" {
		t.Fatalf("WALG_S3_PREFIX = %q, %v", v, ok)
	}
	if _, ok := s.Setting("WALG_S3_CA_CERT_FILE"); ok {
		t.Fatal("CA file set without TLS")
	}
	roundTrip(t, s, "some/path/obj", "hello")
	if fi, err := os.Stat(s.DataDir + "/bkt1/some/path/obj"); err != nil || fi.Size() != 5 {
		t.Fatalf("object not in the posix backend dir: %v", err)
	}

	s.Stop()
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	if _, err := s.HTTPClient().Get(s.Endpoint + "/"); err == nil {
		t.Fatal("server still answers after Stop")
	}
	s.Stop() // idempotent

	s.Restart()
	if !s.Running() {
		t.Fatal("not Running after Restart")
	}
	wantObject(t, s, "some/path/obj", "hello")
}

func TestTLS(t *testing.T) {
	s := Start(t, Options{TLS: true})
	if !strings.HasPrefix(s.Endpoint, "https://127.0.0.1:") {
		t.Fatalf("Endpoint %q", s.Endpoint)
	}
	if v, ok := s.Setting("WALG_S3_CA_CERT_FILE"); !ok || v != s.CAFile {
		t.Fatalf("WALG_S3_CA_CERT_FILE = %q, %v", v, ok)
	}
	fi, err := os.Stat(s.CAFile)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		t.Fatalf("CA file %s not world-readable: %v %v", s.CAFile, fi.Mode(), err)
	}
	roundTrip(t, s, "tls-obj", "secure")

	// Without the CA the certificate is not trusted.
	_, err = http.Get(s.Endpoint + "/")
	var certErr interface{ Error() string }
	if err == nil || !errors.As(err, &certErr) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("plain client: %v, want a certificate error", err)
	}
}

// TestRunWithoutTest drives the error-returning API the benchmarks use: a
// server in a caller's dir, objects listed, per-prefix settings, and Close
// stopping it while leaving the caller's dir.
func TestRunWithoutTest(t *testing.T) {
	if _, err := FindBinary(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	s, err := Run(Options{TLS: true, Bucket: "bench", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Port() == 0 || s.Pid() == 0 || s.DataDir != dir+"/data" {
		t.Fatalf("Port %d Pid %d DataDir %s", s.Port(), s.Pid(), s.DataDir)
	}
	roundTrip(t, s, "run/a", "12345")
	objs, err := s.Objects(context.Background(), "run/")
	if err != nil || len(objs) != 1 || objs["run/a"] != 5 {
		t.Fatalf("Objects = %v, %v; want run/a of 5 bytes", objs, err)
	}
	if got := s.EnvFor("/x/y/")[0]; got != "WALG_S3_PREFIX=s3://bench/x/y" {
		t.Errorf("EnvFor: %s", got)
	}
	pid, ca := s.Pid(), s.CAFile
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("versitygw %d alive after Close (kill: %v)", pid, err)
	}
	if _, err := os.Stat(ca); !os.IsNotExist(err) {
		t.Errorf("CA file %s left after Close: %v", ca, err)
	}
	if _, err := os.Stat(dir + "/data/bench/run/a"); err != nil {
		t.Errorf("Close removed the caller's dir: %v", err)
	}
}

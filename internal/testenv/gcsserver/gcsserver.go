// Package gcsserver runs a throwaway Google Cloud Storage emulator for
// tests: fake-gcs-server (the Go program) with its in-memory backend on a
// loopback port, over plain HTTP. Clients reach it as Google's client
// library does, through STORAGE_EMULATOR_HOST.
//
// The binary is found through $TUSK_FAKE_GCS_SERVER, PATH, or the Go bin
// directory (scripts/install-deps.sh installs it there). When it is
// missing a test is skipped, except under CI=true where that is a failure.
package gcsserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// Module and Version are the server scripts/install-deps.sh installs.
const (
	Module  = "github.com/fsouza/fake-gcs-server"
	Version = "v1.56.1"
)

// Server is a running fake-gcs-server.
type Server struct {
	// Host is "127.0.0.1:PORT", the value for STORAGE_EMULATOR_HOST.
	Host   string
	Bucket string
	proc   *testenv.Proc
	bin    string
	dir    string
	port   int
	onDisk bool
}

// Start runs a server with bucket "tusk" for the test and stops it when
// the test ends. Its objects live in the server's memory.
func Start(t testing.TB) *Server { return start(t, false) }

// StartOnDisk is Start with the objects in files under a directory of the
// test (the filesystem backend), which outlive Kill for Restart.
func StartOnDisk(t testing.TB) *Server { return start(t, true) }

func start(t testing.TB, onDisk bool) *Server {
	t.Helper()
	bin := testenv.RequireTool(t, "fake-gcs-server", "TUSK_FAKE_GCS_SERVER")
	s, err := startIn(bin, t.TempDir(), onDisk)
	if s != nil {
		t.Cleanup(func() {
			s.proc.Stop()
			if t.Failed() {
				t.Logf("gcsserver: log tail:\n%s", s.proc.LogTail(4096))
			}
		})
	}
	if err != nil {
		t.Fatalf("gcsserver: %v", err)
	}
	return s
}

// Run is StartOnDisk outside a test (benchmarks), with the objects under
// dir; Stop ends it.
func Run(dir string) (*Server, error) {
	bin, err := testenv.FindTool("fake-gcs-server", "TUSK_FAKE_GCS_SERVER")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s, err := startIn(bin, dir, true)
	if err != nil && s != nil {
		s.Stop()
	}
	return s, err
}

// startIn runs the server with its files under dir and creates bucket
// "tusk"; a server that started is returned even when that fails.
func startIn(bin, dir string, onDisk bool) (*Server, error) {
	var s *Server
	var err error
	// A free port can be taken between the probe and the server's bind.
	for range 3 {
		if s, err = run(bin, dir, 0, onDisk); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s.Bucket = "tusk"
	return s, s.CreateBucket(context.Background(), s.Bucket)
}

// run starts the server on port, or on a free port when it is 0.
func run(bin, dir string, port int, onDisk bool) (*Server, error) {
	var err error
	if port == 0 {
		if port, err = testenv.FreePort(); err != nil {
			return nil, err
		}
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(port),
		"-public-host", host, "-external-url", "http://" + host, "-log-level", "warn"}
	if onDisk {
		args = append(args, "-backend", "filesystem", "-filesystem-root", filepath.Join(dir, "data"))
	} else {
		args = append(args, "-backend", "memory")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"HOME=" + dir}
	proc, err := testenv.StartProc(cmd, filepath.Join(dir, "fake-gcs-server.log"), 30*time.Second,
		testenv.HTTPReady("http://"+host+"/storage/v1/b"))
	if err != nil {
		return nil, err
	}
	return &Server{Host: host, proc: proc, bin: bin, dir: dir, port: port, onDisk: onDisk}, nil
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.proc.Pid() }

// Kill kills the server at once (SIGKILL), as a crash would; requests in
// flight get no answer. Objects on disk (StartOnDisk) stay for Restart.
func (s *Server) Kill() { s.proc.Kill() }

// Restart stops the server if it runs and starts it again on the same
// port with the same files.
func (s *Server) Restart() error {
	s.proc.Stop()
	n, err := run(s.bin, s.dir, s.port, s.onDisk)
	if err != nil {
		return fmt.Errorf("gcsserver: restarting on port %d: %w", s.port, err)
	}
	s.proc = n.proc
	return nil
}

// Stop stops the server; its objects are gone with it, unless on disk.
func (s *Server) Stop() { s.proc.Stop() }

// URL is the gs:// URL of path inside the bucket.
func (s *Server) URL(path string) string {
	return strings.TrimRight("gs://"+s.Bucket+"/"+strings.Trim(path, "/"), "/")
}

// Env returns the settings that point tusk at prefix inside the bucket.
func (s *Server) Env(prefix string) []string {
	return []string{"WALG_GS_PREFIX=" + s.URL(prefix), "STORAGE_EMULATOR_HOST=" + s.Host}
}

// CreateBucket creates a bucket through the JSON API.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	body, _ := json.Marshal(map[string]string{"name": name})
	_, err := s.do(ctx, http.MethodPost, "/storage/v1/b?project=tusk", body)
	if err != nil {
		return fmt.Errorf("creating bucket %s: %w", name, err)
	}
	return nil
}

// Objects maps the name of every object under prefix to its size, as the
// server lists them (for tests that look behind the code under test).
func (s *Server) Objects(ctx context.Context, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	token := ""
	for {
		q := url.Values{"prefix": {prefix}}
		if token != "" {
			q.Set("pageToken", token)
		}
		b, err := s.do(ctx, http.MethodGet, "/storage/v1/b/"+url.PathEscape(s.Bucket)+"/o?"+q.Encode(), nil)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s.URL(prefix), err)
		}
		var page struct {
			Items []struct {
				Name string `json:"name"`
				Size string `json:"size"`
			} `json:"items"`
			NextPageToken string `json:"nextPageToken"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, fmt.Errorf("listing %s: %w", s.URL(prefix), err)
		}
		for _, it := range page.Items {
			n, _ := strconv.ParseInt(it.Size, 10, 64)
			out[it.Name] = n
		}
		if token = page.NextPageToken; token == "" {
			return out, nil
		}
	}
}

func (s *Server) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.Host+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// Package azurite runs a throwaway Azure Blob Storage emulator for tests:
// Azurite's blob service (npm package azurite) on a loopback port, with
// its data in a temporary directory and the emulator's well-known
// devstoreaccount1 account. It serves path-style URLs
// (http://127.0.0.1:PORT/devstoreaccount1), which tusk reaches through
// TUSK_AZURE_ENDPOINT.
//
// The program is found through $TUSK_AZURITE, PATH, or
// .tmp/azurite/node_modules/.bin/azurite-blob, where
// scripts/install-deps.sh installs it. When it is missing a test is
// skipped, except under CI=true where that is a failure.
package azurite

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// Version is the azurite package scripts/install-deps.sh installs.
const Version = "3.37.0"

// The emulator's well-known account: public, documented by Microsoft for
// every Azurite and Storage Emulator install.
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Server is a running Azurite blob service.
type Server struct {
	// Endpoint is the path-style service URL,
	// "http://127.0.0.1:PORT/devstoreaccount1".
	Endpoint  string
	Container string
	proc      *testenv.Proc
	bin, dir  string
	port      int
}

// Start runs Azurite with container "tusk" for the test and stops it when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := testenv.RequireTool(t, "azurite-blob", "TUSK_AZURITE", binPath)
	s, err := startIn(bin, t.TempDir())
	if s != nil {
		t.Cleanup(func() {
			s.proc.Stop()
			if t.Failed() {
				t.Logf("azurite: log tail:\n%s", s.proc.LogTail(4096))
			}
		})
	}
	if err != nil {
		t.Fatalf("azurite: %v", err)
	}
	return s
}

// binPath is where scripts/install-deps.sh installs Azurite, from the
// module root.
const binPath = ".tmp/azurite/node_modules/.bin/azurite-blob"

// Run is Start outside a test (benchmarks): the server keeps its data
// under dir; Stop ends it.
func Run(dir string) (*Server, error) {
	bin, err := testenv.FindTool("azurite-blob", "TUSK_AZURITE", binPath)
	if err != nil {
		return nil, err
	}
	s, err := startIn(bin, dir)
	if err != nil && s != nil {
		s.Stop()
	}
	return s, err
}

// startIn runs Azurite with its data under dir and creates container
// "tusk"; a server that started is returned even when that fails.
func startIn(bin, dir string) (*Server, error) {
	var s *Server
	var err error
	for range 3 { // a free port can be taken before Azurite binds it
		if s, err = run(bin, dir, 0); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s.Container = "tusk"
	return s, s.CreateContainer(context.Background(), s.Container)
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.proc.Pid() }

// run starts Azurite on port, or on a free port when it is 0, with its
// data under dir.
func run(bin, dir string, port int) (*Server, error) {
	var err error
	if port == 0 {
		if port, err = testenv.FreePort(); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	// The SDK may speak a newer API version than this Azurite knows.
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--location", data, "--skipApiVersionCheck", "--disableProductStyleUrl")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	endpoint := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/" + Account
	proc, err := testenv.StartProc(cmd, filepath.Join(dir, "azurite.log"), 60*time.Second,
		testenv.HTTPReady(endpoint+"?comp=list"))
	if err != nil {
		return nil, err
	}
	return &Server{Endpoint: endpoint, proc: proc, bin: bin, dir: dir, port: port}, nil
}

// Stop stops the server.
func (s *Server) Stop() { s.proc.Stop() }

// Kill kills the server at once (SIGKILL), as a crash would; requests in
// flight get no answer. Its data directory stays for Restart, holding
// what Azurite had saved: it writes its metadata (containers, blobs)
// every MetadataSaveInterval, so what it acknowledged in the last
// interval is lost, which a real service never does.
func (s *Server) Kill() { s.proc.Kill() }

// MetadataSaveInterval is how often Azurite saves its metadata to disk
// (LokiJS autosave in its blob metadata store), plus a margin.
const MetadataSaveInterval = 6 * time.Second

// Restart stops the server if it runs and starts it again on the same
// port with the same data directory.
func (s *Server) Restart() error {
	s.proc.Stop()
	n, err := run(s.bin, s.dir, s.port)
	if err != nil {
		return fmt.Errorf("azurite: restarting on port %d: %w", s.port, err)
	}
	s.proc = n.proc
	return nil
}

// URL is the azure:// URL of path inside the container.
func (s *Server) URL(path string) string {
	return strings.TrimRight("azure://"+s.Container+"/"+strings.Trim(path, "/"), "/")
}

// Env returns the settings that point tusk at prefix inside the container.
func (s *Server) Env(prefix string) []string {
	return []string{
		"WALG_AZ_PREFIX=" + s.URL(prefix),
		"AZURE_STORAGE_ACCOUNT=" + Account,
		"AZURE_STORAGE_ACCESS_KEY=" + Key,
		"TUSK_AZURE_ENDPOINT=" + s.Endpoint,
	}
}

// Client returns a service client with the account key, for tests that
// arrange or inspect the storage behind the code under test.
func (s *Server) Client() (*azblob.Client, error) {
	cred, err := azblob.NewSharedKeyCredential(Account, Key)
	if err != nil {
		return nil, err
	}
	return azblob.NewClientWithSharedKeyCredential(s.Endpoint+"/", cred, nil)
}

// CreateContainer creates a container.
func (s *Server) CreateContainer(ctx context.Context, name string) error {
	c, err := s.Client()
	if err == nil {
		_, err = c.CreateContainer(ctx, name, nil)
	}
	if err != nil {
		return fmt.Errorf("creating container %s: %w", name, err)
	}
	return nil
}

// Objects maps the name of every blob under prefix to its size.
func (s *Server) Objects(ctx context.Context, prefix string) (map[string]int64, error) {
	c, err := s.Client()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	p := c.NewListBlobsFlatPager(s.Container, &azblob.ListBlobsFlatOptions{Prefix: &prefix})
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s.URL(prefix), err)
		}
		for _, b := range page.Segment.BlobItems {
			out[*b.Name] = *b.Properties.ContentLength
		}
	}
	return out, nil
}

// Package kmsserver runs a throwaway AWS KMS emulator for tests: local-kms
// (the Go program github.com/nsmithuk/local-kms) on a loopback port over
// plain HTTP, seeded with one symmetric key and an alias for it. Clients
// reach it through TUSK_KMS_ENDPOINT.
//
// local-kms wraps a data key as 1 byte of length, the key's ARN, 4 bytes of
// key version and AES-GCM's nonce, ciphertext and tag; AWS's blob for a
// 32-byte key is 184 bytes, the length WAL-G reads back. Start picks an
// account id whose ARN makes local-kms's blob 184 bytes too, so objects
// have WAL-G's exact layout.
//
// The binary is found through $TUSK_LOCAL_KMS, PATH, or the Go bin
// directory (scripts/install-deps.sh installs it there). When it is
// missing a test is skipped, except under CI=true where that is a failure.
package kmsserver

import (
	"fmt"
	"net"
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
	Module  = "github.com/nsmithuk/local-kms"
	Version = "v0.0.0-20260228092603-2a5e92d09ab6"
)

const (
	// Region is the emulator's region.
	Region = "eu-west-2"
	// KeyID is the seeded key; Alias names it too.
	KeyID = "5f0b1a2c-3d4e-4f60-8a1b-2c3d4e5f6a7b"
	Alias = "alias/tusk-test"
	// backingKey is the seeded key's AES-256 key material (test only).
	backingKey = "4a1f3c5e7d9b2a4c6e8f0a1b3c5d7e9f2b4d6f8a0c2e4a6b8d0f2a4c6e8b0d2f"
	// arnLenForAWSBlob is the ARN length that gives a 184-byte blob:
	// 184 - 1 (length) - 4 (version) - 12 (nonce) - 32 (key) - 16 (tag).
	arnLenForAWSBlob = 184 - 1 - 4 - 12 - 32 - 16
)

// Server is a running local-kms.
type Server struct {
	// Endpoint is "http://127.0.0.1:PORT", the value for TUSK_KMS_ENDPOINT.
	Endpoint string
	// AccountID is the emulator's AWS account; KeyARN is the seeded key's.
	AccountID, KeyARN string
	proc              *testenv.Proc
}

// Start runs a server whose wrapped keys are 184 bytes, as AWS's, and
// stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	fixed := len("arn:aws:kms:" + Region + "::key/" + KeyID)
	return StartAccount(t, strings.Repeat("1", arnLenForAWSBlob-fixed))
}

// StartAccount runs a server with the given account id (its length sets
// the length of wrapped keys).
func StartAccount(t testing.TB, account string) *Server {
	t.Helper()
	bin := testenv.RequireTool(t, "local-kms", "TUSK_LOCAL_KMS")
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seed, []byte(seedYAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	var s *Server
	var err error
	// A free port can be taken between the probe and the server's bind.
	for range 3 {
		if s, err = run(bin, dir, seed, account); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("kmsserver: %v", err)
	}
	t.Cleanup(func() {
		s.proc.Stop()
		if t.Failed() {
			t.Logf("kmsserver: log tail:\n%s", s.proc.LogTail(4096))
		}
	})
	return s
}

func seedYAML() string {
	return fmt.Sprintf(`Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: %s
        BackingKeys:
          - %s
Aliases:
  - AliasName: %s
    TargetKeyId: %s
`, KeyID, backingKey, Alias, KeyID)
}

func run(bin, dir, seed, account string) (*Server, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	data := filepath.Join(dir, "data-"+strconv.Itoa(port))
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"HOME=" + dir, "PORT=" + strconv.Itoa(port),
		"KMS_ACCOUNT_ID=" + account, "KMS_REGION=" + Region,
		"KMS_SEED_PATH=" + seed, "KMS_DATA_PATH=" + data,
	}
	proc, err := testenv.StartProc(cmd, filepath.Join(dir, "local-kms.log"), 30*time.Second,
		testenv.HTTPReady("http://"+host+"/"))
	if err != nil {
		return nil, err
	}
	return &Server{
		Endpoint:  "http://" + host,
		AccountID: account,
		KeyARN:    "arn:aws:kms:" + Region + ":" + account + ":key/" + KeyID,
		proc:      proc,
	}, nil
}

// Stop stops the server.
func (s *Server) Stop() { s.proc.Stop() }

// Env returns the settings that make tusk encrypt with the seeded key
// through this server. local-kms checks no signature, but the AWS SDK
// signs, so some credentials must be there; the instance metadata
// service is turned off so the SDK never looks for one.
func (s *Server) Env() []string {
	return []string{
		"WALG_CSE_KMS_ID=" + KeyID,
		"WALG_CSE_KMS_REGION=" + Region,
		"TUSK_KMS_ENDPOINT=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=tusk-test", "AWS_SECRET_ACCESS_KEY=tusk-test-secret",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

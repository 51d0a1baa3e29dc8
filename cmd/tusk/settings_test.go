package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command validates the configuration the same way before it does
// anything: the memory plan refuses what the daemon would refuse.
func TestMemoryPlanRefusesBadStorageSettings(t *testing.T) {
	for _, env := range []map[string]string{
		{"WALG_FILE_PREFIX": "relative/path"},
		{"WALG_S3_PREFIX": "s3://bucket/p", "WALG_S3_SSE": "aws:kms"},
	} {
		_, _, err := runTusk(t, env, "daemon", "--memory-plan")
		if err == nil {
			t.Errorf("%v: daemon --memory-plan accepted it", env)
			continue
		}
		for k := range env {
			if k != "WALG_S3_PREFIX" && !strings.Contains(err.Error(), k) {
				t.Errorf("%v: error %q does not name %s", env, err, k)
			}
		}
	}
}

// A config file others can write is refused, naming the file.
func TestWorldWritableConfigRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "walg.json")
	if err := os.WriteFile(p, []byte(`{"WALG_FILE_PREFIX": "/tmp/x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	_, _, err := runTusk(t, nil, "--config", p, "daemon", "--memory-plan")
	if err == nil || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v, want one line naming %s", err, p)
	}
}

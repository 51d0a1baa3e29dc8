package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/tusk-pg/tusk/internal/crypt"
)

// With WALG_CSE_KMS_ID, backup-fetch's plan holds one KMS decrypting
// reader per download, at the crypter's stated size; building the plan
// makes no KMS request (the endpoint here answers nothing).
func TestMemoryPlanKMS(t *testing.T) {
	env := map[string]string{
		"WALG_FILE_PREFIX":          filepath.Join(t.TempDir(), "storage"),
		"WALG_DOWNLOAD_CONCURRENCY": "3",
		"WALG_CSE_KMS_ID":           "alias/tusk",
		"WALG_CSE_KMS_REGION":       "eu-west-2",
		"TUSK_KMS_ENDPOINT":         "http://127.0.0.1:1",
	}
	stdout, stderr, err := runTusk(t, env, "backup-fetch", "--memory-plan", "--json", filepath.Join(t.TempDir(), "r"), "LATEST")
	if err != nil {
		t.Fatalf("backup-fetch --memory-plan: %v\n%s", err, stderr)
	}
	cr, err := crypt.FromSettings(context.Background(), crypt.Settings{KMSKeyID: "alias/tusk", KMSRegion: "eu-west-2"})
	if err != nil {
		t.Fatal(err)
	}
	_, reader := crypt.MemoryEstimate(cr)
	var plan struct {
		Items []struct {
			Component string `json:"component"`
			Count     int    `json:"count"`
			Each      int64  `json:"each_bytes"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	for _, it := range plan.Items {
		if it.Component == "decryption (aws-kms)" {
			if it.Count != 3 || it.Each != reader || reader == 0 {
				t.Errorf("KMS decryption: %+v", it)
			}
			return
		}
	}
	t.Errorf("no KMS decryption in the plan: %s", stdout)
}

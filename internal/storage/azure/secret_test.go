package azure

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A SAS token is a credential carried in the request URL: an error about a
// request that never got an answer (the SDK quotes the URL) must not show it.
func TestUnreachableErrorHidesSASToken(t *testing.T) {
	s, err := New(Options{
		Container: "ctr", AccountName: "devstoreaccount1",
		SASToken: "sv=2022-11-02&sig=SECRETSIGNATURE", Endpoint: "http://127.0.0.1:9/devstoreaccount1",
		TryTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = s.Get(ctx, "wal_005/x")
	if err == nil {
		t.Fatal("Get from an unreachable endpoint succeeded")
	}
	if strings.Contains(err.Error(), "SECRETSIGNATURE") || strings.Contains(err.Error(), "sig=") {
		t.Errorf("error shows the SAS token: %v", err)
	}
}

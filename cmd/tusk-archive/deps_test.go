package main

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// TestLinksOnlyArchiving: tusk-archive links file and S3 storage and the
// WAL commands, and none of what tusk links for its other storages and
// commands, whose package initialisers and code pages each one-shot
// archive_command run would carry (docs/benchmarks.md).
func TestLinksOnlyArchiving(t *testing.T) {
	deps := testenv.LinkedPackages(t)
	for _, want := range []string{
		"github.com/tusk-pg/tusk/internal/cli",
		"github.com/tusk-pg/tusk/internal/storage/file",
		"github.com/tusk-pg/tusk/internal/storage/s3",
		"github.com/tusk-pg/tusk/internal/wal",
	} {
		found := false
		for _, p := range deps {
			found = found || p == want
		}
		if !found {
			t.Errorf("does not link %s", want)
		}
	}
	heavy := []string{
		"github.com/tusk-pg/tusk/internal/storage/all",
		"github.com/tusk-pg/tusk/internal/storage/gcs",
		"github.com/tusk-pg/tusk/internal/storage/azure",
		"github.com/tusk-pg/tusk/internal/storage/sftp",
		"github.com/tusk-pg/tusk/internal/backup",
		"github.com/tusk-pg/tusk/internal/daemon",
		"github.com/tusk-pg/tusk/internal/pg",
		"github.com/tusk-pg/tusk/internal/receive",
		"github.com/Azure/",
		"github.com/pkg/sftp",
		"golang.org/x/crypto/ssh",
		"github.com/jackc/",
		"github.com/jedib0t/go-pretty",
		"cloud.google.com/go/",
		"google.golang.org/",
		"go.opentelemetry.io/",
		"github.com/apache/arrow-go/",
	}
	for _, pkg := range deps {
		for _, h := range heavy {
			if pkg == h || strings.HasPrefix(pkg, h+"/") || (strings.HasSuffix(h, "/") && strings.HasPrefix(pkg, h)) {
				t.Errorf("links %s", pkg)
			}
		}
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// Every package linked into tusk runs its initialisers, and faults in its
// code, in every process, a one-shot wal-push included. These modules were
// measured to add megabytes of RSS to each start without serving tusk:
// Apache Arrow comes with azblob from v1.8.1 (an opt-in list format), Google's
// storage client brings gRPC and OpenTelemetry (see docs/benchmarks.md).
func TestLinksNoHeavyPackages(t *testing.T) {
	heavy := []string{
		"github.com/apache/arrow-go/",
		"cloud.google.com/go/",
		"google.golang.org/grpc",
		"go.opentelemetry.io/",
	}
	for _, pkg := range testenv.LinkedPackages(t) {
		for _, h := range heavy {
			if strings.HasPrefix(pkg, h) {
				t.Errorf("links %s", pkg)
			}
		}
	}
}

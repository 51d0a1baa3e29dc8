package main

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
)

// The client's reason to exist is what it does not link: no crypto (whose
// 32 MiB entropy buffer is committed memory in every process) and none of
// tusk's storage, configuration or command packages (whose initialisers
// run on every start).
func TestLinksNoCryptoAndNoTuskInternals(t *testing.T) {
	allowed := map[string]bool{
		"github.com/tusk-pg/tusk/cmd/tusk-daemon-client":    true,
		"github.com/tusk-pg/tusk/internal/daemon/clientcmd": true,
		"github.com/tusk-pg/tusk/internal/daemon/wire":      true,
	}
	for _, pkg := range testenv.LinkedPackages(t) {
		switch {
		case strings.HasPrefix(pkg, "crypto/") || strings.Contains(pkg, "/crypto/") || pkg == "crypto":
			t.Errorf("links %s", pkg)
		case strings.HasPrefix(pkg, "vendor/"): // the standard library's own
		case strings.Contains(pkg, "."):
			if !allowed[pkg] {
				t.Errorf("links %s", pkg)
			}
		}
	}
}

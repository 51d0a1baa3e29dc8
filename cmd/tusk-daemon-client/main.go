// Command tusk-daemon-client is `tusk daemon-client` alone (WAL-G's
// walg-daemon-client command line, package clientcmd), for
// archive_command and restore_command, which start one client per WAL
// segment. The tusk binary links TLS and encryption, and with them the
// 32 MiB entropy scratch buffer that Go puts in the writable data of every
// program using crypto: charged as committed memory on each start under
// vm.overcommit_memory=2, with its package initialisers run every time.
// This binary links neither.
//
// Linked with -ldflags=-E=main.entry (the Makefile and scripts/dist.sh do
// it on linux/amd64), it answers the common request, a wal-push or
// wal-fetch without flags that the daemon acknowledges, before the Go
// runtime starts: about 1 ms of CPU per run instead of 8 on a small VM
// (docs/benchmarks.md). Anything else starts the runtime and main.
package main

import (
	"context"
	"os"

	"github.com/tusk-pg/tusk/internal/daemon/clientcmd"
)

// Set by the build (-ldflags "-X main.version=...").
var (
	version   = "devel"
	gitCommit = "unknown"
	buildDate = "unknown"
)

// SIGTERM and SIGINT keep their default action, ending the process at
// once: a client holds nothing to clean up (the daemon finishes or drops
// the request on its own), and not installing handlers is start-up work
// saved on every segment.
func main() {
	if status, ok := clientcmd.Resume(os.Stdout, os.Stderr); ok {
		os.Exit(status)
	}
	os.Exit(clientcmd.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, version+"\t"+gitCommit+"\t"+buildDate))
}

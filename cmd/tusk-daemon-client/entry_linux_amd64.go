//go:build !cgo

// The entry point sets the thread pointer itself, which would clobber the C
// library's in a cgo (or race) build: such builds have no main.entry, and
// linking them with -E=main.entry fails instead of crashing at run time.

package main

import "github.com/tusk-pg/tusk/internal/daemon/clientcmd"

// The build links this binary with -ldflags=-E=main.entry (Makefile,
// scripts/dist.sh): entry (entry_linux_amd64.s) calls prestart before the
// runtime starts, and only a request it could not settle starts the
// runtime and main. Without the flag the binary starts as any Go program
// and main does all the work. See clientcmd.Prestart.

// preTLS and preG stand in for the thread-local slot and the g that Go
// code expects before the runtime has made its own.
var (
	preTLS [2]uintptr
	preG   [64]uintptr
)

//go:nosplit
func prestart(argc int, argv **byte) int { return clientcmd.Prestart(argc, argv) }

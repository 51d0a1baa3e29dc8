//go:build !linux

// Command daemonload needs Linux (/proc).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "daemonload runs on Linux only")
	os.Exit(2)
}

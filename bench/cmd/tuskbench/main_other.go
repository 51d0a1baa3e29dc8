//go:build !linux

// Command tuskbench measures WAL archivers; it reads /proc and runs only on
// Linux.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "tuskbench: Linux only")
	os.Exit(2)
}

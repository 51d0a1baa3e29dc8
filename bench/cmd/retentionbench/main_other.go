//go:build !linux

// Command retentionbench needs Linux (/proc).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "retentionbench runs on Linux only")
	os.Exit(2)
}

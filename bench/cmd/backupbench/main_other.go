//go:build !linux

// Command backupbench needs Linux (/proc, setuid children).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "backupbench runs on Linux only")
	os.Exit(2)
}

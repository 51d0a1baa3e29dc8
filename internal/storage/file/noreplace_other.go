//go:build !linux

package file

import (
	"fmt"
	"os"
	"syscall"
)

// renameNoReplace has no atomic form here: refuse rather than race.
func renameNoReplace(from, to string) error {
	return &os.LinkError{Op: "rename without replace", Old: from, New: to, Err: fmt.Errorf("hard links unsupported: %w", syscall.ENOTSUP)}
}

package crypt

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// maxKeyFile bounds how much of a key file is read.
const maxKeyFile = 1 << 20

// readKeyFile reads the key file a setting names. The open does not block
// and anything but a regular file is refused, so a FIFO or a device named
// by mistake (or by someone else) cannot hang or flood the command.
// Messages name the setting and the path, never the content.
func readKeyFile(setting, path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %s is not a regular file (%s)", setting, path, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", setting, path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes; is it a key file?", setting, path, maxKeyFile)
	}
	return b, nil
}

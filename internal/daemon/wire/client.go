package wire

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Request sends one message to the daemon at socketPath and returns its
// one-byte reply. connectTimeout bounds the dial, timeout the whole
// exchange (WAL-G's -connection-timeout and -timeout).
func Request(ctx context.Context, socketPath string, typ byte, args []string, connectTimeout, timeout time.Duration) (byte, error) {
	if _, err := os.Stat(socketPath); err != nil {
		return 0, fmt.Errorf("daemon socket %s: %w", socketPath, err)
	}
	msg, err := EncodeMessage(typ, args...)
	if err != nil {
		return 0, err
	}
	d := net.Dialer{Timeout: connectTimeout}
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return 0, fmt.Errorf("connect to daemon at %s: %w", socketPath, err)
	}
	defer conn.Close()
	if timeout > 0 {
		conn.SetDeadline(time.Now().Add(timeout))
	}
	if _, err := conn.Write(msg); err != nil {
		return 0, fmt.Errorf("send to daemon at %s: %w", socketPath, err)
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return 0, fmt.Errorf("read daemon reply from %s: %w", socketPath, err)
	}
	return b[0], nil
}

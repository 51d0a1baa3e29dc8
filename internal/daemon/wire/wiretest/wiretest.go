// Package wiretest serves stand-in daemon sockets for the client's tests.
package wiretest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tusk-pg/tusk/internal/daemon/wire"
)

// Listen serves a Unix socket named name in a short temporary directory
// (socket paths are limited to about 100 bytes), calling serve for each
// connection, which is closed after it; it returns the socket's path.
func Listen(t testing.TB, name string, serve func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tusk-wire-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, name)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return sock
}

// Replier reads one request, sends it on frames (its type byte, then its
// body), and answers reply, or closes without an answer when reply is 0.
func Replier(reply byte, frames chan<- []byte) func(net.Conn) {
	return func(c net.Conn) {
		m, err := wire.ReadMessage(c, make([]byte, wire.MaxMessage))
		if err != nil {
			return
		}
		frames <- append([]byte{m.Type}, m.Body...)
		if reply != 0 {
			c.Write([]byte{reply})
		}
	}
}

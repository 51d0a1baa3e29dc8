package restore

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/catchup"
)

// After its hello the receiver sends the sender nothing but the end of the
// connection. WAL-G's catchup-send reads the hello's gob values and never
// reads again: any byte more (such as an LZ4 end mark) stays unread in its
// socket, so when it exits its kernel resets the connection, and what it
// had sent last but the receiver had not yet read is lost ("connection
// reset by peer" in the middle of a file).
func TestCatchupReceiveSendsNothingAfterHello(t *testing.T) {
	f := newReceiveFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		_, err := CatchupReceive(ctx, ReceiveOptions{DataDir: f.pgdata, Listen: "127.0.0.1:0", Listening: func(a net.Addr) { addrs <- a }})
		done <- err
	}()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("receiver: %v", err)
	}
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := catchup.NewConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	// The frame reader reads exactly what a message needs, as WAL-G's
	// does: whatever follows is still in the socket.
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := nc.Read(buf)
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("after the hello the receiver sent % x (%v), want only the end of the connection", buf[:n], err)
	}
	cancel()
	<-done
}

package restore

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/catchup"
)

// testControl is a pg_control of PostgreSQL 13-16's layout for system
// sysID with its REDO point at redo.
func testControl(sysID, redo uint64) []byte {
	b := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint64(b[0:], sysID)
	le.PutUint32(b[8:], 1300)
	le.PutUint64(b[32:], redo+40)
	le.PutUint64(b[40:], redo)
	le.PutUint32(b[48:], 1)
	le.PutUint64(b[208:], math.Float64bits(1234567.0))
	le.PutUint32(b[216:], 8192)
	le.PutUint32(b[220:], 131072)
	le.PutUint32(b[288:], crc32.Checksum(b[:288], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// receiveFixture is a standby data directory next to a directory outside
// it that nothing may touch.
type receiveFixture struct {
	pgdata, outside string
	control         []byte
}

func newReceiveFixture(t *testing.T) receiveFixture {
	t.Helper()
	base := t.TempDir()
	f := receiveFixture{pgdata: filepath.Join(base, "pgdata"), outside: filepath.Join(base, "outside"), control: testControl(77, 0x5000028)}
	for _, d := range []string{"global", "base/1", "pg_wal", "outside"} {
		if err := os.MkdirAll(filepath.Join(f.pgdata, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(f.pgdata, "outside"))
	if err := os.MkdirAll(f.outside, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"global/pg_control":      f.control,
		"base/1/1259":            bytes.Repeat([]byte{1}, 2*8192),
		"base/1/old":             []byte("dropped on the primary"),
		"postgresql.conf":        []byte("primary_conninfo = 'x'"),
		"pg_wal/000000010000000": []byte("wal"),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(f.pgdata, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.outside, "secret"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Planted: a file symlink and a directory symlink leading outside.
	if err := os.Symlink(filepath.Join(f.outside, "secret"), filepath.Join(f.pgdata, "base/1/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.outside, filepath.Join(f.pgdata, "escape")); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f receiveFixture) checkOutside(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir(f.outside)
	b, err := os.ReadFile(filepath.Join(f.outside, "secret"))
	if err != nil || string(b) != "keep" || len(entries) != 1 {
		t.Errorf("outside the data directory: secret %q (%v), %d entries", b, err, len(entries))
	}
}

// receive runs CatchupReceive on f with the sender send, returning both
// errors and what the receiver said first.
func (f receiveFixture) receive(t *testing.T, send func(c *catchup.Conn) error) (recvErr, sendErr error, ctl catchup.Control, list catchup.FileList) {
	t.Helper()
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
	c, err := catchup.NewConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctl, list, sendErr = c.ReadHello()
	if sendErr == nil {
		sendErr = send(c)
	}
	if sendErr == nil {
		sendErr = c.Flush()
	}
	nc.Close()
	return <-done, sendErr, ctl, list
}

func full(c *catchup.Conn, name string, body []byte) error {
	if err := c.WriteCommand(&catchup.Command{IsFull: true, FileName: name, FileSize: uint64(len(body))}); err != nil {
		return err
	}
	return c.WriteContent(bytes.NewReader(body), int64(len(body)), make([]byte, 100))
}

func bin(c *catchup.Conn, name string, body []byte) error {
	return c.WriteCommand(&catchup.Command{IsBinContents: true, FileName: name, BinaryContents: body})
}

// TestCatchupReceive: the hello carries the REDO point and the files but
// not pg_control or excluded directories; whole files (in a new directory
// too), a page increment, a removal and the held files are applied;
// a planted symlink is replaced, never written through.
func TestCatchupReceive(t *testing.T) {
	f := newReceiveFixture(t)
	newControl := testControl(77, 0x9000028)
	page := bytes.Repeat([]byte{9}, 8192)
	recvErr, sendErr, ctl, list := f.receive(t, func(c *catchup.Conn) error {
		if err := full(c, "base/16390/16391", []byte("new database")); err != nil {
			return err
		}
		if err := full(c, "base/1/link", []byte("replaces the link")); err != nil {
			return err
		}
		var inc bytes.Buffer
		if err := backup.WriteIncrementHeader(&inc, 3*8192, []uint32{2}); err != nil {
			return err
		}
		inc.Write(page)
		if err := c.WriteCommand(&catchup.Command{IsIncremental: true, FileName: "base/1/1259", FileSize: uint64(inc.Len())}); err != nil {
			return err
		}
		if err := c.WriteContent(&inc, int64(inc.Len()), make([]byte, 4096)); err != nil {
			return err
		}
		if err := c.WriteCommand(&catchup.Command{IsDelete: true, FilesToDelete: []string{"base/1", "base/1/old", "base/9/gone"}}); err != nil {
			return err
		}
		for _, b := range []struct {
			name string
			body []byte
		}{{"global/pg_control", newControl}, {"backup_label", []byte("START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\n")}, {"tablespace_map", nil}} {
			if err := bin(c, b.name, b.body); err != nil {
				return err
			}
		}
		return c.WriteCommand(&catchup.Command{IsDone: true})
	})
	if recvErr != nil || sendErr != nil {
		t.Fatalf("receiver: %v; sender: %v", recvErr, sendErr)
	}
	if ctl != (catchup.Control{SystemIdentifier: 77, CurrentTimeline: 1, Checkpoint: 0x5000028}) {
		t.Errorf("hello %+v", ctl)
	}
	for _, want := range []string{"base/1/1259", "base/1/old", "base/1/link", "escape", "global", "postgresql.conf"} {
		if _, ok := list[want]; !ok {
			t.Errorf("file list lacks %s: %v", want, list)
		}
	}
	for _, not := range []string{"global/pg_control", "pg_wal", "pg_wal/000000010000000", ""} {
		if _, ok := list[not]; ok {
			t.Errorf("file list holds %q", not)
		}
	}
	f.checkOutside(t)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(f.pgdata, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return string(b)
	}
	if got := read("base/16390/16391"); got != "new database" {
		t.Errorf("new file: %q", got)
	}
	if fi, err := os.Lstat(filepath.Join(f.pgdata, "base/1/link")); err != nil || !fi.Mode().IsRegular() || read("base/1/link") != "replaces the link" {
		t.Errorf("the planted symlink: %v %v", fi, err)
	}
	rel := read("base/1/1259")
	if want := string(bytes.Repeat([]byte{1}, 2*8192)) + string(page); rel != want {
		t.Errorf("page increment: %d bytes", len(rel))
	}
	if _, err := os.Stat(filepath.Join(f.pgdata, "base/1/old")); err == nil {
		t.Error("base/1/old not removed")
	}
	if read("global/pg_control") != string(newControl) || !strings.HasPrefix(read("backup_label"), "START WAL") || read("postgresql.conf") == "" {
		t.Error("held files not written, or the standby's configuration lost")
	}
	leftovers, _ := filepath.Glob(filepath.Join(f.pgdata, "*", ".*tusk-restore"))
	more, _ := filepath.Glob(filepath.Join(f.pgdata, "global", "*tusk-restore"))
	if len(leftovers)+len(more) > 0 {
		t.Errorf("temporary files left: %v %v", leftovers, more)
	}
}

// TestCatchupReceiveCutOff: a sender gone before Done leaves the standby's
// pg_control and no backup_label, even when they were sent already.
func TestCatchupReceiveCutOff(t *testing.T) {
	f := newReceiveFixture(t)
	recvErr, sendErr, _, _ := f.receive(t, func(c *catchup.Conn) error {
		if err := full(c, "base/1/2", []byte("half")); err != nil {
			return err
		}
		if err := bin(c, "backup_label", []byte("START WAL LOCATION")); err != nil {
			return err
		}
		return bin(c, "global/pg_control", testControl(77, 0x9000028))
	})
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	if recvErr == nil {
		t.Error("the receiver took a catch-up without Done for a whole one")
	}
	if b, _ := os.ReadFile(filepath.Join(f.pgdata, "global/pg_control")); !bytes.Equal(b, f.control) {
		t.Error("pg_control replaced by a cut-off catch-up")
	}
	for _, gone := range []string{"backup_label", "global/pg_control.tusk-restore"} {
		if _, err := os.Lstat(filepath.Join(f.pgdata, gone)); err == nil {
			t.Errorf("%s written by a cut-off catch-up", gone)
		}
	}
}

// TestCatchupReceiveRefuses: names leading outside, through a planted
// directory symlink or by "..", and a pg_control of another system end
// the catch-up with nothing written outside and pg_control untouched.
func TestCatchupReceiveRefuses(t *testing.T) {
	for what, send := range map[string]func(c *catchup.Conn) error{
		"through a symlink": func(c *catchup.Conn) error { return full(c, "escape/secret", []byte("overwritten")) },
		"increment through a symlink": func(c *catchup.Conn) error {
			return c.WriteCommand(&catchup.Command{IsIncremental: true, FileName: "base/1/link", FileSize: 16})
		},
		"dot-dot":                     func(c *catchup.Conn) error { return full(c, "../outside/secret", []byte("overwritten")) },
		"absolute":                    func(c *catchup.Conn) error { return bin(c, "/tmp/tusk-catchup-absolute", []byte("x")) },
		"another system's pg_control": func(c *catchup.Conn) error { return bin(c, "global/pg_control", testControl(78, 1)) },
		"pg_control as a file":        func(c *catchup.Conn) error { return full(c, "global/pg_control", []byte("x")) },
	} {
		t.Run(what, func(t *testing.T) {
			f := newReceiveFixture(t)
			recvErr, _, _, _ := f.receive(t, func(c *catchup.Conn) error {
				if err := send(c); err != nil {
					return err
				}
				if err := bin(c, "global/pg_control", f.control); err != nil {
					return err
				}
				return c.WriteCommand(&catchup.Command{IsDone: true})
			})
			if recvErr == nil {
				t.Fatal("accepted")
			}
			t.Log(recvErr)
			f.checkOutside(t)
			if b, _ := os.ReadFile(filepath.Join(f.pgdata, "global/pg_control")); !bytes.Equal(b, f.control) {
				t.Error("pg_control replaced")
			}
		})
	}
}

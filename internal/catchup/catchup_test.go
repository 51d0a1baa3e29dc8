package catchup

import (
	"bytes"
	"crypto/rand"
	"encoding/gob"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"
)

// WAL-G's types, with WAL-G's names and field types
// (internal/databases/postgres: PgControlData, CatchupCommandDto; internal:
// BackupFileDescription, BackupFileList), to check that gob carries values
// between them and this package's in both directions.
type walgLSN uint64

type PgControlData struct {
	SystemIdentifier uint64
	CurrentTimeline  uint32
	Checkpoint       walgLSN
}

type CorruptBlocksInfo struct {
	CorruptBlocksCount int
	SomeCorruptBlocks  []uint32
}

type BackupFileDescription struct {
	IsIncremented bool
	IsSkipped     bool
	MTime         time.Time
	CorruptBlocks *CorruptBlocksInfo `json:",omitempty"`
	UpdatesCount  uint64
}

type BackupFileList map[string]BackupFileDescription

type CatchupCommandDto struct {
	IsDone         bool
	IsIncremental  bool
	IsFull         bool
	IsDelete       bool
	IsBinContents  bool
	FileSize       uint64
	FileName       string
	BinaryContents []byte
	FilesToDelete  []string
}

// walgPeer is the other end as WAL-G sets it up: lz4.NewWriter with the
// library defaults (4 MiB blocks) and lz4.NewReader.
type walgPeer struct {
	zw  *lz4.Writer
	enc *gob.Encoder
	dec *gob.Decoder
}

func newWALGPeer(c net.Conn) *walgPeer {
	zw := lz4.NewWriter(c)
	return &walgPeer{zw: zw, enc: gob.NewEncoder(zw), dec: gob.NewDecoder(lz4.NewReader(c))}
}

func pipe(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-done
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestWALGReceiverToTuskSender: what a WAL-G receiver sends is read by
// ReadHello, and the commands and content tusk sends are what WAL-G's
// receive loop decodes (a content chunk at a time, as its DecoderReader
// and full-file loop do).
func TestWALGReceiverToTuskSender(t *testing.T) {
	tc, wc := pipe(t)
	mtime := time.Date(2026, 12, 7, 15, 0, 0, 123456789, time.UTC)
	peer := newWALGPeer(wc)
	go func() {
		_ = peer.enc.Encode(&PgControlData{SystemIdentifier: 7437893429, CurrentTimeline: 3, Checkpoint: 0x3000028})
		_ = peer.enc.Encode(BackupFileList{"base/1/1259": {MTime: mtime}, "global": {MTime: mtime}, "": {MTime: mtime}})
		_ = peer.zw.Flush()
	}()
	c, err := NewConn(tc)
	if err != nil {
		t.Fatal(err)
	}
	ctl, list, err := c.ReadHello()
	if err != nil {
		t.Fatal(err)
	}
	if ctl != (Control{SystemIdentifier: 7437893429, CurrentTimeline: 3, Checkpoint: 0x3000028}) {
		t.Errorf("control %+v", ctl)
	}
	if len(list) != 3 || !list["base/1/1259"].MTime.Equal(mtime) {
		t.Errorf("file list %+v", list)
	}

	content := bytes.Repeat([]byte("0123456789abcdef"), 1300) // 20800 bytes: 3 chunks
	buf := make([]byte, 4096)
	go func() {
		_ = c.WriteCommand(&Command{FileName: "base/1/1259", IsFull: true, FileSize: uint64(len(content)) + 100})
		_ = c.WriteContent(bytes.NewReader(content), int64(len(content))+100, buf) // shrank by 100 bytes
		_ = c.WriteCommand(&Command{IsDelete: true, FilesToDelete: []string{"base/1/2", "base/1/3"}})
		_ = c.WriteCommand(&Command{IsBinContents: true, FileName: "backup_label", BinaryContents: []byte("START WAL LOCATION")})
		_ = c.WriteCommand(&Command{IsDone: true})
		_ = c.Flush()
		// As the sender ends: WAL-G's library reader returns the last
		// message only at the end of the frame or of the connection.
		_ = c.End()
		_ = tc.(*net.TCPConn).CloseWrite()
	}()
	var cmd CatchupCommandDto
	if err := peer.dec.Decode(&cmd); err != nil {
		t.Fatal(err)
	}
	if !cmd.IsFull || cmd.FileName != "base/1/1259" || cmd.FileSize != uint64(len(content))+100 {
		t.Fatalf("command %+v", cmd)
	}
	var got []byte
	for size := int64(cmd.FileSize); size != 0; {
		var chunk []byte
		if err := peer.dec.Decode(&chunk); err != nil {
			t.Fatal(err)
		}
		if len(chunk) > ChunkSize {
			t.Fatalf("chunk of %d bytes", len(chunk))
		}
		got = append(got, chunk...)
		size -= int64(len(chunk))
	}
	if want := append(append([]byte{}, content...), make([]byte, 100)...); !bytes.Equal(got, want) {
		t.Errorf("content: %d bytes, want %d padded with zeros", len(got), len(want))
	}
	for _, check := range []func(CatchupCommandDto) bool{
		func(c CatchupCommandDto) bool {
			return c.IsDelete && strings.Join(c.FilesToDelete, ",") == "base/1/2,base/1/3"
		},
		func(c CatchupCommandDto) bool {
			return c.IsBinContents && c.FileName == "backup_label" && string(c.BinaryContents) == "START WAL LOCATION"
		},
		func(c CatchupCommandDto) bool { return c.IsDone },
	} {
		cmd = CatchupCommandDto{}
		if err := peer.dec.Decode(&cmd); err != nil {
			t.Fatal(err)
		}
		if !check(cmd) {
			t.Errorf("command %+v", cmd)
		}
	}
}

// TestWALGSenderToTuskReceiver: WAL-G's sender's values, as its
// sendOneFile and HandleCatchupSend encode them, are read by ReadCommand
// and Content; what tusk's receiver sends first decodes into WAL-G's types.
func TestWALGSenderToTuskReceiver(t *testing.T) {
	tc, wc := pipe(t)
	c, err := NewConn(tc)
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1765100000, 5).UTC()
	go func() {
		_ = c.WriteHello(Control{SystemIdentifier: 1, CurrentTimeline: 1, Checkpoint: 42}, FileList{"PG_VERSION": {MTime: mtime}})
		_ = c.End()
		_ = tc.(*net.TCPConn).CloseWrite()
	}()
	peer := newWALGPeer(wc)
	var ctl PgControlData
	var list BackupFileList
	if err := peer.dec.Decode(&ctl); err != nil {
		t.Fatal(err)
	}
	if err := peer.dec.Decode(&list); err != nil {
		t.Fatal(err)
	}
	if ctl.Checkpoint != 42 || ctl.SystemIdentifier != 1 || !list["PG_VERSION"].MTime.Equal(mtime) {
		t.Errorf("WAL-G decoded %+v %+v", ctl, list)
	}

	// Random bytes: LZ4 stores them uncompressed.
	content := make([]byte, 3*ChunkSize+17)
	rand.Read(content)
	go func() {
		_ = peer.enc.Encode(CatchupCommandDto{FileName: "base/5/16384", IsFull: true, FileSize: uint64(len(content))})
		for rest := content; len(rest) > 0; {
			n := min(len(rest), ChunkSize)
			_ = peer.enc.Encode(rest[:n])
			rest = rest[n:]
		}
		_ = peer.enc.Encode(CatchupCommandDto{FileName: "global/pg_control", IsBinContents: true, BinaryContents: []byte{1, 2}})
		_ = peer.enc.Encode(CatchupCommandDto{IsDone: true})
		_ = peer.zw.Flush()
	}()
	var cmd Command
	if err := c.ReadCommand(&cmd); err != nil {
		t.Fatal(err)
	}
	if !cmd.IsFull || cmd.FileName != "base/5/16384" {
		t.Fatalf("command %+v", cmd)
	}
	got, err := io.ReadAll(c.Content(cmd.FileSize))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content: %d bytes, %v", len(got), err)
	}
	if err := c.ReadCommand(&cmd); err != nil || !cmd.IsBinContents || cmd.FileName != "global/pg_control" {
		t.Fatalf("command %+v, %v", cmd, err)
	}
	if err := c.ReadCommand(&cmd); err != nil || !cmd.IsDone {
		t.Fatalf("command %+v, %v", cmd, err)
	}
}

func TestContentDrainAndOverrun(t *testing.T) {
	var raw bytes.Buffer
	enc := gob.NewEncoder(&raw)
	_ = enc.Encode(Command{IsFull: true, FileName: "a", FileSize: 10})
	_ = enc.Encode([]byte("0123"))
	_ = enc.Encode([]byte("456789"))
	_ = enc.Encode(Command{IsFull: true, FileName: "b", FileSize: 3})
	_ = enc.Encode([]byte("toolong"))
	c := decoderConn(&raw)
	var cmd Command
	if err := c.ReadCommand(&cmd); err != nil {
		t.Fatal(err)
	}
	r := c.Content(cmd.FileSize)
	var two [2]byte
	if _, err := io.ReadFull(r, two[:]); err != nil || string(two[:]) != "01" {
		t.Fatalf("%q %v", two, err)
	}
	if err := r.Drain(); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadCommand(&cmd); err != nil || cmd.FileName != "b" {
		t.Fatalf("after drain: %+v %v", cmd, err)
	}
	if _, err := io.ReadAll(c.Content(cmd.FileSize)); err == nil || !strings.Contains(err.Error(), "overruns") {
		t.Errorf("a 7-byte chunk for a 3-byte file: %v", err)
	}
}

func TestMessageLimit(t *testing.T) {
	var raw bytes.Buffer
	enc := gob.NewEncoder(&raw)
	_ = enc.Encode(Command{IsBinContents: true, FileName: "big", BinaryContents: make([]byte, 3000)})
	c := decoderConn(bytes.NewReader(raw.Bytes()))
	c.dec = gob.NewDecoder(&messageLimiter{r: bytes.NewReader(raw.Bytes()), max: 1000})
	var cmd Command
	if err := c.ReadCommand(&cmd); err == nil || !strings.Contains(err.Error(), "more than the 1000 allowed") {
		t.Errorf("a 3000-byte message under a 1000-byte limit: %v", err)
	}
	c.dec = gob.NewDecoder(&messageLimiter{r: bytes.NewReader(raw.Bytes()), max: 4000})
	if err := c.ReadCommand(&cmd); err != nil || len(cmd.BinaryContents) != 3000 {
		t.Errorf("under a 4000-byte limit: %v", err)
	}
	// A length prefix claiming 8 GiB is refused on its own bytes.
	c.dec = gob.NewDecoder(&messageLimiter{r: bytes.NewReader([]byte{0xfb, 2, 0, 0, 0, 0}), max: MaxMessage})
	if err := c.ReadCommand(&cmd); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("an 8 GiB length prefix: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", "/etc/passwd", "../x", "..", "base/../../x", "base//1", "base/./1", "a/", "a\x00b", "./a"} {
		if CheckName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"global/pg_control", "backup_label", "base/1/1259.1", "pg_tblspc/16385/PG_15_202209061/5/16390", "..a"} {
		if err := CheckName(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	var cmd Command
	var raw bytes.Buffer
	_ = gob.NewEncoder(&raw).Encode(Command{IsDelete: true, FilesToDelete: []string{"base/1", "../../etc"}})
	if err := decoderConn(&raw).ReadCommand(&cmd); err == nil {
		t.Error("a delete command naming ../../etc accepted")
	}
}

// decoderConn reads gob values straight from r, without LZ4: the layer
// the fuzz target and these tests exercise.
func decoderConn(r io.Reader) *Conn {
	return &Conn{dec: gob.NewDecoder(&messageLimiter{r: r, max: MaxMessage})}
}

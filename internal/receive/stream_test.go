package receive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/pg"
)

const (
	testSegSize = 16 << 20
	walPerMsg   = 128 << 10 // the walsender's MAX_SEND_SIZE
)

// walsender is a fake physical walsender on loopback TCP: after the
// handshake it answers one START_REPLICATION as reply says.
type walsender struct {
	ln net.Listener
	// reply: "stream" sends msgs XLogData messages of 128 KiB from the
	// requested position, then CopyDone, and names timeline 2 once the
	// client answers CopyDone; "quiet" sends msgs messages and then
	// nothing; "ended" names timeline 2 at once (the
	// requested position is the timeline's end); "error" fails it.
	reply string
	msgs  int
	done  chan error
}

func startWalsender(t *testing.T, reply string, msgs int) *walsender {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &walsender{ln: ln, reply: reply, msgs: msgs, done: make(chan error, 1)}
	go func() { w.done <- w.serve() }()
	t.Cleanup(func() { ln.Close() })
	return w
}

// walByte is the content of WAL byte at LSN lsn, so the spool can be
// checked.
func walByte(lsn uint64) byte { return byte(lsn*7 + lsn>>16) }

func (w *walsender) serve() error {
	c, err := w.ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return err
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	q, ok := msg.(*pgproto3.Query)
	if !ok || !strings.HasPrefix(q.String, "START_REPLICATION SLOT walg PHYSICAL ") {
		return fmt.Errorf("unexpected %T %+v", msg, msg)
	}
	var hi, lo uint32
	if _, err := fmt.Sscanf(strings.Fields(q.String)[4], "%X/%X", &hi, &lo); err != nil {
		return err
	}
	lsn := uint64(hi)<<32 | uint64(lo)
	nextTimeline := func() {
		be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("next_tli")}, {Name: []byte("next_tli_startpos")}}})
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("2"), []byte("0/3000000")}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT")})
	}
	switch w.reply {
	case "ended":
		nextTimeline()
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("START_REPLICATION")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		return be.Flush()
	case "error":
		be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "58P01", Message: "requested WAL segment has already been removed"})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		return be.Flush()
	}
	be.Send(&pgproto3.CopyBothResponse{})
	if err := be.Flush(); err != nil {
		return err
	}
	// One frame, rewritten in place: the server allocates nothing per
	// message, so the client's allocations can be counted.
	frame := make([]byte, 1+4+1+24+walPerMsg)
	frame[0] = 'd'
	binary.BigEndian.PutUint32(frame[1:], uint32(len(frame)-1))
	frame[5] = 'w'
	for i := 0; i < w.msgs; i++ {
		binary.BigEndian.PutUint64(frame[6:], lsn)
		binary.BigEndian.PutUint64(frame[14:], lsn+walPerMsg)
		for j := range walPerMsg {
			frame[30+j] = walByte(lsn + uint64(j))
		}
		if _, err := c.Write(frame); err != nil {
			return err
		}
		lsn += walPerMsg
	}
	if w.reply == "quiet" {
		// A primary with no new WAL: nothing until the client leaves.
		_, err := io.Copy(io.Discard, c)
		return err
	}
	be.Send(&pgproto3.CopyDone{})
	if err := be.Flush(); err != nil {
		return err
	}
	// Standby status updates until the client's CopyDone.
	for {
		msg, err := be.Receive()
		if err != nil {
			return err
		}
		if _, ok := msg.(*pgproto3.CopyDone); ok {
			break
		}
		if _, ok := msg.(*pgproto3.CopyData); !ok {
			return fmt.Errorf("unexpected %T while streaming", msg)
		}
	}
	nextTimeline()
	be.Send(&pgproto3.CommandComplete{CommandTag: []byte("START_REPLICATION")})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return err
	}
	// The client may run one more command on the idle connection.
	if msg, err = be.Receive(); err == nil {
		be.Send(&pgproto3.EmptyQueryResponse{})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		return be.Flush()
	}
	return nil
}

func newTestReceiver(t *testing.T, w *walsender) *Receiver {
	t.Helper()
	conn, err := pgconn.Connect(context.Background(), fmt.Sprintf("postgres://u@%s/?sslmode=disable", w.ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	dir, err := fsutil.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	r := New(conn, Options{Slot: "walg", SegmentSize: testSegSize, Dir: dir, StatusInterval: time.Hour})
	r.tli = 1
	r.pos = 2 * testSegSize
	r.flushed = r.pos
	return r
}

// streamAllocs streams msgs messages of 128 KiB into the spool (less than
// a segment: nothing is stored) and returns the allocations the process made
// meanwhile.
func streamAllocs(t *testing.T, msgs int) (mallocs, bytes uint64) {
	t.Helper()
	w := startWalsender(t, "stream", msgs)
	r := newTestReceiver(t, w)
	defer r.closeFile()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	next, err := r.stream(context.Background())
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if next != 2 {
		t.Fatalf("next timeline %d, want 2", next)
	}
	if want := pg.LSN(2*testSegSize + msgs*walPerMsg); r.pos != want {
		t.Fatalf("position %s after the stream, want %s", r.pos, want)
	}
	// The connection is idle again: pgconn runs the next command.
	if err := r.conn.Exec(context.Background(), "").Close(); err != nil {
		t.Fatalf("command after the stream: %v", err)
	}
	if err := <-w.done; err != nil {
		t.Fatalf("walsender: %v", err)
	}
	return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc
}

// TestStreamAllocations: reading the replication stream allocates nothing
// per message (one read buffer for the stream's life), so its garbage does
// not grow with the WAL rate. pgx's ReceiveMessage took a 256 KiB buffer
// from its pool for every 128 KiB message and a deadline context per call.
func TestStreamAllocations(t *testing.T) {
	const few, many = 8, 72
	m1, b1 := streamAllocs(t, few)
	m2, b2 := streamAllocs(t, many)
	perMsg := float64(int64(m2)-int64(m1)) / (many - few)
	perMsgBytes := float64(int64(b2)-int64(b1)) / (many - few)
	t.Logf("%d messages: %d allocations, %d bytes; %d messages: %d allocations, %d bytes; %.2f allocations and %.0f bytes per message",
		few, m1, b1, many, m2, b2, perMsg, perMsgBytes)
	if perMsg >= 0.5 || perMsgBytes >= 1024 {
		t.Errorf("%.2f allocations, %.0f bytes per replication message; want none", perMsg, perMsgBytes)
	}
}

// TestStreamContent: the spooled bytes are the streamed WAL.
func TestStreamContent(t *testing.T) {
	const msgs = 20
	w := startWalsender(t, "stream", msgs)
	r := newTestReceiver(t, w)
	if _, err := r.stream(context.Background()); err != nil {
		t.Fatal(err)
	}
	name := r.fileName
	r.closeFile()
	got, err := r.opts.Dir.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != msgs*walPerMsg {
		t.Fatalf("spooled %d bytes, want %d", len(got), msgs*walPerMsg)
	}
	want := make([]byte, len(got))
	for i := range want {
		want[i] = walByte(2*testSegSize + uint64(i))
	}
	if !bytes.Equal(got, want) {
		t.Fatal("spooled WAL differs from the streamed WAL")
	}
}

// TestStreamTimelineEnded: START_REPLICATION at the end of a timeline
// streams nothing and names the next timeline.
func TestStreamTimelineEnded(t *testing.T) {
	w := startWalsender(t, "ended", 0)
	r := newTestReceiver(t, w)
	next, err := r.stream(context.Background())
	if err != nil || next != 2 {
		t.Fatalf("stream: next %d, %v; want 2", next, err)
	}
	if err := <-w.done; err != nil {
		t.Fatalf("walsender: %v", err)
	}
}

// TestStreamError: the server's error is returned with its code.
func TestStreamError(t *testing.T) {
	w := startWalsender(t, "error", 0)
	r := newTestReceiver(t, w)
	_, err := r.stream(context.Background())
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "58P01" {
		t.Fatalf("stream: %v; want the server's 58P01", err)
	}
}

// TestStreamCancel: cancelling the context ends a stream waiting for WAL
// promptly.
func TestStreamCancel(t *testing.T) {
	w := startWalsender(t, "quiet", 1)
	r := newTestReceiver(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.stream(ctx)
	r.closeFile()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stream: %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stream took %v to stop after cancel", d)
	}
}

// Package receive implements wal-receive: WAL streamed from PostgreSQL over
// a physical replication connection and archived segment by segment exactly
// as wal-push archives it (same object names, codec and encryption: each
// file goes through wal.Archiver.PushFile).
//
// Progress lives in the server's replication slot, as with WAL-G: the
// receiver acknowledges (flush position of its standby status updates) only
// the end of the last segment stored, so the slot keeps every byte not yet
// in storage, and a restart, after a crash or a SIGKILL, resumes from the
// slot's restart_lsn at the start of the segment that was being received.
// Nothing acknowledged is ever only in memory or in the spool.
//
// Memory: the segment being received is spooled to a file (one per stream,
// in Options.Dir), never held in memory. Besides one replication message
// (the walsender sends at most 128 KiB of WAL at a time) the receiver holds
// only what one wal-push upload holds (see wal.Archiver), so its footprint
// does not grow with the segment size or the WAL rate.
package receive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walindex"
)

// MessageBytes bounds one replication message as held in memory: the
// stream's one read buffer, of this size, holds a whole message (at most
// 128 KiB of WAL, the walsender's MAX_SEND_SIZE, and its headers); pgx's 8
// KiB read buffer, used for the other commands, fits in the rest.
const MessageBytes = 128<<10 + 8<<10 + 64

// StatusInterval is how often a standby status update is sent when nothing
// else asks for one (WAL-G's StandbyMessageTimeout).
const StatusInterval = 10 * time.Second

// Options configure a Receiver.
type Options struct {
	// Slot is the physical replication slot (WALG_SLOTNAME).
	Slot string
	// SegmentSize is the server's wal_segment_size in bytes.
	SegmentSize int64
	// Dir is the spool directory; the receiver owns the WAL file names in
	// it.
	Dir *os.Root
	// Archiver stores each finished file, as wal-push does.
	Archiver *wal.Archiver
	// StatusInterval overrides the StatusInterval constant (tests).
	StatusInterval time.Duration
	Log            *slog.Logger
}

// Receiver streams WAL from one replication connection into storage.
type Receiver struct {
	opts Options
	conn *pgconn.PgConn
	log  *slog.Logger

	tli uint32
	// pos is the next byte expected from the stream; flushed is the end
	// of the last segment stored, the position acknowledged to the server.
	pos, flushed pg.LSN
	// file is the spool file of the segment holding pos, nil until its
	// first byte arrives.
	file     *os.File
	fileName string
	// rd reads the replication stream (see stream), made once.
	rd *bufio.Reader

	nextStatus time.Time
}

// New returns a receiver on conn, a replication connection
// (pg.ConnectReplication).
func New(conn *pgconn.PgConn, opts Options) *Receiver {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = StatusInterval
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Receiver{opts: opts, conn: conn, log: log}
}

// Run receives WAL until ctx ends or the server fails: it creates the slot
// when it is absent (slot.Exists false), starts at the slot's restart_lsn
// (the server's current position for a new slot), and follows timeline
// switches. It returns ctx's error once ctx is cancelled.
func (r *Receiver) Run(ctx context.Context, slot pg.PhysicalSlot) error {
	defer r.closeFile()
	if err := r.cleanSpool(); err != nil {
		return err
	}
	sys, err := pglogrepl.IdentifySystem(ctx, r.conn)
	if err != nil {
		return fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	start := pg.LSN(sys.XLogPos)
	switch {
	case !slot.Exists:
		// RESERVE_WAL: the slot holds WAL from now on, not only from the
		// first status update.
		if _, err := pglogrepl.CreateReplicationSlot(ctx, r.conn, r.opts.Slot, "",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.PhysicalReplication, SnapshotAction: "RESERVE_WAL"}); err != nil {
			return fmt.Errorf("create physical replication slot %s (WALG_SLOTNAME): %w", r.opts.Slot, err)
		}
		r.log.Info("wal-receive: created replication slot", "slot", r.opts.Slot)
	case slot.RestartLSN != 0:
		start = slot.RestartLSN
	}
	segSize := pg.LSN(r.opts.SegmentSize)
	r.pos = start - start%segSize
	r.flushed = r.pos
	r.tli, err = r.startTimeline(ctx, uint32(sys.Timeline), r.pos)
	if err != nil {
		return err
	}
	r.log.Info("wal-receive: streaming", "slot", r.opts.Slot, "system", sys.SystemID, "timeline", r.tli, "from", r.pos.String())
	for {
		next, err := r.stream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		// The timeline ended: keep what it has of its last segment,
		// then continue on the next one from that segment's start, as
		// a standby does.
		if err := r.storePartial(ctx); err != nil {
			return err
		}
		if next <= r.tli {
			return fmt.Errorf("timeline %d ended and the server names %d as the next one", r.tli, next)
		}
		if _, err := r.storeHistory(ctx, next); err != nil {
			return err
		}
		r.log.Info("wal-receive: timeline switch", "from", r.tli, "to", next, "at", r.pos.String())
		r.tli = next
		r.pos -= r.pos % segSize
	}
}

// startTimeline is the timeline holding pos in the server's history, its
// history file stored on the way (WAL-G does both).
func (r *Receiver) startTimeline(ctx context.Context, current uint32, pos pg.LSN) (uint32, error) {
	if current < 2 {
		return current, nil
	}
	recs, err := r.storeHistory(ctx, current)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "58P01" {
		// The server lost the file; stream the current timeline.
		return current, nil
	}
	if err != nil {
		return 0, err
	}
	// A position belongs to the first timeline that ends after it
	// (PostgreSQL's tliOfPointInHistory).
	for _, rec := range recs {
		if pos < rec.SwitchPoint {
			return rec.Timeline, nil
		}
	}
	return current, nil
}

// storeHistory fetches timeline tli's history file from the server and
// stores it as wal-push would (an equal object already stored is fine).
func (r *Receiver) storeHistory(ctx context.Context, tli uint32) ([]walindex.HistoryRecord, error) {
	res, err := pglogrepl.TimelineHistory(ctx, r.conn, int32(tli))
	if err != nil {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d: %w", tli, err)
	}
	name := walindex.HistoryFile(tli)
	if res.FileName != name {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d: the server sent file %q, expected %s", tli, clip(res.FileName), name)
	}
	recs, err := walindex.ParseHistoryOf(bytes.NewReader(res.Content), tli)
	if err != nil {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d: %s: %w", tli, name, err)
	}
	if err := r.spoolWrite(name, res.Content); err != nil {
		return nil, err
	}
	if err := r.push(ctx, name); err != nil {
		return nil, err
	}
	return recs, nil
}

// stream runs one START_REPLICATION on r.tli from r.pos until the server
// ends the timeline, and returns the next timeline.
//
// The replication protocol is read here from the connection itself, not
// through pgconn: pgx reads a message larger than its 8 KiB buffer into a
// fresh buffer from its pool (256 KiB for a 128 KiB XLogData message) and
// puts it back, so after each collection the stream allocates another one
// somewhere new in the heap, and a deadline context per message costs more
// garbage. One bufio.Reader of MessageBytes, kept for the Receiver's life,
// holds every message instead. pgconn is idle meanwhile (as pglogrepl uses
// it: the query is sent through its Frontend), and the exchange ends at
// ReadyForQuery with nothing left unread, so pgconn can run the next
// command.
func (r *Receiver) stream(ctx context.Context) (next uint32, err error) {
	if n := r.conn.Frontend().ReadBufferLen(); n != 0 {
		return 0, fmt.Errorf("START_REPLICATION: %d unread bytes on the connection", n)
	}
	nc := r.conn.Conn()
	if r.rd == nil {
		r.rd = bufio.NewReaderSize(nc, MessageBytes)
	}
	// Cancellation interrupts a blocked read; every read below checks ctx
	// after setting its own deadline, so a cancel is never overwritten.
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		nc.SetReadDeadline(time.Time{})
		if err != nil && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
	}()
	sql := fmt.Sprintf("START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %d", r.opts.Slot, pglogrepl.LSN(r.pos), r.tli)
	r.conn.Frontend().SendQuery(&pgproto3.Query{String: sql})
	if err := r.conn.Frontend().Flush(); err != nil {
		return 0, fmt.Errorf("START_REPLICATION SLOT %s: %w", r.opts.Slot, err)
	}
	next, streaming, err := r.readResult(ctx)
	if err != nil {
		return 0, fmt.Errorf("START_REPLICATION SLOT %s at %s on timeline %d: %w", r.opts.Slot, r.pos, r.tli, err)
	}
	if !streaming {
		// r.pos is where this timeline ended: nothing to stream on it.
		if next == 0 {
			return 0, fmt.Errorf("START_REPLICATION SLOT %s at %s on timeline %d: the server neither streamed nor named the next timeline", r.opts.Slot, r.pos, r.tli)
		}
		return next, nil
	}
	r.nextStatus = time.Time{}
	for {
		if !time.Now().Before(r.nextStatus) {
			if err := r.sendStatus(ctx); err != nil {
				return 0, err
			}
		}
		typ, body, err := r.readMessage(ctx, r.nextStatus)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				continue
			}
			return 0, fmt.Errorf("replication stream at %s: %w", r.pos, err)
		}
		switch typ {
		case 'd': // CopyData
			if err := r.handle(ctx, body); err != nil {
				return 0, err
			}
		case 'c': // CopyDone: the timeline ended; the server then names the next one.
			if err := r.sendCopyDone(); err != nil {
				return 0, fmt.Errorf("end of timeline %d: %w", r.tli, err)
			}
			next, _, err := r.readResult(ctx)
			if err != nil {
				return 0, fmt.Errorf("end of timeline %d: %w", r.tli, err)
			}
			if next == 0 {
				return 0, fmt.Errorf("end of timeline %d: the server did not name the next timeline", r.tli)
			}
			return next, nil
		case 'E':
			return 0, fmt.Errorf("replication stream at %s: %w", r.pos, errorResponse(body))
		case 'N', 'S': // NoticeResponse, ParameterStatus
		default:
			return 0, fmt.Errorf("replication stream at %s: unexpected message type %q", r.pos, typ)
		}
	}
}

// readResult reads the server's answer to START_REPLICATION or to the
// client's CopyDone: either CopyBothResponse (streaming starts), or the
// next timeline's result set up to ReadyForQuery.
func (r *Receiver) readResult(ctx context.Context) (next uint32, streaming bool, err error) {
	var failed error
	for {
		typ, body, err := r.readMessage(ctx, time.Time{})
		if err != nil {
			if failed != nil {
				return 0, false, failed
			}
			return 0, false, err
		}
		switch typ {
		case 'W': // CopyBothResponse
			return 0, true, nil
		case 'D': // DataRow: next_tli, next_tli_startpos
			var row pgproto3.DataRow
			if err := row.Decode(body); err != nil {
				return 0, false, fmt.Errorf("next timeline: %w", err)
			}
			if len(row.Values) != 2 {
				return 0, false, fmt.Errorf("next timeline: %d columns, expected 2", len(row.Values))
			}
			tli, err := strconv.ParseUint(string(row.Values[0]), 10, 32)
			if err != nil {
				return 0, false, fmt.Errorf("next timeline %q: %w", clip(string(row.Values[0])), err)
			}
			next = uint32(tli)
		case 'E':
			// ReadyForQuery follows; read it, so that the connection is
			// left idle.
			failed = errorResponse(body)
		case 'Z': // ReadyForQuery: the connection is idle again.
			return next, false, failed
		case 'T', 'C', 'c', 'N', 'S', 'I':
			// RowDescription, CommandComplete, CopyDone, NoticeResponse,
			// ParameterStatus, EmptyQueryResponse: nothing to keep.
		default:
			return 0, false, fmt.Errorf("unexpected message type %q", typ)
		}
	}
}

// readMessage reads one backend message: its type and its body, valid until
// the next read. A zero deadline waits until a message or ctx's end.
func (r *Receiver) readMessage(ctx context.Context, deadline time.Time) (typ byte, body []byte, err error) {
	if err := r.conn.Conn().SetReadDeadline(deadline); err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	hdr, err := r.rd.Peek(5)
	if err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n+1 > r.rd.Size() {
		return 0, nil, fmt.Errorf("message %q of %d bytes: the limit is %d", hdr[0], n, r.rd.Size()-1)
	}
	msg, err := r.rd.Peek(n + 1)
	if err != nil {
		return 0, nil, err
	}
	r.rd.Discard(n + 1)
	return msg[0], msg[5:], nil
}

// sendCopyDone answers the server's CopyDone.
func (r *Receiver) sendCopyDone() error {
	r.conn.Frontend().Send(&pgproto3.CopyDone{})
	return r.conn.Frontend().Flush()
}

// errorResponse is the error an ErrorResponse body carries.
func errorResponse(body []byte) error {
	var m pgproto3.ErrorResponse
	if err := m.Decode(body); err != nil {
		return fmt.Errorf("malformed error response: %w", err)
	}
	return pgconn.ErrorResponseToPgError(&m)
}

// handle processes one CopyData message of the stream.
func (r *Receiver) handle(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errors.New("replication stream: empty message")
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("replication stream: keepalive: %w", err)
		}
		if k.ReplyRequested {
			r.nextStatus = time.Time{}
		}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("replication stream: %w", err)
		}
		return r.write(ctx, pg.LSN(x.WALStart), x.WALData)
	}
	// Other message kinds may be added by later servers; they carry no WAL.
	return nil
}

// write appends WAL starting at start to the spooled segments, storing each
// one it completes.
func (r *Receiver) write(ctx context.Context, start pg.LSN, data []byte) error {
	if start > r.pos {
		return fmt.Errorf("replication stream: gap: WAL from %s arrived, expected %s", start, r.pos)
	}
	if skip := uint64(r.pos - start); skip > 0 {
		// Already received (a resent prefix): keep what was written.
		if skip >= uint64(len(data)) {
			return nil
		}
		data = data[skip:]
	}
	segSize := pg.LSN(r.opts.SegmentSize)
	for len(data) > 0 {
		if r.file == nil {
			if err := r.openSegment(); err != nil {
				return err
			}
		}
		segEnd := r.pos - r.pos%segSize + segSize
		n := min(uint64(len(data)), uint64(segEnd-r.pos))
		if _, err := r.file.Write(data[:n]); err != nil {
			return fmt.Errorf("spool %s: %w", r.spoolPath(r.fileName), err)
		}
		r.pos += pg.LSN(n)
		data = data[n:]
		if r.pos == segEnd {
			if err := r.storeSegment(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// segmentName is the file name of the segment holding r.pos.
func (r *Receiver) segmentName() string {
	return wal.Segment{Timeline: r.tli, No: r.pos.Segment(r.opts.SegmentSize)}.Name(r.opts.SegmentSize)
}

func (r *Receiver) openSegment() error {
	name := r.segmentName()
	if err := r.opts.Dir.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool %s: %w", r.spoolPath(name), err)
	}
	f, err := fsutil.CreateIn(r.opts.Dir, name, 0o600)
	if err != nil {
		return fmt.Errorf("spool %s: %w", r.spoolPath(name), err)
	}
	// The stream may start inside the segment only at the segment's
	// start (Run aligns it); a segment is always written from byte 0.
	if off := int64(r.pos % pg.LSN(r.opts.SegmentSize)); off != 0 {
		f.Close()
		return fmt.Errorf("spool %s: stream resumed at offset %d of the segment", r.spoolPath(name), off)
	}
	r.file, r.fileName = f, name
	return nil
}

// storeSegment stores the completed spool file, then acknowledges it.
func (r *Receiver) storeSegment(ctx context.Context) error {
	name := r.fileName
	if err := r.file.Close(); err != nil {
		r.file = nil
		return fmt.Errorf("spool %s: %w", r.spoolPath(name), err)
	}
	r.file = nil
	if err := r.push(ctx, name); err != nil {
		return err
	}
	r.flushed = r.pos
	// Tell the server at once, so the slot releases the segment.
	r.nextStatus = time.Time{}
	return nil
}

// storePartial stores the incomplete segment a timeline ended in as
// <segment>.partial, padded with zeros to the segment size as PostgreSQL
// and WAL-G write partial segments.
func (r *Receiver) storePartial(ctx context.Context) error {
	if r.file == nil {
		return nil
	}
	name := r.fileName
	f := r.file
	r.file = nil
	err := f.Truncate(r.opts.SegmentSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.opts.Dir.Rename(name, name+".partial")
	}
	if err != nil {
		return fmt.Errorf("spool %s: %w", r.spoolPath(name), err)
	}
	return r.push(ctx, name+".partial")
}

// push stores one spooled file with wal-push's rules and removes it.
func (r *Receiver) push(ctx context.Context, name string) error {
	if err := r.opts.Archiver.PushFile(ctx, r.spoolPath(name)); err != nil {
		return err
	}
	if err := r.opts.Dir.Remove(name); err != nil {
		return fmt.Errorf("spool %s: %w", r.spoolPath(name), err)
	}
	return nil
}

func (r *Receiver) sendStatus(ctx context.Context) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(r.pos),
		WALFlushPosition: pglogrepl.LSN(r.flushed),
		WALApplyPosition: pglogrepl.LSN(r.flushed),
	})
	if err != nil {
		return fmt.Errorf("standby status update: %w", err)
	}
	r.nextStatus = time.Now().Add(r.opts.StatusInterval)
	return nil
}

// spoolWrite writes a small file (a history file) into the spool.
func (r *Receiver) spoolWrite(name string, content []byte) error {
	return fsutil.Replace(r.opts.Dir, name, fsutil.Options{NoSync: true}, func(f *os.File) error {
		_, err := io.Copy(f, bytes.NewReader(content))
		return err
	})
}

// cleanSpool removes the WAL files a killed receiver left behind (and the
// encoded file of an upload): the slot still holds their WAL, so they are
// received again.
func (r *Receiver) cleanSpool() error {
	entries, err := fs.ReadDir(r.opts.Dir.FS(), ".")
	if err != nil {
		return fmt.Errorf("spool directory %s: %w", r.opts.Dir.Name(), err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && (wal.IsArchivableName(e.Name()) || wal.IsSpoolFileName(e.Name())) {
			if err := r.opts.Dir.Remove(e.Name()); err != nil {
				return fmt.Errorf("spool %s: %w", r.spoolPath(e.Name()), err)
			}
		}
	}
	return nil
}

func (r *Receiver) closeFile() {
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
}

func (r *Receiver) spoolPath(name string) string { return filepath.Join(r.opts.Dir.Name(), name) }

// clip shortens a server-sent string for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

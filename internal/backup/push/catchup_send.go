package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/catchup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/ratelimit"
)

// SendOptions configure CatchupSend.
type SendOptions struct {
	// DataDir is the primary's data directory (the server's data_directory).
	DataDir string
	// Destination is the receiver's host:port.
	Destination string
	Connect     pg.ConnectOptions
	// StopTimeout is WALG_STOP_BACKUP_TIMEOUT (0: no limit).
	StopTimeout time.Duration
	// DiskRateLimit bounds reads of the data directory in bytes per
	// second (WALG_DISK_RATE_LIMIT; 0: none).
	DiskRateLimit int64
	Log           *slog.Logger
}

// SendResult counts what a catch-up sent.
type SendResult struct {
	From, Start         pg.LSN
	Full, Increments    int
	Unchanged, Deleted  int
	ContentBytes        int64
	ReceiverSystemID    uint64
	ReceiverTimeline    uint32
	ReceiverListEntries int
}

// sendBufferSize is the read buffer for files and page scans.
const sendBufferSize = 256 << 10

// CatchupSend is catchup-send: it connects to a catchup-receive (tusk's
// or WAL-G's) at o.Destination, takes a non-exclusive backup of the
// primary and sends the standby what changed since the LSN it reports: a
// file the standby lacks or whose mtime differs whole, a relation file it
// has as a wi1 page increment of the pages at or after that LSN, the
// names of the files the primary no longer has, then backup_label,
// tablespace_map and pg_control. Like catchup-push it leaves
// postgresql.conf, postgresql.auto.conf and pg_hba.conf alone.
//
// Memory: one read buffer (sendBufferSize), the block list of one file,
// the protocol's buffers (package catchup) and the standby's file list.
func CatchupSend(ctx context.Context, o SendOptions) (SendResult, error) {
	var res SendResult
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Connect.Log == nil {
		o.Connect.Log = log
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err == nil {
		dataDir, err = filepath.EvalSymlinks(dataDir)
	}
	if err != nil {
		return res, fmt.Errorf("data directory %s: %w", o.DataDir, err)
	}
	db, err := pg.Connect(ctx, o.Connect)
	if err != nil {
		return res, err
	}
	// Closing the session aborts a backup still running on it.
	defer db.Close(context.WithoutCancel(ctx))
	info, err := db.Info(ctx)
	if err != nil {
		return res, err
	}
	if dataDir != info.DataDirectory {
		return res, fmt.Errorf("data directory from command line '%s' is not the same as Postgres' one '%s'", dataDir, info.DataDirectory)
	}
	if !info.HasSystemIdentifier {
		return res, errors.New("cannot read the server's system identifier (pg_control_system()): it is needed to check the receiver is its standby")
	}
	timeline, _, err := db.Timeline(ctx)
	if err != nil {
		return res, err
	}

	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", o.Destination)
	if err != nil {
		return res, fmt.Errorf("connect to the receiver: %w", err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	conn, err := catchup.NewConn(nc)
	if err != nil {
		return res, err
	}
	ctl, list, err := conn.ReadHello()
	if err != nil {
		return res, withCause(ctx, err)
	}
	res.ReceiverSystemID, res.ReceiverTimeline, res.ReceiverListEntries = ctl.SystemIdentifier, ctl.CurrentTimeline, len(list)
	res.From = pg.LSN(ctl.Checkpoint)
	log.Info("catchup-send: receiver connected", "system_identifier", ctl.SystemIdentifier,
		"timeline", ctl.CurrentTimeline, "from", res.From.String(), "files", len(list))
	if ctl.SystemIdentifier != info.SystemIdentifier {
		return res, fmt.Errorf("system identifiers do not match: the receiver's is %d, ours %d", ctl.SystemIdentifier, info.SystemIdentifier)
	}
	if ctl.CurrentTimeline != timeline {
		return res, fmt.Errorf("destination is on timeline %d, but we are on %d", ctl.CurrentTimeline, timeline)
	}
	start, err := db.StartBackup(ctx, ceilMicro(time.Now()).String())
	if err != nil {
		return res, err
	}
	res.Start = start.LSN
	if start.LSN <= res.From {
		return res, fmt.Errorf("catchup destination is already ahead (our LSN %s, destination LSN %s)", start.LSN, res.From)
	}

	s := &sender{conn: conn, list: list, from: uint64(res.From), log: log, res: &res,
		buf: make([]byte, sendBufferSize), increments: info.BlockSize == backup.IncrementBlockSize,
		diskLimit: ratelimit.New(o.DiskRateLimit)}
	w := &walker{root: dataDir, log: log, catchup: true, emit: func(e walkEntry) error { return s.entry(ctx, e) }}
	if err := w.walk(ctx); err != nil {
		return res, withCause(ctx, err)
	}
	delete(list, "")
	for _, ts := range w.spec {
		delete(list, ts.Link) // a tablespace link, walked through
	}
	if err := s.sendDeleted(); err != nil {
		return res, withCause(ctx, err)
	}

	end, err := db.StopBackup(ctx, true, o.StopTimeout)
	if err != nil {
		return res, err
	}
	control, err := os.ReadFile(filepath.Join(dataDir, "global", "pg_control"))
	if err != nil {
		return res, err
	}
	for _, f := range []struct {
		name string
		body []byte
	}{{"backup_label", []byte(end.Label)}, {"tablespace_map", []byte(end.TablespaceMap)}, {"global/pg_control", control}} {
		if err := conn.WriteCommand(&catchup.Command{IsBinContents: true, FileName: f.name, BinaryContents: f.body}); err != nil {
			return res, withCause(ctx, err)
		}
	}
	if err := conn.WriteCommand(&catchup.Command{IsDone: true}); err != nil {
		return res, withCause(ctx, err)
	}
	if err := conn.Flush(); err != nil {
		return res, withCause(ctx, err)
	}
	if err := conn.End(); err != nil {
		return res, withCause(ctx, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil {
			return res, withCause(ctx, err)
		}
	}
	// The receiver closes the connection once it has written everything
	// (tusk's after the last fsync); wait for that, so that success here
	// means the standby has it all.
	if _, err := io.Copy(io.Discard, nc); err != nil && ctx.Err() != nil {
		return res, context.Cause(ctx)
	}
	return res, nil
}

func withCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// sender sends the files of one walk.
type sender struct {
	conn       *catchup.Conn
	list       catchup.FileList // the receiver's; entries seen are removed
	from       uint64
	increments bool
	diskLimit  *ratelimit.Limiter // nil: none
	buf        []byte
	blocks     []uint32
	log        *slog.Logger
	res        *SendResult
}

func (s *sender) entry(ctx context.Context, e walkEntry) error {
	name := strings.TrimPrefix(e.name, "/")
	d, known := s.list[name]
	delete(s.list, name)
	if e.kind != entryFile {
		return nil
	}
	if known && d.MTime.Equal(e.info.ModTime()) {
		s.res.Unchanged++
		return nil
	}
	f, err := os.OpenFile(e.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // dropped since the walk listed it: WAL replay agrees
		}
		return fmt.Errorf("open %s: %w", e.path, err)
	}
	defer f.Close()
	size := e.info.Size()
	if known && s.increments && isIncrementable(name, size) {
		sent, err := s.sendIncrement(ctx, name, f, size)
		if sent || err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rewind %s: %w", e.path, err)
		}
	}
	if err := s.conn.WriteCommand(&catchup.Command{FileName: name, IsFull: true, FileSize: uint64(size)}); err != nil {
		return err
	}
	if err := s.conn.WriteContent(s.diskLimit.Reader(ctx, f), size, s.buf); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("send %s: %w", e.path, err)
	}
	s.res.Full++
	s.res.ContentBytes += size
	return nil
}

// sendIncrement sends the file as the pages changed at or after s.from.
// It returns false, having sent nothing, when a page is not valid (the
// file must then go whole).
func (s *sender) sendIncrement(ctx context.Context, name string, f *os.File, size int64) (bool, error) {
	blocks, ok, err := scanPages(ctx, s.diskLimit.Reader(ctx, f), f.Name(), s.buf, size, s.from, s.blocks[:0])
	s.blocks = blocks
	if err != nil || !ok {
		return false, err
	}
	total := backup.IncrementSize(len(blocks))
	if err := s.conn.WriteCommand(&catchup.Command{FileName: name, IsIncremental: true, FileSize: uint64(total)}); err != nil {
		return false, err
	}
	w := s.conn.ContentWriter(total)
	if err := backup.WriteIncrementHeader(w, uint64(size), blocks); err != nil {
		return false, err
	}
	page := s.buf[:backup.IncrementBlockSize]
	for _, b := range blocks {
		if err := s.diskLimit.Take(ctx, len(page)); err != nil {
			return false, err
		}
		n, err := f.ReadAt(page, int64(b)*backup.IncrementBlockSize)
		if err != nil && err != io.EOF {
			return false, fmt.Errorf("read %s block %d: %w", f.Name(), b, err)
		}
		clear(page[n:]) // truncated since the scan: WAL replay truncates it again
		if _, err := w.Write(page); err != nil {
			return false, err
		}
	}
	if err := w.Close(); err != nil {
		return false, err
	}
	s.res.Increments++
	s.res.ContentBytes += total
	return true, nil
}

// sendDeleted names the receiver's files the walk did not meet, as WAL-G
// does: except those under a name catch-ups leave alone.
func (s *sender) sendDeleted() error {
	var gone []string
	for name := range s.list {
		if !slices.ContainsFunc(strings.Split(name, "/"), func(c string) bool {
			return backup.Excluded(c) || catchupExcluded(c) || c == "pg_control"
		}) {
			gone = append(gone, name)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	slices.Sort(gone)
	s.res.Deleted = len(gone)
	return s.conn.WriteCommand(&catchup.Command{IsDelete: true, FilesToDelete: gone})
}

package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/catchup"
	"github.com/tusk-pg/tusk/internal/pgdata"
)

// ReceiveOptions configure CatchupReceive.
type ReceiveOptions struct {
	// DataDir is the stopped standby's data directory.
	DataDir string
	// Listen is the TCP address to accept the sender on (":port", as
	// WAL-G listens on every interface).
	Listen string
	// NoFsync is WALG_TAR_DISABLE_FSYNC.
	NoFsync bool
	Log     *slog.Logger
	// Listening, when set, is told the address once it accepts
	// connections.
	Listening func(net.Addr)
}

// ReceiveResult counts what a catch-up changed.
type ReceiveResult struct {
	Sender                        string
	Full, Increments, Deleted     int
	Bytes                         int64
	LabelWritten, ControlReplaced bool
}

// CatchupReceive is catchup-receive: it tells the one sender that connects
// (tusk's or WAL-G's catchup-send) this stopped standby's system
// identifier, timeline and REDO point and its files with their mtimes,
// then applies what comes back: whole files written under a temporary
// name and renamed into place, page increments written into the files,
// removals. backup_label, tablespace_map and pg_control are held until the
// sender says it is done, then written in that order, pg_control last
// once every other file and directory is synced: a catch-up cut off
// before its end leaves the standby's own pg_control and no backup_label,
// never what looks like a whole catch-up. Every name from the sender is
// checked (catchup.CheckName) and written through os.Root handles on the
// data directory and the tablespaces its pg_tblspc links name, never
// through a symlink.
//
// Memory: the protocol's buffers (package catchup), one copy buffer
// (ExtractBufferSize), one increment's block list, the file list while it
// is sent, and backup_label, tablespace_map and pg_control (8 KiB).
func CatchupReceive(ctx context.Context, o ReceiveOptions) (ReceiveResult, error) {
	var res ReceiveResult
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e, err := NewExtractor(o.DataDir, ExtractorOptions{Existing: true, NoFsync: o.NoFsync})
	if err != nil {
		return res, err
	}
	defer e.Close()
	ours, err := e.root.ReadFile(PgControlPath)
	if err != nil {
		return res, err
	}
	ctl, err := pgdata.ParseControl(ours)
	if err != nil {
		return res, fmt.Errorf("%s/%s: %w", o.DataDir, PgControlPath, err)
	}
	list, err := receiverFileList(e.root)
	if err != nil {
		return res, err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Listen)
	if err != nil {
		return res, fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	stopListening := context.AfterFunc(ctx, func() { ln.Close() })
	log.Info("catchup-receive: waiting for catchup-send", "address", ln.Addr().String(), "data_directory", o.DataDir,
		"system_identifier", ctl.SystemIdentifier, "timeline", ctl.Timeline, "from", fmt.Sprintf("%X/%X", ctl.Redo>>32, uint32(ctl.Redo)))
	if o.Listening != nil {
		o.Listening(ln.Addr())
	}
	nc, err := ln.Accept()
	stopListening()
	ln.Close()
	if err != nil {
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}
		return res, fmt.Errorf("accept on %s: %w", o.Listen, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	res.Sender = nc.RemoteAddr().String()
	log.Info("catchup-receive: sender connected", "from", res.Sender)

	conn, err := catchup.NewConn(nc)
	if err != nil {
		return res, err
	}
	hello := catchup.Control{SystemIdentifier: ctl.SystemIdentifier, CurrentTimeline: ctl.Timeline, Checkpoint: ctl.Redo}
	if err := conn.WriteHello(hello, list); err != nil {
		return res, withCause(ctx, err)
	}
	list = nil
	// Nothing more goes to the sender: half-close. The LZ4 frame is not
	// ended: WAL-G's sender never reads past the file list, and an end
	// mark left unread in its socket makes its kernel reset the connection
	// when it exits, losing what we had not yet read of its last sends.
	if tc, ok := nc.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil {
			return res, withCause(ctx, err)
		}
	}
	r := &receiver{e: e, conn: conn, log: log, res: &res, held: map[string][]byte{},
		sysID: ctl.SystemIdentifier, buf: make([]byte, ExtractBufferSize)}
	defer func() {
		e.root.Remove(pgControlTemp) // left only by a catch-up that failed
	}()
	if err := r.run(); err != nil {
		return res, withCause(ctx, err)
	}
	if err := r.finish(); err != nil {
		return res, withCause(ctx, err)
	}
	return res, nil
}

func withCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// receiverFileList lists the data directory as WAL-G's receiver does:
// every file and directory but pg_control and WAL-G's excluded names,
// symlinks as themselves (not followed), with their mtimes.
func receiverFileList(root *os.Root) (catchup.FileList, error) {
	list := catchup.FileList{}
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("list %s: %w", root.Name(), err)
		}
		if p == "." {
			return nil
		}
		name := d.Name()
		if name == "pg_control" || backup.Excluded(name) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		list[p] = catchup.FileDescription{MTime: info.ModTime()}
		return nil
	})
	return list, err
}

// catchupHeld are the files written only at the end, in this order.
var catchupHeld = []string{"backup_label", "tablespace_map", PgControlPath}

type receiver struct {
	e     *Extractor
	conn  *catchup.Conn
	log   *slog.Logger
	res   *ReceiveResult
	held  map[string][]byte
	sysID uint64
	buf   []byte
}

func (r *receiver) run() error {
	var cmd catchup.Command
	for {
		if err := r.conn.ReadCommand(&cmd); err != nil {
			return err
		}
		var err error
		switch {
		case cmd.IsDone:
			return nil
		case cmd.IsBinContents:
			err = r.binContents(&cmd)
		case cmd.IsFull, cmd.IsIncremental:
			err = r.file(&cmd)
		case cmd.IsDelete:
			err = r.remove(cmd.FilesToDelete)
		}
		if err != nil {
			return err
		}
	}
}

func (r *receiver) binContents(cmd *catchup.Command) error {
	if slices.Contains(catchupHeld, cmd.FileName) {
		if cmd.FileName == PgControlPath {
			c, err := pgdata.ParseControl(cmd.BinaryContents)
			if err != nil {
				return fmt.Errorf("the sender's %s: %w", PgControlPath, err)
			}
			if c.SystemIdentifier != r.sysID {
				return fmt.Errorf("the sender's %s is of system %d, this standby's of %d", PgControlPath, c.SystemIdentifier, r.sysID)
			}
		}
		r.held[cmd.FileName] = cmd.BinaryContents
		return nil
	}
	return r.write(cmd.FileName, bytes.NewReader(cmd.BinaryContents), int64(len(cmd.BinaryContents)))
}

func (r *receiver) write(name string, src io.Reader, size int64) error {
	if name == PgControlPath || name == pgControlTemp {
		return fmt.Errorf("refusing %s sent as a data file", name)
	}
	t, isLink := r.e.resolve(name)
	if t.rel == "." || isLink {
		return fmt.Errorf("refusing file %q: it would replace a directory or tablespace link", name)
	}
	hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o600}
	if err := r.e.file(t, name, hdr, src, r.buf); err != nil {
		return err
	}
	r.res.Bytes += size
	return nil
}

func (r *receiver) file(cmd *catchup.Command) error {
	if cmd.FileSize > 1<<62 {
		return fmt.Errorf("file %q of %d bytes", cmd.FileName, cmd.FileSize)
	}
	content := r.conn.Content(cmd.FileSize)
	if cmd.IsFull {
		if err := r.write(cmd.FileName, content, int64(cmd.FileSize)); err != nil {
			return err
		}
		r.res.Full++
		return nil
	}
	if cmd.FileName == PgControlPath || cmd.FileName == pgControlTemp {
		return fmt.Errorf("refusing %s sent as a page increment", cmd.FileName)
	}
	t, isLink := r.e.resolve(cmd.FileName)
	if t.rel == "." || isLink {
		return fmt.Errorf("refusing page increment %q: it would replace a directory or tablespace link", cmd.FileName)
	}
	hdr := &tar.Header{Name: cmd.FileName, Typeflag: tar.TypeReg, Size: int64(cmd.FileSize), Mode: 0o600}
	if err := r.e.increment(t, hdr, content, r.buf); err != nil {
		return err
	}
	if err := content.Drain(); err != nil {
		return err
	}
	r.res.Increments++
	r.res.Bytes += int64(cmd.FileSize)
	return nil
}

// remove deletes the files the primary no longer has, then the
// directories, deepest first. A directory that still holds something (a
// file the sender leaves alone) stays, as does anything that is already
// gone, pg_control and the tablespace links themselves.
func (r *receiver) remove(names []string) error {
	names = slices.Clone(names)
	slices.SortFunc(names, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, name := range names {
		if name == PgControlPath || name == pgControlTemp {
			continue
		}
		t, isLink := r.e.resolve(name)
		if t.rel == "." || isLink {
			r.log.Warn("catchup-receive: the primary has no such tablespace; its link is left in place", "link", name)
			continue
		}
		err := t.root.Remove(t.rel)
		switch {
		case err == nil:
			r.res.Deleted++
		case errors.Is(err, fs.ErrNotExist):
		case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
			r.log.Warn("catchup-receive: directory not empty, kept", "directory", r.e.display(t))
		default:
			return fmt.Errorf("remove %s: %w", r.e.display(t), err)
		}
	}
	return nil
}

// finish writes the held files, pg_control last, and syncs everything.
func (r *receiver) finish() error {
	if r.held[PgControlPath] == nil {
		return fmt.Errorf("the sender said it was done without sending %s", PgControlPath)
	}
	for _, name := range catchupHeld {
		body, ok := r.held[name]
		if !ok {
			continue
		}
		t, _ := r.e.resolve(name)
		hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, Size: int64(len(body)), Mode: 0o600}
		if err := r.e.file(t, name, hdr, bytes.NewReader(body), r.buf); err != nil {
			return err
		}
	}
	r.res.LabelWritten = r.held["backup_label"] != nil
	if err := r.e.Finish(); err != nil {
		return err
	}
	r.res.ControlReplaced = true
	return nil
}

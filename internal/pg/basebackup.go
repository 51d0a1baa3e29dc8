package pg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// BaseBackupOptions are the BASE_BACKUP options tusk uses.
type BaseBackupOptions struct {
	Label string
	// VerifyChecksums lets the server check page checksums as it reads.
	VerifyChecksums bool
	// MaxRate is the server-side limit in kB/s; below 32 it is not sent.
	MaxRate int32
}

// BaseBackupTablespace is a tablespace outside the data directory that the
// backup streams as an archive of its own.
type BaseBackupTablespace struct {
	OID      uint32
	Location string
}

// BaseBackup is a BASE_BACKUP running on a replication session: Next hands
// out its archives (one per tablespace, the data directory's last) as tar
// streams read straight off the connection, Finish returns the end LSN.
//
// Up to PostgreSQL 14 each archive is a CopyOut of its own. From 15 the
// whole backup is one CopyOut whose CopyData messages start with a tag:
// 'n' opens an archive (name and tablespace path), 'd' carries its bytes,
// 'p' reports progress and 'm' opens the manifest. pglogrepl parses the
// start and the end of both, and the archives of the older format only,
// so the tagged stream is read here.
//
// Nothing is buffered beyond the message pgconn has just received.
type BaseBackup struct {
	Start       LSN
	Timeline    uint32
	Tablespaces []BaseBackupTablespace

	conn      *pgconn.PgConn
	tagged    bool // PostgreSQL 15+ stream format
	log       *slog.Logger
	ctx       context.Context //nolint:containedctx // Archive.Read has no context of its own
	handedOut int             // archives returned by Next (old format)
	cur       *Archive

	chunk      []byte // unread bytes of the current CopyData
	ended      bool   // the current archive has no more bytes
	copyDone   bool
	copyOpen   bool // the tagged stream's CopyOutResponse was read
	pending    *Archive
	inManifest bool
}

// Archive is one tar stream of a BaseBackup, valid until the next call to
// Next.
type Archive struct {
	// Name is "base.tar" for the data directory, "<oid>.tar" otherwise.
	Name string
	// OID is the tablespace's, 0 for the data directory.
	OID uint32
	// Location is the tablespace's directory, "" for the data directory.
	Location string
	b        *BaseBackup
}

// StartBaseBackup sends BASE_BACKUP with a fast checkpoint and a
// tablespace_map, and reads the start position and the tablespace list.
func StartBaseBackup(ctx context.Context, conn *pgconn.PgConn, o BaseBackupOptions, log *slog.Logger) (*BaseBackup, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	major, err := serverMajor(conn.ParameterStatus("server_version"))
	if err != nil {
		return nil, err
	}
	res, err := pglogrepl.StartBaseBackup(ctx, conn, pglogrepl.BaseBackupOptions{
		Label:             o.Label,
		Fast:              true,
		TablespaceMap:     true,
		NoVerifyChecksums: !o.VerifyChecksums,
		MaxRate:           o.MaxRate,
	})
	if err != nil {
		return nil, fmt.Errorf("BASE_BACKUP: %w", err)
	}
	b := &BaseBackup{Start: LSN(res.LSN), Timeline: uint32(res.TimelineID), conn: conn, tagged: major >= 15, log: log}
	for _, t := range res.Tablespaces {
		b.Tablespaces = append(b.Tablespaces, BaseBackupTablespace{OID: uint32(t.OID), Location: t.Location})
	}
	return b, nil
}

// serverMajor reads the major release from the server_version parameter
// ("15.4 (Debian 15.4-1)", "10.23", "18devel"): its leading digits.
func serverMajor(v string) (int, error) {
	end := 0
	for end < len(v) && end < 4 && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(v[:end])
	if err != nil || n < 10 {
		return 0, fmt.Errorf("server_version %q: tusk backs up PostgreSQL 10 and later", v)
	}
	return n, nil
}

// Next returns the next archive, or io.EOF after the last. What is left of
// the previous archive is read and dropped.
func (b *BaseBackup) Next(ctx context.Context) (*Archive, error) {
	b.ctx = ctx
	if b.cur != nil {
		if err := b.drain(); err != nil {
			return nil, err
		}
		b.cur = nil
	}
	if !b.tagged {
		if b.handedOut > len(b.Tablespaces) {
			return nil, io.EOF
		}
		if err := pglogrepl.NextTableSpace(ctx, b.conn); err != nil {
			return nil, fmt.Errorf("BASE_BACKUP: %w", err)
		}
		a := &Archive{Name: "base.tar", b: b}
		if i := b.handedOut; i < len(b.Tablespaces) {
			t := b.Tablespaces[i]
			a = &Archive{Name: fmt.Sprintf("%d.tar", t.OID), OID: t.OID, Location: t.Location, b: b}
		}
		b.handedOut++
		b.cur, b.ended, b.chunk = a, false, nil
		return a, nil
	}
	if !b.copyOpen {
		if err := b.openCopy(); err != nil {
			return nil, err
		}
	}
	for b.pending == nil && !b.copyDone {
		if err := b.advance(); err != nil {
			return nil, err
		}
	}
	if b.pending == nil {
		return nil, io.EOF
	}
	b.cur, b.pending, b.ended, b.chunk = b.pending, nil, false, nil
	return b.cur, nil
}

// openCopy reads the tagged stream's one CopyOutResponse.
func (b *BaseBackup) openCopy() error {
	for {
		msg, err := b.conn.ReceiveMessage(b.ctx)
		if err != nil {
			return fmt.Errorf("BASE_BACKUP: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyOutResponse:
			b.copyOpen = true
			return nil
		case *pgproto3.NoticeResponse:
			b.notice(m)
		case *pgproto3.ParameterStatus:
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("BASE_BACKUP: %w", pgconn.ErrorResponseToPgError(m))
		default:
			return fmt.Errorf("BASE_BACKUP: expected CopyOutResponse, got %T", msg)
		}
	}
}

func (b *BaseBackup) notice(m *pgproto3.NoticeResponse) {
	b.log.Warn("BASE_BACKUP: server notice", "severity", m.Severity, "message", m.Message)
}

// drain reads the current archive to its end.
func (b *BaseBackup) drain() error {
	for !b.ended {
		if err := b.advance(); err != nil {
			return err
		}
	}
	b.chunk = nil
	return nil
}

// advance reads one message.
func (b *BaseBackup) advance() error {
	msg, err := b.conn.ReceiveMessage(b.ctx)
	if err != nil {
		return fmt.Errorf("BASE_BACKUP: %w", err)
	}
	switch m := msg.(type) {
	case *pgproto3.CopyData:
		if !b.tagged {
			b.chunk = m.Data
			return nil
		}
		return b.tagged1(m.Data)
	case *pgproto3.CopyDone:
		b.ended = true
		b.copyDone = b.tagged
		return nil
	case *pgproto3.NoticeResponse:
		b.notice(m)
		return nil
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("BASE_BACKUP: %w", pgconn.ErrorResponseToPgError(m))
	default:
		return fmt.Errorf("BASE_BACKUP: unexpected %T in the copy stream", msg)
	}
}

// tagged1 handles one CopyData of the PostgreSQL 15+ format.
func (b *BaseBackup) tagged1(data []byte) error {
	if len(data) == 0 {
		return errors.New("BASE_BACKUP: empty CopyData message")
	}
	body := data[1:]
	switch data[0] {
	case 'd':
		if b.inManifest {
			return nil
		}
		if b.cur == nil {
			return errors.New("BASE_BACKUP: archive data before any archive header")
		}
		b.chunk = body
	case 'p':
		// Progress (an 8-byte count): not requested, nothing to do.
	case 'n':
		if b.inManifest {
			return errors.New("BASE_BACKUP: archive header after the manifest")
		}
		name, path, err := ParseArchiveHeader(body)
		if err != nil {
			return err
		}
		a, err := b.archive(name, path)
		if err != nil {
			return err
		}
		b.ended, b.pending = true, a
	case 'm':
		b.log.Warn("BASE_BACKUP: manifest received but not requested; dropped")
		b.ended, b.inManifest = true, true
	default:
		return fmt.Errorf("BASE_BACKUP: unknown CopyData tag %q", data[0])
	}
	return nil
}

// ParseArchiveHeader reads the body of a tagged stream's 'n' message: the
// archive's name and the tablespace path, each NUL-terminated.
func ParseArchiveHeader(body []byte) (name, path string, err error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return "", "", errors.New("BASE_BACKUP: archive header without a NUL after its name")
	}
	rest := body[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return "", "", errors.New("BASE_BACKUP: archive header without a NUL after its path")
	}
	if len(rest) != j+1 {
		return "", "", errors.New("BASE_BACKUP: archive header has trailing bytes")
	}
	return string(body[:i]), string(rest[:j]), nil
}

// archive matches an archive name with the tablespace list.
func (b *BaseBackup) archive(name, path string) (*Archive, error) {
	if name == "base.tar" {
		return &Archive{Name: name, b: b}, nil
	}
	oidText, ok := strings.CutSuffix(name, ".tar")
	oid, err := strconv.ParseUint(oidText, 10, 32)
	if !ok || err != nil || oid == 0 {
		return nil, fmt.Errorf("BASE_BACKUP: unexpected archive name %q (a compressed archive?)", name)
	}
	for _, t := range b.Tablespaces {
		if t.OID == uint32(oid) {
			return &Archive{Name: name, OID: t.OID, Location: t.Location, b: b}, nil
		}
	}
	return nil, fmt.Errorf("BASE_BACKUP: archive %q is no tablespace the server listed", name)
}

// Read reads the archive's tar bytes.
func (a *Archive) Read(p []byte) (int, error) {
	b := a.b
	if b.cur != a {
		return 0, errors.New("BASE_BACKUP: archive read after the next one started")
	}
	for len(b.chunk) == 0 {
		if b.ended {
			return 0, io.EOF
		}
		if err := b.advance(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.chunk)
	b.chunk = b.chunk[n:]
	return n, nil
}

// Finish reads the end of the backup once every archive was read: the end
// position and the command's completion.
func (b *BaseBackup) Finish(ctx context.Context) (LSN, error) {
	b.ctx = ctx
	for {
		a, err := b.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("BASE_BACKUP: archive %s was not read", a.Name)
	}
	res, err := pglogrepl.FinishBaseBackup(ctx, b.conn)
	if err != nil {
		return 0, fmt.Errorf("BASE_BACKUP end: %w", err)
	}
	return LSN(res.LSN), nil
}

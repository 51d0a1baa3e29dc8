package push

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/wal"
)

// maxHeldMember bounds the members held back from the data tars
// (pg_control, backup_label, tablespace_map): each is a few kB.
const maxHeldMember = 1 << 20

// RunRemote takes a base backup over a replication connection with
// BASE_BACKUP, as WAL-G's backup-push without a data directory does, and
// stores it in the layout Run uses: the server's tar streams are re-cut
// into part_NNN.tar at TarSizeThreshold (tablespace members renamed
// /pg_tblspc/<oid>/...), global/pg_control goes to pg_control.tar and
// backup_label and tablespace_map to backup_label.tar, then metadata,
// files metadata and the sentinel. An ordinary session (the same PG*
// settings) reads the server's facts, as WAL-G's does.
//
// One builder packs the one stream, so memory is that of a push with one
// builder. There are no delta backups over BASE_BACKUP (WAL-G has none):
// a delta base named in o.Delta is an error, WALG_DELTA_MAX_STEPS is
// ignored. Page checksums (o.Verify) are checked by the server.
func RunRemote(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	o.Remote = true
	if o.Delta.FromName != "" || len(o.Delta.FromUserData) > 0 {
		return nil, errors.New("a delta backup needs the data directory: give it on the command line, or drop --delta-from-name / --delta-from-user-data")
	}
	j := &job{o: o, log: o.Log, startTime: ceilMicro(time.Now().UTC())}
	defer j.close(ctx)
	if err := j.connectRemote(ctx); err != nil {
		return nil, err
	}
	r := &remoteJob{job: j}
	defer r.closeReplication(ctx)
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	return j.result(r.finish(ctx))
}

// connectRemote opens the ordinary session and reads the server's facts.
func (j *job) connectRemote(ctx context.Context) error {
	o, log := j.o, j.log
	var err error
	if j.conn, err = pg.Connect(ctx, o.Connect); err != nil {
		return err
	}
	if j.info, err = j.conn.Info(ctx); err != nil {
		return err
	}
	info := j.info
	if info.Version < pg.MinVersion {
		return fmt.Errorf("PostgreSQL server_version_num %d: tusk backs up PostgreSQL 10 and later (tested: 13 to 18)", info.Version)
	}
	if o.WalSegmentSize > 0 && info.WalSegmentSize != o.WalSegmentSize {
		log.Warn(fmt.Sprintf("the server's wal_segment_size is %d MiB but WALG_PG_WAL_SIZE is %d MiB; set WALG_PG_WAL_SIZE to match, wal-push and wal-fetch depend on it",
			info.WalSegmentSize>>20, o.WalSegmentSize>>20))
	}
	j.verify = o.Verify
	if info.Version < 110000 {
		j.verify = true // BASE_BACKUP cannot skip the check before 11 (WAL-G forces it too)
	}
	if !info.InRecovery {
		checkArchiving(log, info)
	}
	log.Info("taking the backup over a replication connection (BASE_BACKUP): no delta, no client-side page verification")
	return nil
}

// remoteJob is a job whose files come from BASE_BACKUP.
type remoteJob struct {
	*job
	repl *pgconn.PgConn
	bb   *pg.BaseBackup
	// held are the members stored apart from the data tars.
	pgControl     *heldMember
	label, tblMap *heldMember
	catalogSize   int64
}

type heldMember struct {
	hdr  *tar.Header
	body []byte
}

func (r *remoteJob) closeReplication(ctx context.Context) {
	if r.repl != nil {
		r.repl.Close(context.WithoutCancel(ctx))
		r.repl = nil
	}
}

// start runs BASE_BACKUP under a name no other backup uses: when the name
// of its start segment is taken, the backup is abandoned (closing the
// session aborts it), the primary switches WAL, and it starts again.
func (r *remoteJob) start(ctx context.Context) error {
	o := r.o
	var maxRate int32
	if kb := o.DiskRateLimit / 1024; kb > 32 {
		maxRate = int32(min(kb, 1<<31-1))
		r.log.Info("BASE_BACKUP limited by the server", "kB_per_s", maxRate)
	}
	for attempt := 1; ; attempt++ {
		var err error
		if r.repl, err = pg.ConnectReplication(ctx, o.Connect); err != nil {
			return err
		}
		label := ceilMicro(time.Now()).String()
		r.bb, err = pg.StartBaseBackup(ctx, r.repl, pg.BaseBackupOptions{Label: label, VerifyChecksums: r.verify, MaxRate: maxRate}, r.log)
		if err != nil {
			return err
		}
		seg := wal.Segment{Timeline: r.bb.Timeline, No: uint64(r.bb.Start) / uint64(r.info.WalSegmentSize)}
		r.name = backup.FullName(seg.Name(r.info.WalSegmentSize))
		r.begin = pg.BackupStart{LSN: r.bb.Start, InRecovery: r.info.InRecovery}
		taken, what, err := nameTaken(ctx, o.Store, r.name)
		if err != nil {
			return err
		}
		if !taken {
			return nil
		}
		r.closeReplication(ctx)
		if r.info.InRecovery {
			return fmt.Errorf("backup name %s is already used (%s) and a standby cannot switch WAL to get a new one; "+
				"wait for the next restartpoint or delete the other backup", r.name, what)
		}
		if attempt >= maxNameAttempts {
			return fmt.Errorf("backup name %s is already used (%s), even after %d WAL switches", r.name, what, attempt-1)
		}
		r.log.Warn("backup name already used; switching WAL and starting again", "name", r.name, "found", what)
		if _, err := r.conn.SwitchWAL(ctx); err != nil {
			return err
		}
	}
}

func (r *remoteJob) finish(ctx context.Context) (*backup.Sentinel, error) {
	r.log.Info("backup started", "name", r.name, "lsn", r.begin.LSN.String(), "standby", r.begin.InRecovery,
		"tablespaces", len(r.bb.Tablespaces))
	if err := r.copyStream(ctx); err != nil {
		return nil, err
	}
	end, err := r.bb.Finish(ctx)
	if err != nil {
		return nil, err
	}
	r.closeReplication(ctx)
	if r.label == nil {
		return nil, errors.New("BASE_BACKUP sent no backup_label")
	}
	tblMap := ""
	if r.tblMap != nil {
		tblMap = string(r.tblMap.body)
	}
	if err := r.pack.storeLabelFiles(ctx, r.last.enc, backup.BackupLabelTarName(r.pack.ext), string(r.label.body), tblMap); err != nil {
		return nil, err
	}
	r.walker = &walker{catalogSize: r.catalogSize}
	for _, t := range r.bb.Tablespaces {
		n := strconv.FormatUint(uint64(t.OID), 10)
		r.walker.spec = append(r.walker.spec, backup.Tablespace{Name: n, Location: path.Clean(t.Location), Link: "pg_tblspc/" + n})
	}
	s := r.sentinel(pg.BackupStop{LSN: end})
	if err := r.commit(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// copyStream re-cuts every archive of the stream into data tars, then
// stores pg_control.
func (r *remoteJob) copyStream(ctx context.Context) error {
	o := r.o
	r.pack = &packer{
		store: o.Store, backupName: r.name, ext: o.Method.Ext(), threshold: o.TarSizeThreshold,
		log: r.log, progress: o.Progress,
	}
	var rec *fileRecorder
	if !o.WithoutFilesMetadata {
		var err error
		if rec, err = newFileRecorder(o.TempDir); err != nil {
			return err
		}
		r.recs = append(r.recs, rec)
	}
	b := r.pack.newBuilder(pipe.NewEncoder(o.Method, o.Crypter), rec)
	r.last = b
	err := r.copyArchives(ctx, b)
	if err == nil {
		err = b.closeTar()
	} else {
		b.abort(err)
	}
	if err != nil {
		return err
	}
	if r.pgControl == nil {
		return errors.New("BASE_BACKUP sent no global/pg_control")
	}
	return r.pack.storeMember(ctx, b.enc, b.buf, backup.PgControlTarName(r.pack.ext), r.pgControl.hdr, bytes.NewReader(r.pgControl.body))
}

func (r *remoteJob) copyArchives(ctx context.Context, b *builder) error {
	for {
		a, err := r.bb.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		prefix := "/"
		if a.OID != 0 {
			prefix = "/pg_tblspc/" + strconv.FormatUint(uint64(a.OID), 10) + "/"
			r.log.Info("copying tablespace", "oid", a.OID, "location", a.Location)
		} else {
			r.log.Info("copying the data directory")
		}
		tr := tar.NewReader(a)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("BASE_BACKUP archive %s: %w", a.Name, err)
			}
			name, err := memberName(prefix, hdr.Name)
			if err != nil {
				return fmt.Errorf("BASE_BACKUP archive %s: %w", a.Name, err)
			}
			// The writer picks the format the name needs (a long name
			// with its "/pg_tblspc/<oid>/" prefix may not fit ustar).
			hdr.Name, hdr.Format = name, tar.FormatUnknown
			r.catalogSize += hdr.Size
			if a.OID == 0 {
				held, err := r.hold(ctx, name, hdr, tr)
				if err != nil {
					return err
				}
				if held {
					continue
				}
			}
			if err := b.addStreamed(ctx, hdr, tr); err != nil {
				return err
			}
		}
	}
}

// memberName is a member's name in tusk's (and a local WAL-G backup's)
// form: "/" + its path below PGDATA.
func memberName(prefix, name string) (string, error) {
	rel := strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")
	if rel == "" || rel == "." {
		return strings.TrimSuffix(prefix, "/"), nil
	}
	clean := path.Clean(rel)
	if clean != rel || path.IsAbs(rel) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("member name %q is not a plain relative path", name)
	}
	return prefix + rel, nil
}

// hold keeps pg_control (stored last, as a local backup stores it) and
// the backup label files (stored in backup_label.tar) out of the data
// tars.
func (r *remoteJob) hold(ctx context.Context, name string, hdr *tar.Header, tr io.Reader) (bool, error) {
	var slot **heldMember
	switch name {
	case "/global/pg_control":
		slot = &r.pgControl
	case "/backup_label":
		slot = &r.label
	case "/tablespace_map":
		slot = &r.tblMap
	default:
		return false, nil
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size > maxHeldMember {
		return false, fmt.Errorf("BASE_BACKUP member %s: a regular file of at most %d bytes expected", name, maxHeldMember)
	}
	body := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r.pack.source(ctx, tr), body); err != nil {
		return false, fmt.Errorf("BASE_BACKUP member %s: %w", name, err)
	}
	*slot = &heldMember{hdr: hdr, body: body}
	return true, nil
}

// addStreamed adds one member read from a tar stream: a new tar is started
// when this file would take the current one past the threshold.
func (b *builder) addStreamed(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	p := b.p
	if hdr.Typeflag == tar.TypeReg && b.cur != nil && b.cur.contentSize > 0 && b.cur.contentSize+hdr.Size > p.threshold {
		if err := b.closeTar(); err != nil {
			return err
		}
	}
	if err := b.ensureTar(ctx); err != nil {
		return err
	}
	if err := b.cur.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header %s into %s: %w", hdr.Name, b.cur.key, err)
	}
	d := backup.FileDescription{MTime: hdr.ModTime}
	if hdr.Typeflag != tar.TypeReg {
		b.record(hdr.Name, d)
		return nil
	}
	read, err := copyMember(b.cur.tw, p.source(ctx, r), hdr.Size, b.buf, nil)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("copy %s into %s: %w", hdr.Name, b.cur.key, err)
	}
	if read != hdr.Size {
		return fmt.Errorf("BASE_BACKUP member %s: %d of %d bytes", hdr.Name, read, hdr.Size)
	}
	b.cur.contentSize += hdr.Size
	b.record(hdr.Name, d)
	if b.cur.contentSize >= p.threshold {
		return b.closeTar()
	}
	return nil
}

// EstimateRemoteSize is the progress display's total for RunRemote: the
// size of every database, read on a session of its own.
func EstimateRemoteSize(ctx context.Context, opts pg.ConnectOptions) (int64, error) {
	opts.NoFallback = true
	c, err := pg.Connect(ctx, opts)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return c.ClusterSize(ctx)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/receive"
)

func newWalReceiveCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-receive",
		Short: "Stream WAL over a replication connection into storage",
		Long: `Connects to PostgreSQL (PG* settings) as a physical replication client and
stores every WAL segment it receives exactly as wal-push would (wal_005/,
same compression and encryption). The replication slot WALG_SLOTNAME
(default walg) is created when absent; streaming resumes from its
restart_lsn. The slot is advanced only past segments already in storage, so
a restart, even after a crash, loses nothing: the segment being received is
streamed again. At a timeline switch the last segment of the old timeline
is stored as <segment>.partial and the new timeline's .history file before
streaming continues on it.

The segment being received is spooled in TUSK_WAL_RECEIVE_DIR (default: a
private directory under the system temp dir), not held in memory. It runs
until SIGTERM or SIGINT, which stop it cleanly (exit 0); any other failure
exits 1, as with WAL-G, for a supervisor to restart it.`,
		Args: argCount(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			err := a.walReceive(ctx)
			if err != nil && errors.Is(context.Cause(ctx), errInterrupted) {
				a.log.Info("wal-receive: stopped")
				return nil
			}
			return err
		},
	}
}

func (a *app) walReceive(ctx context.Context) error {
	w, err := a.newWAL(ctx)
	if err != nil {
		return err
	}
	dir, cleanup, err := a.receiveDir()
	if err != nil {
		return err
	}
	defer cleanup()
	slotName := a.cfg.SlotName()
	// As WAL-G does: the slot and the segment size are read over an
	// ordinary session, the WAL over a replication connection.
	sess, err := pg.Connect(ctx, pg.ConnectOptions{AppName: a.cfg.PGAppName(), Log: a.log})
	if err != nil {
		return err
	}
	slot, err := sess.PhysicalSlot(ctx, slotName)
	var segSize int64
	if err == nil {
		_, segSize, err = sess.Timeline(ctx)
	}
	sess.Close(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	if segSize != a.cfg.WalSegmentSize() {
		return fmt.Errorf("the server's WAL segments are %d bytes, WALG_PG_WAL_SIZE says %d", segSize, a.cfg.WalSegmentSize())
	}
	conn, err := pg.ConnectReplication(ctx, pg.ConnectOptions{AppName: a.cfg.PGAppName(), Log: a.log})
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	r := receive.New(conn, receive.Options{
		Slot:        slotName,
		SegmentSize: segSize,
		Dir:         dir,
		Archiver:    w.archiver,
		Log:         a.log,
	})
	return r.Run(ctx, slot)
}

// receiveDir opens wal-receive's spool directory: TUSK_WAL_RECEIVE_DIR,
// which must not be writable by others, or a new private temp dir removed
// by cleanup.
func (a *app) receiveDir() (root *os.Root, cleanup func(), err error) {
	path := a.cfg.WALReceiveDir()
	temp := path == ""
	if temp {
		if path, err = os.MkdirTemp("", "tusk-wal-receive-"); err != nil {
			return nil, nil, fmt.Errorf("spool directory: %w", err)
		}
	}
	root, err = fsutil.OpenRoot(path)
	if err == nil {
		if err = fsutil.CheckPrivateDir(root); err != nil {
			root.Close()
		}
	}
	if err != nil {
		if temp {
			os.RemoveAll(path)
		}
		return nil, nil, fmt.Errorf("TUSK_WAL_RECEIVE_DIR: %w", err)
	}
	return root, func() {
		root.Close()
		if temp {
			os.RemoveAll(path)
		}
	}, nil
}

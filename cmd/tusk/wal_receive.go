package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/fsutil"
	"github.com/tusk-pg/tusk/internal/memplan"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/pipe"
	"github.com/tusk-pg/tusk/internal/receive"
	"github.com/tusk-pg/tusk/internal/wal"
)

func newWalReceiveCommand(a *app) *cobra.Command {
	var showPlan, planJSON bool
	cmd := &cobra.Command{
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
private directory under the system temp dir), not held in memory; so is its
encoded form when TUSK_WAL_UPLOAD_BUFFER is memory. It runs
until SIGTERM or SIGINT, which stop it cleanly (exit 0); any other failure
exits 1, as with WAL-G, for a supervisor to restart it. --memory-plan prints
its memory bound; it sets GOMEMLIMIT and GOGC from it unless they are set.`,
		Args: cli.ArgCount(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := a.walReceivePlan()
			if err != nil {
				return err
			}
			if showPlan || planJSON {
				if planJSON {
					return plan.JSON(cmd.OutOrStdout())
				}
				return plan.Table(cmd.OutOrStdout())
			}
			applyMemoryPlan(plan)
			ctx := cmd.Context()
			err = a.walReceive(ctx)
			if err != nil && errors.Is(context.Cause(ctx), cli.ErrInterrupted) {
				a.Log.Info("wal-receive: stopped")
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&showPlan, "memory-plan", false, "print the most memory wal-receive can take with this configuration, and exit")
	cmd.Flags().BoolVar(&planJSON, "json", false, "with --memory-plan: print JSON")
	return cmd
}

func (a *app) walReceivePlan() (*memplan.Plan, error) {
	buffering, spool, facts, err := a.walUploaderFacts()
	if err != nil {
		return nil, err
	}
	if buffering == wal.BufferMemory {
		// The encoded segment goes to the spool directory, not memory
		// (walReceive sets the archiver's SpoolDir).
		buffering, spool = buffering+", encoded into TUSK_WAL_RECEIVE_DIR", 0
	}
	r := memplan.WalReceive{Buffering: buffering, Spool: spool, CopyBuffer: pipe.CopyBufferSize, Message: receive.MessageBytes}
	return memplan.WalReceivePlan(facts, r), nil
}

func (a *app) walReceive(ctx context.Context) error {
	w, err := a.NewWAL(ctx, cli.UsePrimary, "")
	if err != nil {
		return err
	}
	dir, cleanup, err := a.receiveDir()
	if err != nil {
		return err
	}
	defer cleanup()
	// With memory buffering the encoded segment is spooled there too: the
	// heap never holds a whole encoded segment.
	w.Archiver.SpoolDir = dir
	slotName := a.Cfg.SlotName()
	// As WAL-G does: the slot and the segment size are read over an
	// ordinary session, the WAL over a replication connection.
	sess, err := pg.Connect(ctx, pg.ConnectOptions{AppName: a.Cfg.PGAppName(), Log: a.Log})
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
	if segSize != a.Cfg.WalSegmentSize() {
		return fmt.Errorf("the server's WAL segments are %d bytes, WALG_PG_WAL_SIZE says %d", segSize, a.Cfg.WalSegmentSize())
	}
	conn, err := pg.ConnectReplication(ctx, pg.ConnectOptions{AppName: a.Cfg.PGAppName(), Log: a.Log})
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	r := receive.New(conn, receive.Options{
		Slot:        slotName,
		SegmentSize: segSize,
		Dir:         dir,
		Archiver:    w.Archiver,
		Log:         a.Log,
	})
	return r.Run(ctx, slot)
}

// receiveDir opens wal-receive's spool directory: TUSK_WAL_RECEIVE_DIR,
// which must not be writable by others, or a new private temp dir removed
// by cleanup.
func (a *app) receiveDir() (root *os.Root, cleanup func(), err error) {
	path := a.Cfg.WALReceiveDir()
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

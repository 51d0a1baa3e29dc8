package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/wal"
	"github.com/tusk-pg/tusk/internal/walcheck"
	"github.com/tusk-pg/tusk/internal/walindex"
)

func newWalVerifyCommand(a *app) *cobra.Command {
	var asJSON bool
	var timeline uint32
	var lsn, backupName string
	cmd := &cobra.Command{
		Use:   "wal-verify CHECK...",
		Short: "Check the archived WAL: integrity, timeline",
		Long: `Runs the named checks against the WAL in storage and prints each one's status
(OK, WARNING or FAILURE) and details.

integrity: walks back from the cluster's current segment to the first segment
of the earliest backup that is not permanent (or of --backup-name; down to
segment 1 when there is none), following timeline switches from the current
timeline's .history file, and reports runs of segments as FOUND,
MISSING_DELAYED (before the newest archived segment, within
WALG_INTEGRITY_MAX_DELAYED_WALS of the current one), MISSING_UPLOADING (within
WALG_UPLOAD_CONCURRENCY more) or MISSING_LOST. Any lost segment is a FAILURE,
other missing ones a WARNING.

timeline: OK when the cluster's timeline is the highest in storage, FAILURE
when a higher one exists, WARNING when storage holds no WAL.

The current timeline and WAL position are read from PostgreSQL (PG* settings),
or given with --timeline and --lsn (both together) when no server is at hand.

Like WAL-G, the exit status is 0 whenever the checks ran, whatever they found:
monitoring reads the status from the output (--json for machines). It is 1
when a check cannot run (storage or server unreachable, unreadable .history
file, --backup-name not found).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("at least one of the following checks should be specified: integrity, timeline")
			}
			for _, c := range args {
				if _, err := walcheck.ParseCheck(c); err != nil {
					return err
				}
			}
			tl, l := cmd.Flags().Changed("timeline"), cmd.Flags().Changed("lsn")
			if l && !tl {
				return errors.New(`"--lsn" flag works only in conjunction with the "--timeline" flag`)
			}
			if tl && !l {
				return errors.New(`"--timeline" flag works only in conjunction with the "--lsn" flag`)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var checks []walcheck.Check
			// In a fixed order (WAL-G's varies from run to run), once each.
			for _, c := range []walcheck.Check{walcheck.CheckIntegrity, walcheck.CheckTimeline} {
				if slices.Contains(args, c.String()) {
					checks = append(checks, c)
				}
			}
			segSize := a.Cfg.WalSegmentSize()
			var current wal.Segment
			var err error
			if cmd.Flags().Changed("lsn") {
				current, err = givenSegment(timeline, lsn, segSize)
			} else {
				current, err = a.clusterSegment(ctx, segSize)
			}
			if err != nil {
				return err
			}
			a.Log.Info("Current WAL segment: " + current.Name(segSize))
			w, err := a.NewWALReader(ctx)
			if err != nil {
				return err
			}
			ix, err := walindex.Build(ctx, w.Store, segSize)
			if err != nil {
				return err
			}
			rep, err := walcheck.Verify(ctx, w.Store, ix, w.Restorer, walcheck.VerifyOptions{
				Checks:         checks,
				Current:        current,
				BackupName:     backupName,
				UploadingRange: a.Cfg.UploadConcurrency(),
				DelayedRange:   a.Cfg.IntegrityMaxDelayedWALs(),
				Log:            a.Log,
			})
			if err != nil {
				return err
			}
			if asJSON {
				return walcheck.WriteVerifyJSON(cmd.OutOrStdout(), rep)
			}
			return walcheck.WriteVerify(cmd.OutOrStdout(), rep)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.Uint32Var(&timeline, "timeline", 0, `the cluster's current timeline (with --lsn), instead of asking PostgreSQL`)
	f.StringVar(&lsn, "lsn", "", `the cluster's current WAL position, e.g. 0/5000028 (with --timeline)`)
	f.StringVar(&backupName, "backup-name", "", "start the integrity range at this backup instead of the earliest one")
	return cmd
}

// givenSegment is the current segment from --timeline and --lsn: the one
// holding the byte before lsn, as WAL-G computes it.
func givenSegment(tli uint32, lsnText string, segSize int64) (wal.Segment, error) {
	if tli == 0 {
		return wal.Segment{}, errors.New("--timeline 0: timelines start at 1")
	}
	lsn, err := pg.ParseLSN(lsnText)
	if err != nil {
		return wal.Segment{}, fmt.Errorf("--lsn: %w", err)
	}
	if lsn == 0 {
		return wal.Segment{}, errors.New("--lsn 0/0: no WAL is written before it")
	}
	return wal.Segment{Timeline: tli, No: (lsn - 1).Segment(segSize)}, nil
}

// clusterSegment asks PostgreSQL for its timeline and WAL position.
func (a *app) clusterSegment(ctx context.Context, segSize int64) (wal.Segment, error) {
	conn, err := pg.Connect(ctx, pg.ConnectOptions{Log: a.Log})
	if err != nil {
		return wal.Segment{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tli, serverSegSize, err := conn.Timeline(ctx)
	if err != nil {
		return wal.Segment{}, err
	}
	if serverSegSize != segSize {
		return wal.Segment{}, fmt.Errorf("the server's WAL segments are %d bytes, WALG_PG_WAL_SIZE says %d", serverSegSize, segSize)
	}
	lsn, err := conn.CurrentLSN(ctx)
	if err != nil {
		return wal.Segment{}, err
	}
	if lsn == 0 {
		return wal.Segment{}, errors.New("the server reports WAL position 0/0")
	}
	return givenSegment(tli, lsn.String(), segSize)
}

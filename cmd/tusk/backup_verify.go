package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/backupcheck"
)

// exitFaults is backup-verify's status when the backup has faults (1 means
// the check itself could not run).
const exitFaults = 2

func newBackupVerifyCommand(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backup-verify NAME|LATEST",
		Short: "Check a base backup in storage without restoring it",
		Long: `Reads a base backup as a restore would, without writing anything: its sentinel
and metadata.json parse; every backup of its delta chain is in storage; every
tar object decrypts, decompresses and is a well-formed tar holding exactly the
members files_metadata.json lists for it; pg_control's tar holds a
global/pg_control that parses; where pg_control says the cluster has data
checksums, every data page of the relation files (the pages a delta's
increments hold) has its checksum, judged as backup-push --verify judges it
(pages changed after the backup started are rebuilt from WAL and not judged);
the WAL from the backup's start to its consistency point (finish LSN) is
archived, decodes, and each segment has the full size and its own first page
header.

Each fault is printed on one line naming the object (and for a bad page the
file and block; after ten in one file, one more line counts the rest);
--json prints a report. Exit status: 0 no fault, 2 faults found, 1 the check
could not run.`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			w, err := a.NewWALReader(ctx)
			if err != nil {
				return err
			}
			v := &backupcheck.Verifier{
				Store:       w.Store,
				Crypter:     w.Restorer.Crypter,
				WAL:         w.Restorer,
				SegmentSize: a.Cfg.WalSegmentSize(),
				Log:         a.Log,
			}
			rep, err := v.Verify(ctx, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := json.NewEncoder(out).Encode(rep); err != nil {
					return err
				}
			} else {
				for _, f := range rep.Faults {
					fmt.Fprintf(out, "FAULT %s: %s\n", f.Object, f.Problem)
				}
				fmt.Fprintf(out, "backup %s: %s (chain %s; %d tars, %d files, %d bytes; %d pages checksummed; %d WAL segments)\n",
					rep.Backup, rep.Status, strings.Join(rep.Chain, " <- "), rep.Tars, rep.Files, rep.Bytes, rep.Pages, rep.WALSegments)
			}
			if len(rep.Faults) > 0 {
				return &cli.ExitError{Code: exitFaults, Err: fmt.Errorf("backup %s: %d faults", rep.Backup, len(rep.Faults))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

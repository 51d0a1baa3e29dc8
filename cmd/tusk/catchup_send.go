package main

import (
	"fmt"

	"github.com/tusk-pg/tusk/internal/cli"

	"github.com/spf13/cobra"

	"github.com/tusk-pg/tusk/internal/backup/push"
	"github.com/tusk-pg/tusk/internal/pg"
)

func newCatchupSendCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "catchup-send PGDATA HOST:PORT",
		Short: "Send a catch-up straight to a standby's catchup-receive over TCP",
		Long: `Brings a stopped standby up to date from the running primary whose data
directory is PGDATA, without storage, as WAL-G's catchup-send does: it
connects to catchup-receive (tusk's or WAL-G's) at HOST:PORT, checks that the
standby has the primary's system identifier and timeline, starts a backup
(PG* settings for the connection) and sends what changed since the
standby's position: files the standby lacks or whose modification time
differs, relation files it has as the pages at or after its position, the
names of files the primary no longer has, then backup_label, tablespace_map
and pg_control. postgresql.conf, postgresql.auto.conf and pg_hba.conf stay
the standby's own. The stream is LZ4-compressed and not encrypted: with
encryption configured it refuses. It returns once the receiver has written
everything and closed the connection. WALG_DISK_RATE_LIMIT bounds its reads.`,
		Args: cli.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := catchupUnencrypted(a); err != nil {
				return err
			}
			res, err := push.CatchupSend(cmd.Context(), push.SendOptions{
				DataDir:       args[0],
				Destination:   args[1],
				Connect:       pg.ConnectOptions{AppName: a.Cfg.PGAppName(), Log: a.Log},
				StopTimeout:   a.Cfg.StopBackupTimeout(),
				DiskRateLimit: a.Cfg.DiskRateLimit(),
				Log:           a.Log,
			})
			if err != nil {
				return fmt.Errorf("catchup-send %s to %s: %w", args[0], args[1], err)
			}
			a.Log.Info("catchup-send: done", "from", res.From.String(), "backup_start", res.Start.String(),
				"full_files", res.Full, "increments", res.Increments, "unchanged", res.Unchanged,
				"deleted", res.Deleted, "bytes", res.ContentBytes)
			return nil
		},
	}
}

// catchupUnencrypted refuses catchup-send and catchup-receive when
// encryption is configured. WAL-G wraps the stream in its crypter, whose
// OpenPGP and libsodium writers hold back the end of each message until
// they are closed, which neither side ever does, so its encrypted
// catch-up stalls; tusk sends the stream in the clear, and will not do so
// silently where the settings ask for encryption.
func catchupUnencrypted(a *app) error {
	s := a.Cfg.Crypt()
	for _, set := range []struct{ name, value string }{
		{"WALG_PGP_KEY", s.PGPKey}, {"WALG_PGP_KEY_PATH", s.PGPKeyPath},
		{"WALG_LIBSODIUM_KEY", s.LibsodiumKey}, {"WALG_LIBSODIUM_KEY_PATH", s.LibsodiumKeyPath},
	} {
		if set.value != "" {
			return fmt.Errorf("%s is set, but catchup-send and catchup-receive cannot encrypt their stream: "+
				"unset it for this command (and use a private network or a tunnel), or use catchup-push and catchup-fetch", set.name)
		}
	}
	return nil
}

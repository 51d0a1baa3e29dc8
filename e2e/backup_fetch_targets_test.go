package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// TestBackupFetchTargetsPG15 restores one base backup with each kind of
// recovery target backup-fetch writes (immediate, time, LSN, xid inclusive
// and exclusive, restore point name) and compares the table with its
// digest on the primary at that moment. The restored servers start with no
// WALG_* variable in their environment: the restore_command tusk wrote
// must carry the configuration itself.
func TestBackupFetchTargetsPG15(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=zstd"}
	primary := archivingPrimary(t, tusk, "", env)
	primary.Exec(`create table events (id serial primary key, batch int, x bigint default txid_current(), body text);
		insert into events (batch, body) select 0, md5(g::text) from generate_series(1, 2000) g`)

	res := runAsServer(t, tusk, append(append([]string{}, env...), primary.ConnEnv()...), "backup-push", primary.DataDir())
	if res.code != 0 {
		t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
	}
	m := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F]+) `).FindStringSubmatch(res.output)
	if m == nil {
		t.Fatalf("backup-push output lacks the backup name:\n%s", res.output)
	}
	name := m[1]
	atBackup := anyDigest(t, primary, "events")

	batch := func(n int) {
		t.Helper()
		primary.Exec(fmt.Sprintf("insert into events (batch, body) select %d, md5(g::text) from generate_series(1, 500) g", n))
	}
	scalar := func(sql string) string {
		t.Helper()
		var s string
		if err := primary.QueryRow(sql).Scan(&s); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return s
	}
	batch(1)
	afterBatch1 := anyDigest(t, primary, "events")
	// Commits after this instant are not replayed by a time target.
	targetTime := scalar("select clock_timestamp()::text")
	time.Sleep(1100 * time.Millisecond)
	batch(2)
	afterBatch2 := anyDigest(t, primary, "events")
	// The insert position: batch 2's commit record lies before it (the
	// write position may lag behind when commits are asynchronous).
	targetLSN := scalar("select pg_current_wal_insert_lsn()::text")
	batch(3)
	afterBatch3 := anyDigest(t, primary, "events")
	xid3 := scalar("select distinct x::text from events where batch = 3")
	batch(4)
	afterBatch4 := anyDigest(t, primary, "events")
	primary.Exec("select pg_create_restore_point('after_batch_4')")
	batch(5)
	last := primary.SwitchWAL()
	primary.WaitArchived(last, 2*time.Minute)
	primary.Stop()

	for _, tc := range []struct {
		what  string
		flags []string
		want  digest
	}{
		{"immediate", []string{"--target-immediate"}, atBackup},
		{"time", []string{"--target-time", targetTime}, afterBatch1},
		{"lsn", []string{"--target-lsn", targetLSN}, afterBatch2},
		{"xid", []string{"--target-xid", xid3}, afterBatch3},
		{"xid-exclusive", []string{"--target-xid", xid3, "--target-inclusive=false"}, afterBatch2},
		{"name", []string{"--target-name", "after_batch_4"}, afterBatch4},
	} {
		t.Run(tc.what, func(t *testing.T) {
			dest := filepath.Join(pgcluster.TempDir(t), "data")
			args := append([]string{"backup-fetch", dest, name, "--target-action", "promote"}, tc.flags...)
			if res := runAsServer(t, tusk, env, args...); res.code != 0 {
				t.Fatalf("backup-fetch %v exit %d:\n%s", tc.flags, res.code, res.output)
			}
			auto, err := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(auto), store) {
				t.Errorf("postgresql.auto.conf holds the storage settings instead of referring to a config file:\n%s", auto)
			}
			c := pgcluster.Open(t, dest, pgcluster.Options{})
			c.Start()
			c.WaitRecoveryDone(3 * time.Minute)
			if got := anyDigest(t, c, "events"); got != tc.want {
				t.Errorf("restored %v, the primary had %v at that target", got, tc.want)
			}
			c.Stop()
		})
	}
}

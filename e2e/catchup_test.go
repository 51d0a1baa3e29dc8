package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/catchup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
)

// TestCatchupPushFetch leaves a streaming standby so far behind that the
// WAL it needs is gone (the primary keeps none for it and archives
// nothing), then brings it back with catchup-push on the primary from the
// standby's checkpoint and catchup-fetch onto the stopped standby: it
// starts, streams from the primary again, and every table matches, also
// after more writes.
//
// On PostgreSQL 17 the primary summarizes its WAL (summarize_wal) and
// catchup-push must take the changed blocks from the summaries.
func TestCatchupPushFetch(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	for _, major := range []int{15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			testCatchupPushFetch(t, tusk, major)
		})
	}
}

func testCatchupPushFetch(t *testing.T, tusk string, major int) {
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store}
	primary, standby, from := laggingStandby(t, major)

	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	if major >= 17 {
		pushEnv = append(pushEnv, "TUSK_DELTA_SOURCE=wal-summaries")
	}
	res := runAsServer(t, tusk, pushEnv, "catchup-push", primary.DataDir(), "--from-lsn", from)
	if res.code != 0 {
		t.Fatalf("catchup-push: exit %d\n%s", res.code, res.output)
	}
	if major >= 17 && !strings.Contains(res.output, "changed blocks from WAL summaries") {
		t.Errorf("catchup-push on PostgreSQL %d did not use WAL summaries:\n%s", major, res.output)
	}
	m := regexp.MustCompile(`msg="wrote backup" name=(base_[0-9A-F]{24}) `).FindStringSubmatch(res.output)
	if m == nil {
		t.Fatalf("catchup-push output lacks the backup name:\n%s", res.output)
	}
	raw, err := os.ReadFile(filepath.Join(store, "catchup_005", m[1]+backup.SentinelSuffix))
	if err != nil {
		t.Fatal(err)
	}
	sentinel, err := backup.ParseSentinel(raw)
	if err != nil {
		t.Fatal(err)
	}
	fromLSN, err := pg.ParseLSN(from)
	if err != nil || sentinel.DeltaLSN != fromLSN || sentinel.DeltaCount != 1 || sentinel.IsDelta() {
		t.Errorf("catch-up sentinel %s (from %s)", raw, from)
	}
	fmRaw, err := os.ReadFile(filepath.Join(store, "catchup_005", m[1], "files_metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fm backup.FilesMetadata
	if err := json.Unmarshal(fmRaw, &fm); err != nil {
		t.Fatal(err)
	}
	increments := 0
	for name, d := range fm.Files {
		if d.IsIncremented {
			increments++
		}
		if strings.HasSuffix(name, "/postgresql.conf") || strings.HasSuffix(name, "/pg_hba.conf") {
			t.Errorf("catch-up backup holds %s", name)
		}
	}
	if increments == 0 {
		t.Errorf("no relation file stored as a page increment (%d files)", len(fm.Files))
	}
	list := runAsServer(t, tusk, env, "catchup-list")
	if list.code != 0 || !strings.Contains(list.output, "base_") {
		t.Fatalf("catchup-list: exit %d\n%s", list.code, list.output)
	}
	if l := runAsServer(t, tusk, env, "backup-list"); strings.Contains(l.output, "base_0") {
		t.Errorf("backup-list shows the catch-up backup:\n%s", l.output)
	}
	fetch := runAsServer(t, tusk, env, "catchup-fetch", standby.DataDir(), "LATEST")
	if fetch.code != 0 {
		t.Fatalf("catchup-fetch: exit %d\n%s", fetch.code, fetch.output)
	}
	checkCaughtUp(t, primary, standby)
}

// checkCaughtUp starts the caught-up standby of laggingStandby and checks
// that it streams from the primary with the same tables, also after more
// writes, and without the dropped one.
func checkCaughtUp(t *testing.T, primary, standby *pgcluster.Cluster) {
	t.Helper()
	standby.Start()
	waitReplayed(t, primary, standby)
	checkSame(t, primary, standby, "accounts", "fresh")
	primary.Exec(`delete from accounts where id % 11 = 0; insert into fresh select g, 'late' from generate_series(20001, 21000) g`)
	waitReplayed(t, primary, standby)
	checkSame(t, primary, standby, "accounts", "fresh")
	var doomed bool
	if err := standby.QueryRow("select to_regclass('doomed') is not null").Scan(&doomed); err != nil || doomed {
		t.Errorf("the dropped table is still visible on the standby: %v %v", doomed, err)
	}
	var summarizing bool
	if err := standby.QueryRow("select coalesce(current_setting('summarize_wal', true), 'off') = 'on'").Scan(&summarizing); err != nil {
		t.Fatal(err)
	}
	if summarizing {
		checkSummarizing(t, primary, standby)
	}
}

// checkSummarizing checks that the caught-up standby's WAL summarizer
// (PostgreSQL 17+) goes on: it summarizes up to a checkpoint the primary
// takes now, past the gap the catch-up jumped (stuck, it would also keep
// every WAL segment from there on).
func checkSummarizing(t *testing.T, primary, standby *pgcluster.Cluster) {
	t.Helper()
	primary.Exec("checkpoint")
	var redo string
	if err := primary.QueryRow("select redo_lsn::text from pg_control_checkpoint()").Scan(&redo); err != nil {
		t.Fatal(err)
	}
	// Idle, the summarizer sleeps up to a minute between rounds.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var state string
		var done bool
		if err := standby.QueryRow("select row(s.*)::text, s.summarized_lsn >= $1::pg_lsn from pg_get_wal_summarizer_state() s", redo).Scan(&state, &done); err != nil {
			t.Fatal(err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes the standby's WAL summarizer is stuck at %s (tli, summarized, pending, pid), not at the primary's REDO point %s\n%s", state, redo, standby.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// laggingStandby returns a stopped standby so far behind its running
// PostgreSQL major primary that the WAL it needs is gone (the primary
// keeps none for it and archives nothing), and the standby's REDO point.
// Meanwhile the primary changed rows, dropped a table (doomed) and created
// one (fresh); from now on it keeps the recent WAL a caught-up standby
// streams from. From 17 on the primary summarizes its WAL.
func laggingStandby(t *testing.T, major int) (primary, standby *pgcluster.Cluster, from string) {
	t.Helper()
	conf := []string{"wal_keep_size = 0", "max_wal_size = 32MB", "min_wal_size = 32MB", "max_slot_wal_keep_size = 0"}
	if major >= 17 {
		conf = append(conf, "summarize_wal = on")
	}
	primary = pgcluster.New(t, pgcluster.Options{BinDir: usableBinDir(t, major), Conf: conf})
	primary.Start()
	primary.Exec(`create table accounts (id int primary key, owner text not null);
		insert into accounts select g, md5(g::text) from generate_series(1, 50000) g;
		create table doomed (id int); insert into doomed select generate_series(1, 1000);
		checkpoint`)
	primary.Stop()
	standbyConf := []string{
		fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=postgres'", primary.SocketDir(), primary.Port()),
		"hot_standby = on",
	}
	if major >= 17 {
		standbyConf = append(standbyConf, "summarize_wal = on")
	}
	standby = primary.Clone(pgcluster.Options{Conf: standbyConf})
	standby.WriteDataFile("standby.signal", nil)
	primary.Start()
	standby.Start()
	primary.Exec(`insert into accounts select g, md5(g::text) from generate_series(50001, 60000) g`)
	waitReplayed(t, primary, standby)

	// The standby stops; the primary moves on far enough that the WAL
	// from the standby's position is recycled.
	if err := standby.QueryRow("select redo_lsn::text from pg_control_checkpoint()").Scan(&from); err != nil {
		t.Fatal(err)
	}
	standby.Stop()
	primary.Exec(`update accounts set owner = owner || 'x' where id % 7 = 0;
		insert into accounts select g, md5(g::text) from generate_series(60001, 120000) g;
		drop table doomed;
		create table fresh (id int primary key, body text);
		insert into fresh select g, repeat(md5(g::text), 10) from generate_series(1, 20000) g;
		create index accounts_owner on accounts (owner)`)
	for range 6 {
		primary.Exec("select pg_switch_wal(); checkpoint")
	}
	var gone bool
	if err := primary.QueryRow("select min(name) > pg_walfile_name($1::pg_lsn) from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$'", from).Scan(&gone); err != nil || !gone {
		t.Fatalf("the primary still has the standby's WAL from %s (%v): the test would not show a catch-up", from, err)
	}

	// From now on the primary keeps the recent WAL the caught-up standby
	// streams from (the backup does not hold it: there is no slot and no
	// archive).
	primary.Exec("alter system set wal_keep_size = '512MB'")
	primary.Exec("select pg_reload_conf()")
	return primary, standby, from
}

// waitReplayed waits until standby has replayed the primary's current WAL
// position.
func waitReplayed(t *testing.T, primary, standby *pgcluster.Cluster) {
	t.Helper()
	var target string
	if err := primary.QueryRow("select pg_current_wal_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var done bool
		if err := standby.QueryRow("select coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", target).Scan(&done); err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not replay up to %s", target)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func checkSame(t *testing.T, primary, standby *pgcluster.Cluster, tables ...string) {
	t.Helper()
	for _, tbl := range tables {
		if p, s := anyDigest(t, primary, tbl), anyDigest(t, standby, tbl); p != s {
			t.Errorf("table %s: standby %v, primary %v", tbl, s, p)
		}
	}
}

// TestCatchupSendReceive brings a standby whose WAL is gone back with
// catchup-receive on it and catchup-send from the primary over loopback
// TCP, no storage involved: the standby starts, streams from the primary
// again, and every table matches, also after more writes. Before that, a
// receiver waiting for its sender ends promptly on SIGTERM, leaving the
// data directory as it was.
//
// On PostgreSQL 18 (data checksums on by default, pg_control version 1800)
// the same holds.
func TestCatchupSendReceive(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	for _, major := range []int{15, 18} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			testCatchupSendReceive(t, tusk, major)
		})
	}
}

func testCatchupSendReceive(t *testing.T, tusk string, major int) {
	t0 := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(t0).Seconds(), what) }
	primary, standby, from := laggingStandby(t, major)
	step("standby left behind")
	// A database created while the standby was away: its directory is new
	// to the standby.
	primary.Exec("create database late_db")
	controlBefore, err := os.ReadFile(filepath.Join(standby.DataDir(), "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("SIGTERM", func(t *testing.T) {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		recv := startCatchupReceiver(t, tusk, standby, port)
		began := time.Now()
		if err := recv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-recv.exited:
		case <-time.After(3 * time.Second):
			t.Fatalf("catchup-receive still runs 3 s after SIGTERM")
		}
		t.Logf("catchup-receive ended %v after SIGTERM: %v", time.Since(began), recv.err)
		if recv.err == nil {
			t.Errorf("catchup-receive ended with status 0 after SIGTERM:\n%s", readFile(recv.log))
		}
		after, _ := os.ReadFile(filepath.Join(standby.DataDir(), "global", "pg_control"))
		if !bytes.Equal(after, controlBefore) {
			t.Error("pg_control changed")
		}
	})

	t.Run("sender SIGTERM", func(t *testing.T) {
		// A receiver that answers and then reads nothing: the sender
		// blocks writing, its backup started.
		var sysID int64
		var tli int32
		if err := primary.QueryRow("select system_identifier, (select timeline_id from pg_control_checkpoint()) from pg_control_system()").Scan(&sysID, &tli); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
			c, err := catchup.NewConn(nc)
			if err == nil && c.WriteHello(catchup.Control{SystemIdentifier: uint64(sysID), CurrentTimeline: uint32(tli), Checkpoint: 1}, catchup.FileList{}) == nil {
				time.Sleep(time.Minute)
			}
		}()
		sender := startBackground(t, tusk, primary.ConnEnv(), filepath.Join(pgcluster.TempDir(t), "send.log"),
			"catchup-send", primary.DataDir(), ln.Addr().String())
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			if err := primary.QueryRow("select count(*) from pg_stat_activity where state = 'idle' and query like '%pg_backup_start%'").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			if !sender.running() || time.Now().After(deadline) {
				t.Fatalf("catchup-send did not start its backup (running %v):\n%s", sender.running(), readFile(sender.log))
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // sending by now
		began := time.Now()
		if err := sender.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-sender.exited:
		case <-time.After(3 * time.Second):
			t.Fatalf("catchup-send still runs 3 s after SIGTERM")
		}
		t.Logf("catchup-send ended %v after SIGTERM: %v", time.Since(began), sender.err)
		if sender.err == nil {
			t.Errorf("catchup-send ended with status 0 after SIGTERM:\n%s", readFile(sender.log))
		}
		// Its session, and so its backup, is gone.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var n int
			if err := primary.QueryRow("select count(*) from pg_stat_activity where query like '%pg_backup_start%' and pid <> pg_backend_pid()").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the sender's backup session outlives it")
			}
		}
	})

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	recv := startCatchupReceiver(t, tusk, standby, port)
	step("receiver listening")
	// Reads go through the disk rate limiter (200 MiB/s: no slower here).
	sendEnv := append([]string{"WALG_DISK_RATE_LIMIT=209715200"}, primary.ConnEnv()...)
	send := runAsServer(t, tusk, sendEnv, "catchup-send", primary.DataDir(), fmt.Sprintf("127.0.0.1:%d", port))
	if send.code != 0 {
		t.Fatalf("catchup-send: exit %d\n%s", send.code, send.output)
	}
	select {
	case <-recv.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("catchup-receive still runs 30 s after catchup-send returned")
	}
	if recv.err != nil {
		t.Fatalf("catchup-receive: %v\n%s", recv.err, readFile(recv.log))
	}
	step("catch-up sent")
	t.Logf("sender: %s", lastLine(send.output))
	t.Logf("receiver: %s", lastLine(readFile(recv.log)))
	m := regexp.MustCompile(`msg="catchup-send: done" from=(\S+) .* full_files=(\d+) increments=(\d+) unchanged=(\d+) deleted=(\d+)`).FindStringSubmatch(send.output)
	if m == nil {
		t.Fatalf("catchup-send output lacks its summary:\n%s", send.output)
	}
	if m[1] != from {
		t.Errorf("the sender caught up from %s, the standby's REDO point is %s", m[1], from)
	}
	if m[3] == "0" || m[4] == "0" || m[5] == "0" {
		t.Errorf("expected page increments, unchanged files and deletions (the dropped table): %s", m[0])
	}
	for _, keep := range []string{"postgresql.conf", "standby.signal"} {
		if _, err := os.Stat(filepath.Join(standby.DataDir(), keep)); err != nil {
			t.Errorf("the standby lost %s: %v", keep, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(standby.DataDir(), "backup_label")); err != nil || !strings.Contains(string(b), "START WAL LOCATION") {
		t.Errorf("backup_label: %q %v", b, err)
	}
	checkCaughtUp(t, primary, standby)
	step("caught up and streaming")
	var lateDB bool
	if err := standby.QueryRow("select exists (select from pg_database where datname = 'late_db')").Scan(&lateDB); err != nil || !lateDB {
		t.Errorf("the new database is not on the standby: %v %v", lateDB, err)
	}
}

// startCatchupReceiver starts catchup-receive into standby's data
// directory on port and waits until it listens.
func startCatchupReceiver(t *testing.T, tusk string, standby *pgcluster.Cluster, port int) *bgProc {
	t.Helper()
	p := startBackground(t, tusk, nil, filepath.Join(pgcluster.TempDir(t), "receive.log"),
		"catchup-receive", standby.DataDir(), fmt.Sprint(port))
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(readFile(p.log), "waiting for catchup-send") {
		if !p.running() || time.Now().After(deadline) {
			t.Fatalf("catchup-receive is not listening (running %v):\n%s", p.running(), readFile(p.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

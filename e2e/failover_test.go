package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// walNames returns the WAL segment names among keys (wal_005/<name>.<ext>).
func walNames(keys []string) []string {
	var out []string
	for _, k := range keys {
		base := strings.TrimPrefix(k, "wal_005/")
		if name, _, _ := strings.Cut(base, "."); len(name) == 24 && base != k {
			out = append(out, name)
		}
	}
	return out
}

// The primary storage (versitygw) stops in the middle of a burst of
// archiving: wal-push moves to the failover storage (a directory), so
// every segment ends up in one of the two, and once the primary is back a
// restore (backup-fetch from the primary, wal-fetch as restore_command)
// reads each file from whichever storage holds it and reaches the
// primary's data.
func TestFailoverStorageMidBurst(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{Prefix: "main"})
	spare := pgcluster.TempDir(t)
	home := pgcluster.TempDir(t)
	env := append(srv.Env(),
		"HOME="+home, // the status cache file lives there
		"WALG_S3_MAX_RETRIES=1",
		"WALG_UPLOAD_CONCURRENCY=1",
		`WALG_FAILOVER_STORAGES={"Spare":{"WALG_FILE_PREFIX":"`+spare+`"}}`,
		"WALG_FAILOVER_STORAGES_CHECK_TIMEOUT=5s",
	)
	primary := archivingPrimary(t, tusk, "", env)
	primary.Exec(`create table burst (id int primary key, body text)`)
	primary.Exec(`insert into burst select g, repeat(md5(g::text), 10) from generate_series(1, 20000) g`)

	res := runAsServer(t, tusk, append(append([]string{}, env...), primary.ConnEnv()...), "backup-push", primary.DataDir())
	if res.code != 0 {
		t.Fatalf("backup-push exit %d:\n%s", res.code, res.output)
	}
	if !strings.Contains(res.output, "uploaded to storage default") {
		t.Errorf("backup-push did not say it wrote to the primary:\n%s", res.output)
	}

	// The burst: a segment a round; the primary storage goes away after
	// the fourth.
	round := 0
	write := func() string {
		round++
		primary.Exec(fmt.Sprintf(`insert into burst select 100000 * %d + g, repeat(md5(g::text), 10) from generate_series(1, 3000) g`, round))
		return primary.SwitchWAL()
	}
	var last string
	for range 4 {
		last = write()
	}
	primary.WaitArchived(last, time.Minute)
	srv.Stop()
	for range 4 {
		last = write()
	}
	// PostgreSQL waits a minute after three failures in a row unless a
	// new segment wakes it: write one whenever archiving stalls.
	deadline := time.Now().Add(45 * time.Second)
	var prev int64 = -1
	for {
		st, err := primary.Archiver()
		if err != nil {
			t.Fatal(err)
		}
		if st.LastArchivedWAL >= last {
			t.Logf("archiver after the outage: %v", st)
			if st.FailedCount == 0 {
				t.Errorf("no push failed after the primary storage stopped: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the burst is not archived 45 s after the primary storage stopped: %v", st)
		}
		if st.ArchivedCount == prev {
			last = write()
		}
		prev = st.ArchivedCount
		time.Sleep(time.Second)
	}
	want := anyDigest(t, primary, "burst")
	last = primary.SwitchWAL()
	primary.WaitArchived(last, time.Minute)
	primary.Stop()

	// Every segment from the backup's to the last is in one storage or
	// the other; the failover holds the later ones.
	srv.Restart()
	onPrimary := walNames(s3Keys(t, srv, "main/"))
	var spareKeys []string
	filepath.WalkDir(spare, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(spare, p)
			spareKeys = append(spareKeys, filepath.ToSlash(rel))
		}
		return nil
	})
	onSpare := walNames(spareKeys)
	if len(onPrimary) == 0 || len(onSpare) == 0 {
		t.Fatalf("segments on the primary %v, on the failover %v", onPrimary, onSpare)
	}
	all := append(slices.Clone(onPrimary), onSpare...)
	slices.Sort(all)
	all = slices.Compact(all)
	for i := 1; i < len(all); i++ {
		if segNo(t, all[i], 256) != segNo(t, all[i-1], 256)+1 {
			t.Errorf("segments %s and %s are archived, none between", all[i-1], all[i])
		}
	}
	if all[len(all)-1] < last {
		t.Errorf("the last archived segment is %s, want %s", all[len(all)-1], last)
	}
	t.Logf("%d segments on the primary storage, %d on the failover", len(onPrimary), len(onSpare))

	// backup-list sees the backup on the primary, with its storage name.
	list := runAsServer(t, tusk, env, "backup-list", "--json")
	if list.code != 0 || !strings.Contains(list.output, `"storage_name":"default"`) {
		t.Fatalf("backup-list exit %d:\n%s", list.code, list.output)
	}
	// --target-storage spare: no backup there.
	list = runAsServer(t, tusk, env, "backup-list", "--target-storage", "spare")
	if list.code != 0 || !strings.Contains(list.output, "No backups found") {
		t.Errorf("backup-list --target-storage spare exit %d:\n%s", list.code, list.output)
	}
	// wal-fetch --target-storage default does not see the failover's
	// segments; without it, wal-fetch finds them.
	lastOnSpare := onSpare[len(onSpare)-1]
	dst := filepath.Join(pgcluster.TempDir(t), "seg")
	if r := runAsServer(t, tusk, env, "wal-fetch", lastOnSpare, dst, "--target-storage", "default"); r.code != 74 {
		t.Errorf("wal-fetch %s --target-storage default: exit %d, want 74:\n%s", lastOnSpare, r.code, r.output)
	}

	restored := restoreFromBackup(t, tusk, env, "LATEST", &backup.Sentinel{}, "")
	if got := anyDigest(t, restored, "burst"); got != want {
		t.Errorf("restored burst %v, primary had %v", got, want)
	}

	// Bring the failover's WAL home: st transfer moves it to the primary.
	if r := runAsServer(t, tusk, env, "st", "transfer", "pg-wals", "--source", "spare"); r.code != 0 {
		t.Fatalf("st transfer pg-wals exit %d:\n%s", r.code, r.output)
	}
	onPrimary = walNames(s3Keys(t, srv, "main/"))
	for _, name := range onSpare {
		if !slices.Contains(onPrimary, name) {
			t.Errorf("%s is not on the primary storage after st transfer", name)
		}
	}
	if r := runAsServer(t, tusk, env, "st", "ls", "-r", "--target", "spare", "wal_005"); r.code != 0 || strings.Contains(r.output, ".lz4") {
		t.Errorf("the failover still lists WAL after st transfer (exit %d):\n%s", r.code, r.output)
	}
	if r := runAsServer(t, tusk, env, "wal-fetch", lastOnSpare, dst, "--target-storage", "default"); r.code != 0 {
		t.Errorf("wal-fetch %s from the primary after st transfer: exit %d:\n%s", lastOnSpare, r.code, r.output)
	}
}

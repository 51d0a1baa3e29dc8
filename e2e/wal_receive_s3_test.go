package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
	"github.com/tusk-pg/tusk/internal/wal"
)

// TestWalReceiveS3 streams one PostgreSQL 15 primary under pgbench into
// versitygw with zstd + libsodium through two wal-receive processes at once
// (a slot each): TUSK_WAL_UPLOAD_BUFFER=memory over HTTP, where the payload
// is signed, so the encoded segment spooled to <segment>.encoded in
// TUSK_WAL_RECEIVE_DIR is read twice (hashed, then sent), and the default
// buffering over HTTPS (recompress). Both are stopped with SIGTERM in the
// middle of the burst and started again. No encoded spool file is left in
// the receive directory after either SIGTERM, and every stored segment,
// fetched back with wal-fetch, equals the primary's pg_wal file.
func TestWalReceiveS3(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	primary := pgcluster.New(t, pgcluster.Options{Conf: []string{
		"wal_level = replica", "max_wal_senders = 8", "max_replication_slots = 8", "wal_keep_size = 0"}})
	primary.Start()
	if out, err := pgbench(primary, "-i", "-q", "-s", "1").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	// A slot nobody reads keeps every segment in pg_wal, for the comparison.
	primary.Exec("select pg_create_physical_replication_slot('keep', true)")

	type receiver struct {
		name   string
		srv    *s3server.Server
		env    []string // storage and codec, for wal-fetch
		rcvEnv []string
		dir    string // TUSK_WAL_RECEIVE_DIR
		log    string
		p      *bgProc
	}
	var rcvs []*receiver
	for _, c := range []struct {
		name, buffer string
		tls          bool
	}{{"memory", "memory", false}, {"default", "", true}} {
		r := &receiver{name: c.name, srv: s3server.Start(t, s3server.Options{TLS: c.tls, Prefix: "receive"}), dir: pgcluster.TempDir(t)}
		r.env = append(r.srv.Env(), "WALG_COMPRESSION_METHOD=zstd", "WALG_LIBSODIUM_KEY=tusk-e2e-wal-receive-key-0123456789")
		if c.buffer != "" {
			r.env = append(r.env, "TUSK_WAL_UPLOAD_BUFFER="+c.buffer)
		}
		r.rcvEnv = append(append([]string{}, r.env...), primary.ConnEnv()...)
		r.rcvEnv = append(r.rcvEnv, "WALG_SLOTNAME=walg_"+c.name, "TUSK_WAL_RECEIVE_DIR="+r.dir)
		r.log = filepath.Join(pgcluster.TempDir(t), "wal-receive-"+c.name+".log")
		r.p = startReceiver(t, tusk, r.rcvEnv, r.log)
		rcvs = append(rcvs, r)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := primary.QueryRow("select count(*) from pg_replication_slots where slot_name like 'walg\\_%' and restart_lsn is not null").Scan(&n); err == nil && n == len(rcvs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wal-receive made %d slots of %d", n, len(rcvs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	noEncoded := func(when string) {
		t.Helper()
		for _, r := range rcvs {
			spooled, _ := filepath.Glob(filepath.Join(r.dir, "*"))
			for _, f := range spooled {
				if wal.IsSpoolFileName(filepath.Base(f)) {
					t.Errorf("%s: %s left in TUSK_WAL_RECEIVE_DIR %s", r.name, filepath.Base(f), when)
				}
			}
		}
	}

	// SIGTERM in the middle of a burst, uploads on the way; started again,
	// each resumes from its slot.
	stopBench := startPgbench(t, primary)
	time.Sleep(2 * time.Second)
	// A segment switched out: SIGTERM as soon as the memory receiver has
	// its encoded form in the receive directory, the upload on the way.
	primary.SwitchWAL()
	if !encodedSeen(rcvs[0].dir, 10*time.Second) {
		t.Errorf("memory: no <segment>.encoded seen in TUSK_WAL_RECEIVE_DIR %s while a segment was stored", rcvs[0].dir)
	}
	for _, r := range rcvs {
		stopReceiver(t, r.p)
	}
	noEncoded("after SIGTERM under load")
	for _, r := range rcvs {
		r.p = startReceiver(t, tusk, r.rcvEnv, r.log)
	}
	time.Sleep(time.Second)
	stopBench()
	// Whatever pgbench wrote, each switch after a write ends a segment.
	primary.Exec("create table marker (id int, body text)")
	var last string
	for i := range 3 {
		primary.Exec("insert into marker select g, md5(g::text) from generate_series($1::int, $1::int + 9999) g", i*10000)
		last = primary.SwitchWAL()
	}

	for _, r := range rcvs {
		prefix := r.srv.Prefix + "/wal_005/"
		waitStored(t, last, r.p, time.Minute, func() string {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			objs, _ := r.srv.Objects(ctx, prefix+last)
			for k := range objs {
				return strings.TrimPrefix(k, prefix)
			}
			return ""
		})
	}
	for _, r := range rcvs {
		stopReceiver(t, r.p)
	}
	noEncoded("after SIGTERM")

	pgWAL := filepath.Join(primary.DataDir(), "pg_wal")
	for _, r := range rcvs {
		t.Run(r.name, func(t *testing.T) {
			objs := walObjectsInS3(t, r.srv, r.srv.Prefix+"/wal_005/")
			checkWALObjects(t, objs, "zstd", true, 0, last)
			if len(objs) < 3 {
				t.Errorf("%d segments stored, want at least 3", len(objs))
			}
			// No detached prefetcher outliving the test's directories.
			fetchEnv := append(append([]string{}, r.env...), "WALG_DOWNLOAD_CONCURRENCY=1")
			dir := t.TempDir()
			for obj := range objs {
				name, _, _ := strings.Cut(obj, ".")
				dest := filepath.Join(dir, name)
				if res := runTusk(t, tusk, fetchEnv, "wal-fetch", name, dest); res.code != 0 {
					t.Fatalf("wal-fetch %s: exit %d\n%s", name, res.code, res.output)
				}
				want, err := os.ReadFile(filepath.Join(pgWAL, name))
				if err != nil {
					t.Fatalf("%s stored but not in the primary's pg_wal: %v", name, err)
				}
				if got := mustRead(t, dest); !bytes.Equal(got, want) {
					t.Errorf("%s fetched back is %d bytes unequal to the primary's %d", name, len(got), len(want))
				}
			}
		})
	}
}

// encodedSeen polls dir (every millisecond: an upload lasts tens of them)
// until it holds a wal.SpoolFileName.
func encodedSeen(dir string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if wal.IsSpoolFileName(e.Name()) {
				return true
			}
		}
	}
	return false
}

package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tusk-pg/tusk/internal/backup"
	"github.com/tusk-pg/tusk/internal/pg"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/kmsserver"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
	"github.com/tusk-pg/tusk/internal/testenv/sshserver"
)

// The tests in this file check, with a real WAL-G binary, that what one
// tool stores the other restores (docs/compatibility.md). They run only
// when TUSK_WALG_BIN names a WAL-G binary (a PostgreSQL build of WAL-G,
// e.g. v3.0.9's main/pg); CI has none, so they skip there.

// walgBinary returns TUSK_WALG_BIN, or skips the test.
func walgBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("TUSK_WALG_BIN")
	if p == "" {
		t.Skip("SKIPPED: TUSK_WALG_BIN is not set; the WAL-G interoperability checks need a WAL-G binary (docs/compatibility.md)")
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("TUSK_WALG_BIN=%s: %v\n%s", p, err, out)
	}
	t.Logf("WAL-G: %s", strings.TrimSpace(string(out)))
	return p
}

// interopStorage is one storage both tools are pointed at.
type interopStorage struct {
	env []string
	get func(t *testing.T, key string) []byte
}

func fileStorage(t *testing.T) interopStorage {
	dir := pgcluster.TempDir(t)
	return interopStorage{
		env: []string{"WALG_FILE_PREFIX=" + dir},
		get: func(t *testing.T, key string) []byte { return mustRead(t, filepath.Join(dir, key)) },
	}
}

func s3Storage(t *testing.T) interopStorage {
	srv, err := s3server.Run(s3server.Options{Prefix: "interop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return interopStorage{
		env: srv.Env(),
		get: func(t *testing.T, key string) []byte { return s3Get(t, srv, "interop/"+key) },
	}
}

// fixDataDirMode is run after a WAL-G backup-fetch: WAL-G creates the
// missing parents of a file it extracts with mode 0755
// (utility.CreateParentDirs), the data directory included when a tar
// starting with a file is extracted first, and PostgreSQL refuses to start
// on it; WAL-G's own remote-backup test runs chmod 0700 after backup-fetch.
// nil (nothing to fix) for tusk, which creates the data directory 0700.
func fixDataDirMode(t *testing.T, fetcher, walg string) func(string) {
	if fetcher != walg {
		return nil
	}
	return func(dir string) {
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// sftpStorage is a directory served by OpenSSH on a loopback port
// (WALG_SSH_PREFIX); the test reads it on disk.
func sftpStorage(t *testing.T) interopStorage {
	srv := sshserver.Start(t)
	dir := pgcluster.TempDir(t)
	return interopStorage{
		env: srv.Env(dir),
		get: func(t *testing.T, key string) []byte { return mustRead(t, filepath.Join(dir, key)) },
	}
}

var backupNameRE = regexp.MustCompile(`base_[0-9A-F]{24}`)

// backupNameIn is the first backup name in a push's output (tusk's
// `name=base_...`, WAL-G's "Wrote backup with name base_...").
func backupNameIn(t *testing.T, output string) string {
	t.Helper()
	name := backupNameRE.FindString(output)
	if name == "" {
		t.Fatalf("no backup name in the output:\n%s", output)
	}
	return name
}

// TestWALGInteropRemoteBackup takes a remote backup (backup-push without a
// data directory, BASE_BACKUP over TCP with a password replication user)
// of PostgreSQL 15 with a user tablespace under pgbench with one tool and
// restores it with the other's backup-fetch and wal-fetch to a restore
// point, on file storage, S3 (versitygw) and SFTP (OpenSSH). The WAL is
// archived by tusk wal-push.
func TestWALGInteropRemoteBackup(t *testing.T) {
	walg := walgBinary(t)
	tusk := testenv.BuildTusk(t)
	for _, c := range []struct {
		name             string
		storage          func(*testing.T) interopStorage
		pusher, fetcher  string
		compressionLevel string
	}{
		{"tusk-to-walg/file", fileStorage, tusk, walg, "zstd"},
		{"tusk-to-walg/s3", s3Storage, tusk, walg, "lz4"},
		{"tusk-to-walg/sftp", sftpStorage, tusk, walg, "zstd"},
		{"walg-to-tusk/sftp", sftpStorage, walg, tusk, "lz4"},
		{"walg-to-tusk/file", fileStorage, walg, tusk, "zstd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := c.storage(t)
			env := append([]string{"WALG_COMPRESSION_METHOD=" + c.compressionLevel}, st.env...)
			tbs := pgcluster.TempDir(t)
			primary := pgcluster.New(t, pgcluster.Options{
				DataChecksums: true,
				TCP:           true,
				Conf:          []string{"archive_mode = on", fmt.Sprintf("archive_command = '%s wal-push %%p'", tusk)},
				Env:           env,
			})
			primary.Start()
			primary.Exec("create tablespace remote_space location '" + tbs + "'")
			if out, err := pgbenchCmd(primary, "-i", "-q", "-s", "2", "--tablespace=remote_space").CombinedOutput(); err != nil {
				t.Fatalf("pgbench -i: %v\n%s", err, out)
			}
			primary.Exec(`create table static (id int primary key, body text);
				insert into static select g, repeat(md5(g::text), 20) from generate_series(1, 20000) g`)
			replEnv := primary.AddReplicationUser("backup_agent", "s3cret pass'word")
			primary.Exec("grant pg_monitor to backup_agent")

			stopBench := background(t, pgbenchCmd(primary, "-n", "-c", "2", "-T", "600"))
			defer stopBench()
			time.Sleep(time.Second)
			pushEnv := append(append([]string{"WALG_TAR_SIZE_THRESHOLD=4194304"}, env...), replEnv...)
			res := runAsServer(t, c.pusher, pushEnv, "backup-push")
			if res.code != 0 {
				t.Fatalf("%s backup-push exit %d:\n%s", c.pusher, res.code, res.output)
			}
			name := backupNameIn(t, res.output)
			stopBench()

			want := map[string]digest{}
			for _, tbl := range append(pgbenchTables, "static") {
				want[tbl] = anyDigest(t, primary, tbl)
			}
			primary.Exec("select pg_create_restore_point('after_load')")
			primary.WaitArchived(primary.SwitchWAL(), 2*time.Minute)
			primary.Stop()

			s, err := backup.ParseSentinel(st.get(t, backup.SentinelKey(name)))
			if err != nil {
				t.Fatal(err)
			}
			if s.Spec == nil || len(s.Spec.Tablespaces) != 1 {
				t.Fatalf("sentinel of %s: tablespace spec %+v", name, s.Spec)
			}
			r := restoreWith(t, c.fetcher, "", env, name, s, "recovery_target_name = 'after_load'", fixDataDirMode(t, c.fetcher, walg))
			// The tablespace is where --restore-spec put it, not in the
			// primary's directory (tablespace_map is not restored).
			link, err := os.Readlink(filepath.Join(r.DataDir(), "pg_tblspc", s.Spec.Tablespaces[0].Name))
			if err != nil || link == tbs || !strings.HasPrefix(link, filepath.Dir(r.DataDir())) {
				t.Errorf("restored tablespace link %q (%v), the primary's was %s", link, err, tbs)
			}
			for tbl, w := range want {
				if got := anyDigest(t, r, tbl); got != w {
					t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
				}
			}
			checkPgbenchInvariant(t, r, "restored to the restore point")
			r.Stop()
		})
	}
}

// TestWALGInteropWalReceive archives WAL with tusk wal-receive only
// (archive_mode off; zstd and libsodium), takes a base backup with tusk,
// and restores it with WAL-G's backup-fetch and wal-fetch to a restore
// point taken after a pgbench load.
func TestWALGInteropWalReceive(t *testing.T) {
	walg := walgBinary(t)
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=zstd", "WALG_LIBSODIUM_KEY=tusk-e2e-wal-receive-key-0123456789"}
	primary := pgcluster.New(t, pgcluster.Options{DataChecksums: true, Conf: []string{
		"wal_level = replica", "max_wal_senders = 4", "max_replication_slots = 4", "wal_keep_size = 0",
	}})
	primary.Start()
	if out, err := pgbenchCmd(primary, "-i", "-q", "-s", "2").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	connEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	rcv := startReceiver(t, tusk, connEnv, filepath.Join(pgcluster.TempDir(t), "wal-receive.log"))
	time.Sleep(2 * time.Second) // the slot exists before the backup starts
	res := runAsServer(t, tusk, connEnv, "backup-push", primary.DataDir())
	if res.code != 0 {
		t.Fatalf("backup-push: exit %d\n%s", res.code, res.output)
	}
	name := backupNameIn(t, res.output)
	if out, err := pgbenchCmd(primary, "-n", "-c", "2", "-T", "15").CombinedOutput(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	want := map[string]digest{}
	for _, tbl := range pgbenchTables {
		want[tbl] = anyDigest(t, primary, tbl)
	}
	primary.Exec("select pg_create_restore_point('after_load')")
	waitObject(t, store, primary.SwitchWAL(), rcv, 2*time.Minute)
	rcv.cmd.Process.Signal(syscall.SIGTERM)
	<-rcv.exited
	primary.Stop()

	s, err := backup.ParseSentinel(mustRead(t, filepath.Join(store, backup.SentinelKey(name))))
	if err != nil {
		t.Fatal(err)
	}
	r := restoreWith(t, walg, "", env, name, s, "recovery_target_name = 'after_load'", fixDataDirMode(t, walg, walg))
	for tbl, w := range want {
		if got := anyDigest(t, r, tbl); got != w {
			t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
		}
	}
	checkPgbenchInvariant(t, r, "restored from WAL-G with wal-receive's WAL")
	r.Stop()
}

// TestWALGInteropCatchup leaves a standby behind past the WAL the primary
// keeps, and catches it up with one tool's catchup-push and the other's
// catchup-fetch (catchup-list of the fetching tool lists the backup), or
// with one tool's catchup-send and the other's catchup-receive over
// loopback TCP, each way; the standby then streams again with equal data.
// On PostgreSQL 15, 17 and 18 (from 17 on the primary summarizes its WAL
// and tusk's catchup-push must take the changed pages from the summaries).
func TestWALGInteropCatchup(t *testing.T) {
	walg := walgBinary(t)
	tusk := testenv.BuildTusk(t)
	type tc struct {
		name            string
		major           int
		pusher, fetcher string
		sendReceive     bool
	}
	var cases []tc
	for _, major := range []int{15, 17, 18} {
		cases = append(cases,
			tc{fmt.Sprintf("pg%d/push-fetch/walg-to-tusk", major), major, walg, tusk, false},
			tc{fmt.Sprintf("pg%d/push-fetch/tusk-to-walg", major), major, tusk, walg, false},
			tc{fmt.Sprintf("pg%d/send-receive/walg-to-tusk", major), major, walg, tusk, true},
			tc{fmt.Sprintf("pg%d/send-receive/tusk-to-walg", major), major, tusk, walg, true})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := pgcluster.TempDir(t)
			env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=lz4"}
			primary, standby, redo := laggingStandby(t, c.major)
			lsn, err := pg.ParseLSN(redo)
			if err != nil {
				t.Fatal(err)
			}
			from := strconv.FormatUint(uint64(lsn), 10) // WAL-G's --from-lsn takes only a decimal number
			pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
			if c.sendReceive {
				port, err := testenv.FreePort()
				if err != nil {
					t.Fatal(err)
				}
				recv := startBackground(t, c.fetcher, nil, filepath.Join(pgcluster.TempDir(t), "receive.log"),
					"catchup-receive", standby.DataDir(), fmt.Sprint(port))
				waitListening(t, recv, port)
				send := runAsServer(t, c.pusher, primary.ConnEnv(), "catchup-send", primary.DataDir(), fmt.Sprintf("127.0.0.1:%d", port))
				if send.code != 0 {
					t.Fatalf("%s catchup-send: exit %d\n%s\nreceiver:\n%s", c.pusher, send.code, send.output, tail(readFile(recv.log), 30))
				}
				select {
				case <-recv.exited:
				case <-time.After(30 * time.Second):
					t.Fatalf("%s catchup-receive still runs 30 s after catchup-send returned", c.fetcher)
				}
				if recv.err != nil {
					t.Fatalf("%s catchup-receive: %v\n%s", c.fetcher, recv.err, readFile(recv.log))
				}
			} else {
				res := runAsServer(t, c.pusher, pushEnv, "catchup-push", primary.DataDir(), "--from-lsn", from)
				if res.code != 0 {
					t.Fatalf("%s catchup-push: exit %d\n%s", c.pusher, res.code, res.output)
				}
				if c.pusher == tusk && c.major >= 17 && !strings.Contains(res.output, "changed blocks from WAL summaries") {
					t.Errorf("tusk catchup-push on PostgreSQL %d did not use WAL summaries:\n%s", c.major, res.output)
				}
				name := backupNameIn(t, res.output)
				if l := runAsServer(t, c.fetcher, env, "catchup-list"); l.code != 0 || !strings.Contains(l.output, name) {
					t.Errorf("%s catchup-list: exit %d, %s missing\n%s", c.fetcher, l.code, name, l.output)
				}
				fetch := runAsServer(t, c.fetcher, env, "catchup-fetch", standby.DataDir(), name)
				if fetch.code != 0 {
					t.Fatalf("%s catchup-fetch: exit %d\n%s", c.fetcher, fetch.code, fetch.output)
				}
			}
			standby.Start()
			waitReplayed(t, primary, standby)
			checkSame(t, primary, standby, "accounts", "fresh")
			primary.Exec(`delete from accounts where id % 11 = 0; insert into fresh select g, 'late' from generate_series(20001, 21000) g`)
			waitReplayed(t, primary, standby)
			checkSame(t, primary, standby, "accounts", "fresh")
			if c.major >= 17 && c.fetcher == tusk {
				// WAL-G leaves the old WAL: its standby's summarizer
				// stays stuck (docs/compatibility.md).
				checkSummarizing(t, primary, standby)
			}
		})
	}
}

// waitListening waits until a TCP socket listens on port (from
// /proc/net/tcp and tcp6: connecting to look would be taken for the
// sender by a receiver that accepts one connection).
func waitListening(t *testing.T, p *bgProc, port int) {
	t.Helper()
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			for _, line := range strings.Split(readFile(f), "\n") {
				fields := strings.Fields(line)
				if len(fields) > 3 && strings.HasSuffix(fields[1]+" ", want) && fields[3] == "0A" {
					return
				}
			}
		}
		if !p.running() || time.Now().After(deadline) {
			t.Fatalf("catchup-receive does not listen on %d (running %v):\n%s", port, p.running(), readFile(p.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listedBackup is one entry of `backup-list --detail --json`, the fields
// both tools print.
type listedBackup struct {
	Name      string `json:"backup_name"`
	WalFile   string `json:"wal_file_name"`
	Permanent bool   `json:"is_permanent"`
	StartLSN  uint64 `json:"start_lsn"`
	FinishLSN uint64 `json:"finish_lsn"`
}

func listBackups(t *testing.T, bin string, env []string) []listedBackup {
	t.Helper()
	res := runAsServer(t, bin, env, "backup-list", "--detail", "--json")
	if res.code != 0 {
		t.Fatalf("%s backup-list: exit %d\n%s", bin, res.code, res.output)
	}
	out := ""
	for _, line := range strings.Split(res.output, "\n") {
		if strings.HasPrefix(line, "[") {
			out = line // WAL-G logs a line ("List backups from storages: [default]") first
		}
	}
	var l []listedBackup
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("%s backup-list --json: %v\n%s", bin, err, res.output)
	}
	sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
	return l
}

// TestWALGInteropRetention takes four backups with tusk, marks the first
// permanent with tusk backup-mark and deletes with tusk `delete retain
// FULL 1 --confirm`; WAL-G's backup-list then shows exactly what tusk's
// does (the permanent one and the newest), and a WAL-G backup-mark of
// another one is seen by tusk.
func TestWALGInteropRetention(t *testing.T) {
	walg := walgBinary(t)
	tusk := testenv.BuildTusk(t)
	store := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=lz4"}
	primary := archivingPrimary(t, tusk, "", env)
	pushEnv := append(append([]string{}, env...), primary.ConnEnv()...)
	var names []string
	for i := range 4 {
		primary.Exec(fmt.Sprintf("create table t%d as select generate_series(1, 10000) id", i))
		res := runAsServer(t, tusk, pushEnv, "backup-push", primary.DataDir())
		if res.code != 0 {
			t.Fatalf("backup-push: exit %d\n%s", res.code, res.output)
		}
		names = append(names, backupNameIn(t, res.output))
		primary.SwitchWAL()
	}
	if res := runAsServer(t, tusk, pushEnv, "backup-mark", names[0]); res.code != 0 {
		t.Fatalf("backup-mark: exit %d\n%s", res.code, res.output)
	}
	if res := runAsServer(t, tusk, pushEnv, "delete", "retain", "FULL", "1", "--confirm"); res.code != 0 {
		t.Fatalf("delete: exit %d\n%s", res.code, res.output)
	}
	got, want := listBackups(t, walg, env), listBackups(t, tusk, env)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after tusk's mark and delete:\nWAL-G lists %+v\ntusk lists  %+v", got, want)
	}
	if len(got) != 2 || got[0].Name != names[0] || !got[0].Permanent || got[1].Name != names[3] || got[1].Permanent {
		t.Errorf("WAL-G lists %+v, want %s (permanent) and %s", got, names[0], names[3])
	}
	if res := runAsServer(t, walg, pushEnv, "backup-mark", names[3]); res.code != 0 {
		t.Fatalf("WAL-G backup-mark: exit %d\n%s", res.code, res.output)
	}
	if l := listBackups(t, tusk, env); len(l) != 2 || !l[1].Permanent {
		t.Errorf("after WAL-G's backup-mark tusk lists %+v", l)
	}
}

// TestWALGInteropKMS checks client-side KMS encryption (WALG_CSE_KMS_ID)
// against local-kms both ways: a WAL segment pushed by one tool is fetched
// by the other, byte for byte. tusk reaches the emulator through
// TUSK_KMS_ENDPOINT, WAL-G through kmsProxy.
func TestWALGInteropKMS(t *testing.T) {
	walg := walgBinary(t)
	tusk := testenv.BuildTusk(t)
	kms := kmsserver.Start(t)
	store := pgcluster.TempDir(t)
	env := append([]string{"WALG_FILE_PREFIX=" + store, "WALG_COMPRESSION_METHOD=lz4"}, kms.Env()...)
	env = append(env, kmsProxy(t, kms.Endpoint, kmsserver.Region)...)
	walDir := filepath.Join(pgcluster.TempDir(t), "pg_wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ pusher, fetcher string }{{tusk, walg}, {walg, tusk}} {
		name := fmt.Sprintf("0000000100000000000000%02X", i+1)
		seg := walSegment(byte(i + 1))
		if err := os.WriteFile(filepath.Join(walDir, name), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if res := runTusk(t, c.pusher, env, "wal-push", filepath.Join(walDir, name)); res.code != 0 {
			t.Fatalf("%s wal-push: exit %d\n%s", c.pusher, res.code, res.output)
		}
		if m, _ := filepath.Glob(filepath.Join(store, "wal_005", name+".*")); len(m) != 1 {
			t.Fatalf("%s stored %v", c.pusher, m)
		}
		dest := filepath.Join(t.TempDir(), name)
		if res := runTusk(t, c.fetcher, env, "wal-fetch", name, dest); res.code != 0 {
			t.Fatalf("%s wal-fetch of what %s pushed: exit %d\n%s", c.fetcher, c.pusher, res.code, res.output)
		}
		if got := mustRead(t, dest); !bytes.Equal(got, seg) {
			t.Errorf("%s fetched %d bytes of what %s pushed, not the segment", c.fetcher, len(got), c.pusher)
		}
	}
}

// kmsProxy lets WAL-G, whose AWS SDK (v1) always calls
// https://kms.<region>.amazonaws.com, reach local-kms: an HTTPS_PROXY that
// answers CONNECT itself, ends TLS with a certificate for that host (trusted
// through SSL_CERT_FILE) and passes the requests on to endpoint. It returns
// the settings that point WAL-G at it.
func kmsProxy(t *testing.T, endpoint, region string) []string {
	t.Helper()
	host := "kms." + region + ".amazonaws.com"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(pgcluster.TempDir(t), "kms-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
					return
				}
				tc := tls.Server(c, cfg)
				srv := &http.Server{Handler: forward}
				srv.Serve(&oneConnListener{c: tc, addr: ln.Addr()})
			}()
		}
	}()
	return []string{"HTTPS_PROXY=http://" + ln.Addr().String(), "SSL_CERT_FILE=" + caFile}
}

// oneConnListener serves one connection, then reports closed once it is.
type oneConnListener struct {
	c    net.Conn
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	first := false
	l.once.Do(func() { first = true; l.done = make(chan struct{}) })
	if first {
		return &closeNotifyConn{Conn: l.c, done: l.done}, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.addr }

type closeNotifyConn struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *closeNotifyConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// TestWALGInteropCopy copies a tusk backup and the WAL archived after it
// with one tool's `copy --from CFG --to CFG -b NAME -w` and restores the
// copy with the other tool to a restore point, each way.
func TestWALGInteropCopy(t *testing.T) {
	walg := walgBinary(t)
	tusk := testenv.BuildTusk(t)
	src := pgcluster.TempDir(t)
	env := []string{"WALG_FILE_PREFIX=" + src, "WALG_COMPRESSION_METHOD=lz4"}
	primary := archivingPrimary(t, tusk, "", env)
	if out, err := pgbenchCmd(primary, "-i", "-q", "-s", "2").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	res := runAsServer(t, tusk, append(append([]string{}, env...), primary.ConnEnv()...), "backup-push", primary.DataDir())
	if res.code != 0 {
		t.Fatalf("backup-push: exit %d\n%s", res.code, res.output)
	}
	name := backupNameIn(t, res.output)
	if out, err := pgbenchCmd(primary, "-n", "-c", "2", "-T", "5").CombinedOutput(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	want := map[string]digest{}
	for _, tbl := range pgbenchTables {
		want[tbl] = anyDigest(t, primary, tbl)
	}
	primary.Exec("select pg_create_restore_point('after_load')")
	primary.WaitArchived(primary.SwitchWAL(), 2*time.Minute)
	primary.Stop()
	s, err := backup.ParseSentinel(mustRead(t, filepath.Join(src, backup.SentinelKey(name))))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, copier, restorer string }{
		{"tusk-copies-walg-restores", tusk, walg},
		{"walg-copies-tusk-restores", walg, tusk},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := pgcluster.TempDir(t)
			cfgDir := pgcluster.TempDir(t)
			from, to := filepath.Join(cfgDir, "from.json"), filepath.Join(cfgDir, "to.json")
			for p, prefix := range map[string]string{from: src, to: dst} {
				b, _ := json.Marshal(map[string]string{"WALG_FILE_PREFIX": prefix})
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if res := runAsServer(t, c.copier, nil, "copy", "--from", from, "--to", to, "-b", name, "-w"); res.code != 0 {
				t.Fatalf("%s copy: exit %d\n%s", c.copier, res.code, res.output)
			}
			dstEnv := []string{"WALG_FILE_PREFIX=" + dst}
			r := restoreWith(t, c.restorer, "", dstEnv, name, s, "recovery_target_name = 'after_load'", fixDataDirMode(t, c.restorer, walg))
			for tbl, w := range want {
				if got := anyDigest(t, r, tbl); got != w {
					t.Errorf("table %s: restored %v, primary had %v", tbl, got, w)
				}
			}
			r.Stop()
		})
	}
}

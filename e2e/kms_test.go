package e2e

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/kmsserver"
	"github.com/tusk-pg/tusk/internal/testenv/pgcluster"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// TestBackupRestoreKMS runs tusk's main jobs on file storage with AWS KMS
// client-side encryption (WALG_CSE_KMS_ID) against local-kms, reached
// through TUSK_KMS_ENDPOINT: see backupRestoreCycle (PostgreSQL 15
// archiving through the daemon, a full and a delta backup-push, a restore
// with backup-fetch and wal-fetch to a restore point, every table
// matching). Every object must be in WAL-G's layout: the 184-byte wrapped
// data key (local-kms's: the key's ARN inside), then a DARE 2.0 stream.
// Then the failures: an unknown key on wal-push and an unreachable KMS on
// wal-fetch, each one line naming WALG_CSE_KMS_ID; envelope and Yandex
// Cloud KMS encryption refused.
func TestBackupRestoreKMS(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	kms := kmsserver.Start(t)
	root := pgcluster.TempDir(t)
	env := append([]string{"WALG_FILE_PREFIX=" + filepath.Join(root, "clusters/pg15")}, kms.Env()...)
	objects := func(_ context.Context, prefix string) (map[string]int64, error) {
		out := map[string]int64{}
		err := filepath.WalkDir(filepath.Join(root, "clusters/pg15", prefix), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out[rel] = info.Size()
			return nil
		})
		return out, err
	}
	backupRestoreCycle(t, tusk, env, objects)

	// WAL-G's layout in every WAL object and backup tar.
	wal, tars := 0, 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		isWAL := strings.Contains(p, "/wal_005/") && strings.HasSuffix(p, ".lz4")
		isTar := strings.Contains(p, "/tar_partitions/")
		if !isWAL && !isTar {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		arn := []byte(kms.KeyARN)
		if len(b) < 184+16 || int(b[0]) != len(arn) || !bytes.Equal(b[1:1+len(arn)], arn) || b[184] != 0x20 {
			t.Errorf("%s: not a KMS-wrapped key followed by DARE 2.0: % x", p, b[:min(len(b), 8)])
		}
		if bytes.Contains(b[184:min(len(b), 1<<20)], []byte{0x04, 0x22, 0x4d, 0x18}) {
			t.Errorf("%s: lz4 frame magic in the clear", p)
		}
		if isWAL {
			wal++
		} else {
			tars++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if wal == 0 || tars == 0 {
		t.Fatalf("%d WAL objects and %d backup tars checked", wal, tars)
	}
	t.Logf("%d WAL objects and %d backup tars in WAL-G's KMS layout", wal, tars)

	// An unknown key: wal-push stores nothing and says which setting.
	seg := filepath.Join(pgcluster.TempDir(t), "000000010000000000000001")
	if err := os.WriteFile(seg, bytes.Repeat([]byte{1}, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	other := pgcluster.TempDir(t)
	bad := append(append([]string{}, env...), "WALG_FILE_PREFIX="+other, "WALG_CSE_KMS_ID=00000000-0000-4000-8000-000000000000")
	res := runAsServer(t, tusk, bad, "wal-push", seg)
	if line := lastLine(res.output); res.code == 0 || !strings.Contains(line, "WALG_CSE_KMS_ID") || !strings.Contains(line, "NotFoundException") {
		t.Errorf("wal-push with an unknown key: exit %d, %q", res.code, res.output)
	}
	t.Logf("unknown key: %q", lastLine(res.output))
	if ents, _ := os.ReadDir(filepath.Join(other, "wal_005")); len(ents) > 0 {
		t.Errorf("wal-push with an unknown key stored %s", ents[0].Name())
	}
	// An unreachable KMS on restore.
	walObjs, _ := objects(context.Background(), "wal_005/")
	var name string
	for k := range walObjs {
		name = strings.TrimSuffix(filepath.Base(k), ".lz4")
		break
	}
	down := append(append([]string{}, env...), "TUSK_KMS_ENDPOINT=http://127.0.0.1:1")
	res = runAsServer(t, tusk, down, "wal-fetch", name, filepath.Join(pgcluster.TempDir(t), "seg"))
	if line := lastLine(res.output); res.code == 0 || !strings.Contains(line, "WALG_CSE_KMS_ID") || !strings.Contains(line, "cannot reach KMS") {
		t.Errorf("wal-fetch with KMS down: exit %d, %q", res.code, res.output)
	}
	t.Logf("KMS down: %q", lastLine(res.output))
	checkRefusals(t, tusk, env, []refusal{
		{"envelope PGP", []string{"WALG_ENVELOPE_PGP_KEY_PATH=/nonexistent"}, "WALG_ENVELOPE_PGP_KEY_PATH is set"},
		{"Yandex Cloud KMS", []string{"YC_CSE_KMS_KEY_ID=abc"}, "YC_CSE_KMS_KEY_ID is set"},
	})
}

// TestWALKMSOnS3 pushes and fetches a segment on S3 (versitygw over HTTPS)
// with KMS encryption: the S3 credentials sign the KMS requests too, as in
// WAL-G (one AWS credential chain), AWS_ENDPOINT stays S3's, and
// WALG_CSE_KMS_REGION wins over AWS_REGION for KMS.
func TestWALKMSOnS3(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	kms := kmsserver.Start(t)
	srv := s3server.Start(t, s3server.Options{TLS: true, Prefix: "kms"})
	env := append(srv.Env(), "AWS_EC2_METADATA_DISABLED=true",
		"WALG_CSE_KMS_ID="+kmsserver.Alias, "WALG_CSE_KMS_REGION="+kmsserver.Region, "TUSK_KMS_ENDPOINT="+kms.Endpoint)
	const name = "000000010000000000000003"
	seg := filepath.Join(t.TempDir(), name)
	data := bytes.Repeat([]byte("tusk kms wal "), (16<<20)/13+1)[:16<<20]
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := runTusk(t, tusk, env, "wal-push", seg); res.code != 0 {
		t.Fatalf("wal-push exit %d:\n%s", res.code, res.output)
	}
	obj := s3Get(t, srv, "kms/wal_005/"+name+".lz4")
	if arn := kms.KeyARN; len(obj) < 200 || int(obj[0]) != len(arn) || string(obj[1:1+len(arn)]) != arn || obj[184] != 0x20 {
		t.Fatalf("object is not in WAL-G's KMS layout: % x", obj[:min(len(obj), 8)])
	}
	dest := filepath.Join(t.TempDir(), "restored")
	if res := runTusk(t, tusk, env, "wal-fetch", name, dest); res.code != 0 {
		t.Fatalf("wal-fetch exit %d:\n%s", res.code, res.output)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("wal-fetch gave %d bytes, %v", len(got), err)
	}
}

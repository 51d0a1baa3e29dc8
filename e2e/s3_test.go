package e2e

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

// TestArchiveRestoreS3 is TestArchiveRestoreFile against an S3 server
// (versitygw) over TLS with its own CA, under a nested prefix.
func TestArchiveRestoreS3(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{TLS: true, Prefix: "clusters/pg15"})
	out := archiveRestore(t, testenv.BuildTusk(t), scenario{
		env:  srv.Env(),
		load: heavyLoad,
	})
	checkWALObjects(t, walObjectsInS3(t, srv, "clusters/pg15/wal_005/"), "lz4", false, 0, out.lastWAL)
}

// TestBackupRestoreS3 is backupRestoreCycle (daemon archiving, a full and
// a delta backup, a restore to a restore point) against versitygw over
// TLS, as TestBackupRestoreAzure and the other backends' cycles. Then the
// refusals: a wrong secret key and no server, each one line.
func TestBackupRestoreS3(t *testing.T) {
	t.Parallel()
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{TLS: true, Prefix: "clusters/pg15"})
	cl := srv.Client()
	backupRestoreCycle(t, tusk, srv.Env(), func(ctx context.Context, prefix string) (map[string]int64, error) {
		out := map[string]int64{}
		p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket), Prefix: aws.String("clusters/pg15/" + prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, o := range page.Contents {
				out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
			}
		}
		return out, nil
	})
	checkRefusals(t, tusk, srv.Env(), []refusal{
		{"wrong key", []string{"AWS_SECRET_ACCESS_KEY=wrong" + srv.SecretKey}, "s3://" + srv.Bucket + "/clusters/pg15/"},
		{"unreachable", []string{"AWS_ENDPOINT=https://127.0.0.1:1", "WALG_S3_MAX_RETRIES=1"}, "127.0.0.1:1"},
	})
}

// walObjectsInS3 lists prefix and reads the first bytes of every object, in
// the shape walObjectsInDir returns.
func walObjectsInS3(t *testing.T, srv *s3server.Server, prefix string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := srv.Client()
	objs := map[string][]byte{}
	p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing s3://%s/%s: %v", srv.Bucket, prefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			name := strings.TrimPrefix(key, prefix)
			if aws.ToInt64(o.Size) == 0 {
				objs[name] = nil
				continue
			}
			r, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key),
				Range: aws.String("bytes=0-7")})
			if err != nil {
				t.Fatalf("reading s3://%s/%s: %v", srv.Bucket, key, err)
			}
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				t.Fatalf("reading s3://%s/%s: %v", srv.Bucket, key, err)
			}
			objs[name] = b
		}
	}
	if len(objs) == 0 {
		t.Fatalf("no objects under s3://%s/%s", srv.Bucket, prefix)
	}
	t.Logf("%d objects under s3://%s/%s", len(objs), srv.Bucket, prefix)
	return objs
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/zstd"

	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

const segSize = 16 << 20

// zstdZeros is a zstd frame of n zero bytes (what a decompression bomb
// looks like: n = 1 GiB takes about 40 KiB).
func zstdZeros(t *testing.T, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(w, zeroReader{}, n); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdSegment is a zstd frame of one segment of incompressible bytes, so
// that its object is as large as the segment.
func zstdSegment(t *testing.T) []byte {
	t.Helper()
	seg := make([]byte, segSize)
	rand.NewChaCha8([32]byte{1}).Read(seg)
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(seg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// trickleS3 is an S3 endpoint that holds one object, key suffix, and sends
// it at about 2 MiB/s; every other key is missing. The fetch of a segment
// from it lasts seconds whatever the machine's speed, so a signal sent
// after a moment arrives while the destination is being written.
func trickleS3(t *testing.T, suffix string, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/"+suffix) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>missing</Message></Error>`)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		for off := 0; off < len(body); off += 32 << 10 {
			if _, err := w.Write(body[off:min(off+32<<10, len(body))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(15 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// walSegment is a segment-sized file with a WAL page magic.
func walSegment(seed byte) []byte {
	b := make([]byte, segSize)
	b[0], b[1] = 0x10, 0xD1
	for i := 8; i < len(b); i += 4096 {
		b[i] = seed
	}
	return b
}

// filesIn lists the regular files below dir.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// unreachableEnv points S3 storage at addr with fetch bounds.
func unreachableEnv(addr string, timeout string) []string {
	return []string{
		"WALG_S3_PREFIX=s3://bucket/p", "AWS_ENDPOINT=http://" + addr, "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b", "AWS_S3_FORCE_PATH_STYLE=true",
		"TUSK_FETCH_RETRY_TIMEOUT=" + timeout, "WALG_DOWNLOAD_FILE_RETRIES=1", "WALG_DOWNLOAD_CONCURRENCY=1",
	}
}

// blackhole accepts connections and never answers.
func blackhole(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// TestWALFetchTimeBound: with S3 refusing connections, stopped, or
// accepting and never answering, wal-fetch ends within
// TUSK_FETCH_RETRY_TIMEOUT (plus start-up), SDK retries included, with
// status 1, not 74.
func TestWALFetchTimeBound(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{})
	stoppedAddr := strings.TrimPrefix(srv.Endpoint, "http://")
	srv.Stop()
	for label, addr := range map[string]string{
		"refused":   "127.0.0.1:9",
		"stopped":   stoppedAddr,
		"blackhole": blackhole(t),
	} {
		t.Run(label, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			start := time.Now()
			r := runTusk(t, tusk, unreachableEnv(addr, "4s"), "wal-fetch", "000000010000000000000001", dest)
			took := time.Since(start)
			t.Logf("exit %d after %v", r.code, took.Round(time.Millisecond))
			if r.code != 1 {
				t.Errorf("exit %d, want 1\n%s", r.code, r.output)
			}
			if took > 4*time.Second+5*time.Second {
				t.Errorf("took %v with TUSK_FETCH_RETRY_TIMEOUT=4s\n%s", took, r.output)
			}
			if !strings.Contains(r.output, "TUSK_FETCH_RETRY_TIMEOUT") && !strings.Contains(r.output, "WALG_DOWNLOAD_FILE_RETRIES") {
				t.Errorf("the error names neither bound:\n%s", r.output)
			}
			assertAbsent(t, dest)
		})
	}
}

// TestWALFetchInvalidName: a name that cannot be an object key is one
// attempt and a plain error, never retried as a storage outage.
func TestWALFetchInvalidName(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	env := []string{"WALG_FILE_PREFIX=" + t.TempDir(), "WALG_DOWNLOAD_CONCURRENCY=1"}
	out := t.TempDir()
	r := runTusk(t, tusk, env, "wal-fetch", "../x", filepath.Join(out, "x"))
	if r.code != 1 || !strings.Contains(r.output, "invalid key") || strings.Contains(r.output, "retrying") {
		t.Fatalf("exit %d, want 1 with an invalid key error and no retry\n%s", r.code, r.output)
	}
	if f := filesIn(t, out); len(f) != 0 {
		t.Fatalf("left %v", f)
	}
}

// TestWALFetchSegmentSize: objects under a segment's name that decode to
// 1 GiB (a 40 KiB zstd bomb), 32 MiB or 1 byte are refused, naming the
// object, by wal-fetch and by the prefetcher, and nothing is written; on
// real S3 and on file storage.
func TestWALFetchSegmentSize(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{Prefix: "size"})
	fileRoot := t.TempDir()
	bad := map[string][]byte{
		"000000010000000000000011": zstdZeros(t, 1<<30),
		"000000010000000000000012": zstdZeros(t, 32<<20),
		"000000010000000000000013": zstdZeros(t, 1),
	}
	good := "000000010000000000000010"
	goodObj := zstdZeros(t, segSize)
	put := map[string]func(key string, b []byte){
		"s3": func(key string, b []byte) {
			_, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{
				Bucket: aws.String(srv.Bucket), Key: aws.String("size/" + key), Body: bytes.NewReader(b)})
			if err != nil {
				t.Fatal(err)
			}
		},
		"file": func(key string, b []byte) {
			p := filepath.Join(fileRoot, key)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		},
	}
	envs := map[string][]string{
		"s3":   srv.Env(),
		"file": {"WALG_FILE_PREFIX=" + fileRoot},
	}
	for label, putObj := range put {
		t.Run(label, func(t *testing.T) {
			// wal-fetch without the detached prefetcher (it would outlive
			// the checks); the prefetcher is run below in the foreground.
			env := slices.Concat(envs[label], []string{"WALG_DOWNLOAD_CONCURRENCY=1", "WALG_DOWNLOAD_FILE_RETRIES=0"})
			prefetchEnv := slices.Concat(envs[label], []string{"WALG_DOWNLOAD_CONCURRENCY=4", "WALG_DOWNLOAD_FILE_RETRIES=0"})
			putObj("wal_005/"+good+".zst", goodObj)
			for name, obj := range bad {
				putObj("wal_005/"+name+".zst", obj)
			}
			pgwal := t.TempDir()
			dest := filepath.Join(pgwal, "RECOVERYXLOG")
			for name := range bad {
				r := runTusk(t, tusk, env, "wal-fetch", name, dest)
				if r.code != 1 || !strings.Contains(r.output, "wal_005/"+name+".zst") || !strings.Contains(r.output, "WALG_PG_WAL_SIZE") {
					t.Errorf("wal-fetch %s: exit %d, want 1 naming the object and WALG_PG_WAL_SIZE\n%s", name, r.code, r.output)
				}
				assertAbsent(t, dest)
			}
			// The prefetcher, run in the foreground as wal-fetch starts it.
			r := runTusk(t, tusk, prefetchEnv, "wal-prefetch", good, dest)
			if r.code != 0 {
				t.Fatalf("wal-prefetch: exit %d\n%s", r.code, r.output)
			}
			if f := filesIn(t, pgwal); len(f) != 0 {
				t.Fatalf("wrong-sized objects were kept: %v", f)
			}
			// A sound segment is still restored.
			r = runTusk(t, tusk, env, "wal-fetch", good, dest)
			if st, err := os.Stat(dest); r.code != 0 || err != nil || st.Size() != segSize {
				t.Fatalf("wal-fetch of a sound segment: exit %d, %v\n%s", r.code, err, r.output)
			}
		})
	}
}

// TestWALPushShortSegment: a segment-named file of 0 or 1 bytes is damage;
// wal-push refuses it and stores nothing. A partial segment is not a
// segment.
func TestWALPushShortSegment(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	root := t.TempDir()
	env := []string{"WALG_FILE_PREFIX=" + root, "WALG_UPLOAD_CONCURRENCY=1"}
	pgwal := t.TempDir()
	for _, size := range []int{0, 1, segSize - 1} {
		p := filepath.Join(pgwal, "000000010000000000000021")
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runTusk(t, tusk, env, "wal-push", p)
		if r.code == 0 || !strings.Contains(r.output, "WALG_PG_WAL_SIZE") {
			t.Errorf("wal-push of a %d-byte segment: exit %d\n%s", size, r.code, r.output)
		}
	}
	if f := filesIn(t, root); len(f) != 0 {
		t.Fatalf("stored %v", f)
	}
	p := filepath.Join(pgwal, "000000010000000000000022.partial")
	os.WriteFile(p, []byte("x"), 0o600)
	if r := runTusk(t, tusk, env, "wal-push", p); r.code != 0 {
		t.Fatalf("wal-push of a partial segment: exit %d\n%s", r.code, r.output)
	}
}

// TestWALPushOverwriteRace: four wal-push processes of one name with
// different contents and WALG_PREVENT_WAL_OVERWRITE: exactly one succeeds,
// the others report that the contents differ; on file storage and on S3
// (versitygw, conditional put).
func TestWALPushOverwriteRace(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	srv := s3server.Start(t, s3server.Options{Prefix: "race"})
	for label, env := range map[string][]string{
		"file": {"WALG_FILE_PREFIX=" + t.TempDir()},
		"s3":   srv.Env(),
	} {
		t.Run(label, func(t *testing.T) {
			env = slices.Concat(env, []string{"WALG_PREVENT_WAL_OVERWRITE=true", "WALG_UPLOAD_CONCURRENCY=1"})
			for round := range 3 {
				name := fmt.Sprintf("0000000100000000000000%02X", 0x30+round)
				const n = 4
				results := make([]tuskResult, n)
				var wg sync.WaitGroup
				for i := range n {
					dir := t.TempDir()
					p := filepath.Join(dir, name)
					if err := os.WriteFile(p, walSegment(byte(i+1)), 0o600); err != nil {
						t.Fatal(err)
					}
					wg.Go(func() { results[i] = runTusk(t, tusk, env, "wal-push", p) })
				}
				wg.Wait()
				wins := 0
				for i, r := range results {
					switch {
					case r.code == 0:
						wins++
					case !strings.Contains(r.output, "contents differ"):
						t.Errorf("round %d push %d: exit %d without 'contents differ'\n%s", round, i, r.code, r.output)
					}
				}
				if wins != 1 {
					t.Errorf("round %d: %d pushes succeeded, want exactly 1", round, wins)
				}
			}
		})
	}
}

// startTusk starts tusk in the background.
func startTusk(t *testing.T, tusk string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(tusk, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TZ=UTC"}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// TestWALFetchSIGTERM: SIGTERM during a long fetch (a segment being
// written while its object trickles in for seconds) or while storage is retried ends tusk within two seconds, as
// killed by SIGTERM (what PostgreSQL expects of a restore_command during
// shutdown), with nothing at the destination and no temporary file.
func TestWALFetchSIGTERM(t *testing.T) {
	tusk := testenv.BuildTusk(t)
	name := "000000010000000000000001"
	for label, env := range map[string][]string{
		"writing":  unreachableEnv(trickleS3(t, name+".zst", zstdSegment(t)), "5m"),
		"retrying": unreachableEnv(blackhole(t), "5m"),
	} {
		t.Run(label, func(t *testing.T) {
			pgwal := t.TempDir()
			dest := filepath.Join(pgwal, "RECOVERYXLOG")
			cmd, out := startTusk(t, tusk, env, "wal-fetch", name, dest)
			time.Sleep(700 * time.Millisecond)
			if label == "writing" {
				// The signal must arrive mid-write: wait for the temporary file.
				for deadline := time.Now().Add(10 * time.Second); len(filesIn(t, pgwal)) == 0; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no temporary file 10 s into the fetch\n%s", out)
					}
				}
			}
			start := time.Now()
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("still running 10 s after SIGTERM\n%s", out)
			}
			took := time.Since(start)
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			t.Logf("ended %v after SIGTERM: %v", took.Round(time.Millisecond), cmd.ProcessState)
			if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
				t.Errorf("ended with %v, want terminated by SIGTERM\n%s", cmd.ProcessState, out)
			}
			if took > 2*time.Second {
				t.Errorf("took %v to stop after SIGTERM", took)
			}
			if f := filesIn(t, pgwal); len(f) != 0 {
				t.Errorf("left %v", f)
			}
		})
	}
}

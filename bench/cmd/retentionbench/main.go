//go:build linux

// Command retentionbench measures tusk delete on a large repository: it
// fills a versitygw bucket (TLS on 127.0.0.1) with -wal WAL objects and four
// backups, then runs `delete retain FULL 2` as a dry run and with --confirm,
// reporting wall time, peak RSS (getrusage) and peak committed memory
// (private writable mappings, sampled at 10 Hz) of each run. Run it from
// bench/ (its own module): go run ./cmd/retentionbench.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusk-pg/tusk/bench/procfs"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/s3server"
)

const seg = 16 << 20

type result struct {
	Run           string  `json:"run"`
	Seconds       float64 `json:"seconds"`
	PeakRSS       uint64  `json:"peak_rss_bytes"`
	PeakCommitted uint64  `json:"peak_committed_bytes"`
	ObjectsBefore int     `json:"objects_before"`
	ObjectsAfter  int     `json:"objects_after"`
}

func main() {
	work := flag.String("work", "/var/tmp/tusk-retentionbench", "scratch directory (emptied first)")
	walCount := flag.Int("wal", 200000, "WAL objects in the repository")
	workers := flag.Int("put-workers", 64, "concurrent uploads while filling the bucket")
	direct := flag.Bool("direct", true, "fill the bucket by writing versitygw's posix backend files directly (much faster than PUTs; objects then have no ETag)")
	out := flag.String("out", "", "also write the results as JSON to this file")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *work, *walCount, *workers, *direct, *out); err != nil {
		log.Error(err.Error())
		os.Exit(1)
	}
}

func run(log *slog.Logger, work string, walCount, workers int, direct bool, out string) error {
	ctx := context.Background()
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	tusk := filepath.Join(work, "tusk")
	build := exec.Command("go", "build", "-o", tusk, "./cmd/tusk")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	srv, err := s3server.Run(s3server.Options{TLS: true, Bucket: "bench", Prefix: "repo", Dir: filepath.Join(work, "s3")})
	if err != nil {
		return err
	}
	defer srv.Close()

	objects := repository(walCount)
	log.Info("filling the bucket", "objects", len(objects))
	start := time.Now()
	if direct {
		err = fillDirect(filepath.Join(srv.DataDir, srv.Bucket, "repo"), objects)
	} else {
		err = fill(ctx, srv, "repo/", objects, workers)
	}
	if err != nil {
		return err
	}
	if n, err := count(ctx, srv, "repo/"); err != nil || n != len(objects) {
		return fmt.Errorf("the bucket lists %d objects, want %d (%v)", n, len(objects), err)
	}
	log.Info("filled", "seconds", time.Since(start).Seconds())

	var results []result
	for _, r := range []struct{ name string }{{"dry run"}, {"--confirm"}} {
		args := []string{"delete", "retain", "FULL", "2"}
		if r.name == "--confirm" {
			args = append(args, "--confirm")
		}
		before, err := count(ctx, srv, "repo/")
		if err != nil {
			return err
		}
		res, err := measure(tusk, append(srv.Env(), "PATH="+os.Getenv("PATH"), "HOME="+work), filepath.Join(work, "delete-"+r.name+".log"), args...)
		if err != nil {
			return err
		}
		res.Run = "delete retain FULL 2 " + r.name
		res.ObjectsBefore = before
		if res.ObjectsAfter, err = count(ctx, srv, "repo/"); err != nil {
			return err
		}
		log.Info(res.Run, "seconds", res.Seconds, "peak_rss_MiB", float64(res.PeakRSS)/(1<<20),
			"peak_committed_MiB", float64(res.PeakCommitted)/(1<<20), "objects_before", res.ObjectsBefore, "objects_after", res.ObjectsAfter)
		results = append(results, res)
	}
	fmt.Println("| run | objects before → after | wall time | peak RSS | peak committed |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| `%s` | %d → %d | %.1f s | %.1f MiB | %.1f MiB |\n", r.Run, r.ObjectsBefore, r.ObjectsAfter, r.Seconds,
			float64(r.PeakRSS)/(1<<20), float64(r.PeakCommitted)/(1<<20))
	}
	if out != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		return os.WriteFile(out, b, 0o644)
	}
	return nil
}

// repository is walCount WAL segments on timeline 1 and four backups near
// the end: fulls at walCount-0x300 and walCount-0x100, a delta on the
// first, and a full at walCount-0x80. retain FULL 2 keeps the last three.
func repository(walCount int) map[string][]byte {
	objects := map[string][]byte{}
	// WAL-G's names and documents, written out here because the bench
	// module does not carry tusk's codec dependencies.
	name := func(no uint64) string { return fmt.Sprintf("%08X%08X%08X", 1, no/0x100, no%0x100) }
	add := func(n, from string, start uint64) {
		t := time.Unix(int64(start), 0).UTC().Format(time.RFC3339Nano)
		delta := ""
		if from != "" {
			delta = fmt.Sprintf(`"DeltaLSN":1,"DeltaFrom":%q,"DeltaFullName":%q,"DeltaCount":1,`, from, from)
		}
		objects["basebackups_005/"+n+"_backup_stop_sentinel.json"] = []byte(fmt.Sprintf(
			`{"LSN":%d,%s"PgVersion":150000,"FinishLSN":%d,"UncompressedSize":0,"CompressedSize":0,"ChkpNum":null,"Version":2,"StartTime":%q,"FinishTime":%q,"DateFmt":"%%Y-%%m-%%dT%%H:%%M:%%S.%%fZ","Hostname":"bench","DataDir":"/data","IsPermanent":false}`,
			start*seg+40, delta, start*seg+4000, t, t))
		objects["basebackups_005/"+n+"/metadata.json"] = []byte(fmt.Sprintf(
			`{"start_time":%q,"finish_time":%q,"date_fmt":"%%Y-%%m-%%dT%%H:%%M:%%S.%%fZ","hostname":"bench","data_dir":"/data","pg_version":150000,"start_lsn":%d,"finish_lsn":%d,"is_permanent":false,"system_identifier":null,"uncompressed_size":0,"compressed_size":0}`,
			t, t, start*seg+40, start*seg+4000))
		for i := 1; i <= 4; i++ {
			objects[fmt.Sprintf("basebackups_005/%s/tar_partitions/part_%03d.tar.lz4", n, i)] = []byte("tar")
		}
	}
	w := uint64(walCount)
	add("base_"+name(w-0x300), "", w-0x300)
	second := "base_" + name(w-0x100)
	add(second, "", w-0x100)
	add("base_"+name(w-0xC0)+"_D_"+name(w-0x100), second, w-0xC0)
	add("base_"+name(w-0x80), "", w-0x80)
	body := bytes.Repeat([]byte("w"), 64)
	for no := uint64(1); no <= w; no++ {
		objects["wal_005/"+name(no)+".lz4"] = body
	}
	return objects
}

func fill(ctx context.Context, srv *s3server.Server, prefix string, objects map[string][]byte, workers int) error {
	cl := srv.Client()
	keys := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(prefix + k),
					Body: bytes.NewReader(objects[k])}); err != nil {
					failed.Store(fmt.Errorf("put %s: %w", k, err))
				}
			}
		}()
	}
	for k := range objects {
		keys <- k
	}
	close(keys)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return nil
}

// fillDirect writes the objects as files of versitygw's posix backend.
func fillDirect(dir string, objects map[string][]byte) error {
	for k, body := range objects {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func count(ctx context.Context, srv *s3server.Server, prefix string) (int, error) {
	objs, err := srv.Objects(ctx, prefix)
	return len(objs), err
}

// measure runs tusk with env, its log to logPath, sampling committed
// memory and VmHWM at 10 Hz. Peak RSS is the last VmHWM read (it only
// grows), not getrusage's ru_maxrss: Go starts a child with a vfork-style
// clone sharing the parent's memory until exec, and Linux carries that
// memory's high-water mark into the child's ru_maxrss, so with -wal 200000
// it reported this harness's own ~90 MiB (the repository map) for tusk.
func measure(tusk string, env []string, logPath string, args ...string) (result, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer logFile.Close()
	cmd := exec.Command(tusk, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logFile, logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	var peak, hwm atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pfs := procfs.FS{Root: "/proc"}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if c, err := pfs.Committed(cmd.Process.Pid); err == nil && c > peak.Load() {
				peak.Store(c)
			}
			if st, err := pfs.Status(cmd.Process.Pid); err == nil && st.HWM > hwm.Load() {
				hwm.Store(st.HWM)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	err = cmd.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-done
	if err != nil {
		return result{}, fmt.Errorf("tusk %v: %v (log in %s)", args, err, logPath)
	}
	return result{Seconds: elapsed.Seconds(), PeakRSS: hwm.Load(), PeakCommitted: peak.Load()}, nil
}

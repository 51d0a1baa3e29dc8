package azure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/tusk-pg/tusk/internal/storage"
	"github.com/tusk-pg/tusk/internal/storage/storagetest"
	"github.com/tusk-pg/tusk/internal/testenv"
	"github.com/tusk-pg/tusk/internal/testenv/azurite"
)

var prefixes atomic.Int64

func open(t testing.TB, srv *azurite.Server, o Options) *Storage {
	t.Helper()
	if o.Container == "" {
		o.Container = srv.Container
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("t%d/archive", prefixes.Add(1))
	}
	if o.AccountName == "" {
		o.AccountName = azurite.Account
	}
	if o.AccessKey == "" && o.SASToken == "" {
		o.AccessKey = azurite.Key
	}
	if o.Endpoint == "" {
		o.Endpoint = srv.Endpoint
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAzurite runs everything that needs a server against one Azurite
// (it takes seconds to start); the test that stops it runs last.
func TestAzurite(t *testing.T) {
	srv := azurite.Start(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *azurite.Server)
	}{
		{"Contract", testContract},
		{"WrongKey", testWrongKey},
		{"SASToken", testSASToken},
		{"MissingContainer", testMissingContainer},
		{"SeekableMidway", testSeekableMidway},
		{"KilledMidUpload", testKilledMidUpload},
		{"Unreachable", testUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, srv) })
	}
}

func testContract(t *testing.T, srv *azurite.Server) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return open(t, srv, Options{}) })
	// Small blocks: bodies span several staged blocks and a commit.
	t.Run("SmallBlocks", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage {
			return open(t, srv, Options{BufferSize: 16 << 10, MaxBuffers: 2})
		})
	})
}

// testWrongKey: a wrong account key is a permanent, one-line error that
// names the storage and not the key.
func testWrongKey(t *testing.T, srv *azurite.Server) {
	wrong := "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ=="
	s := open(t, srv, Options{AccessKey: wrong})
	ctx := context.Background()
	for op, err := range map[string]error{
		"Put":  s.Put(ctx, "x", strings.NewReader("x"), 1),
		"Get":  func() error { _, err := s.Get(ctx, "x"); return err }(),
		"List": s.List(ctx, "", func(storage.ObjectInfo) error { return nil }),
	} {
		if err == nil || errors.Is(err, storage.ErrNotFound) || storage.IsTransient(err) {
			t.Errorf("%s with a wrong key: %v, want a permanent error", op, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, wrong) || !strings.Contains(msg, "azure://tusk/") {
			t.Errorf("%s: error %q is not one line naming the storage without the key", op, msg)
		}
	}
}

// testSASToken: a container SAS token made from the account key gives
// access as the key does.
func testSASToken(t *testing.T, srv *azurite.Server) {
	cred, err := azblob.NewSharedKeyCredential(azurite.Account, azurite.Key)
	if err != nil {
		t.Fatal(err)
	}
	perms := sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, Delete: true, List: true}
	q, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		ExpiryTime:    time.Now().Add(time.Hour),
		ContainerName: srv.Container,
		Permissions:   perms.String(),
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, srv, Options{SASToken: "?" + q.Encode()})
	if err := s.Put(context.Background(), "k", strings.NewReader("sas"), 3); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadAll(t, s, "k"); string(got) != "sas" {
		t.Fatalf("read %q", got)
	}
	if keys := storagetest.Keys(t, s, ""); len(keys) != 1 {
		t.Fatalf("keys %q", keys)
	}
}

// testSeekableMidway: a seekable body is sent from its current offset,
// and one holding more or fewer bytes than stated stores nothing.
func testSeekableMidway(t *testing.T, srv *azurite.Server) {
	s := open(t, srv, Options{})
	ctx := context.Background()
	data := storagetest.RandomBytes(t, 100<<10)
	r := bytes.NewReader(data)
	if _, err := r.Seek(1000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "mid", r, int64(len(data)-1000)); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadAll(t, s, "mid"); !bytes.Equal(got, data[1000:]) {
		t.Fatalf("stored %d bytes, want the %d after the offset", len(got), len(data)-1000)
	}
	for _, n := range []int64{int64(len(data)) - 1, int64(len(data)) + 1} {
		if err := s.Put(ctx, "wrong", bytes.NewReader(data), n); err == nil {
			t.Fatalf("a %d-byte body stated as %d was stored", len(data), n)
		}
	}
	if keys := storagetest.Keys(t, s, ""); len(keys) != 1 {
		t.Fatalf("keys %q", keys)
	}
}

// testMissingContainer: a wrong container is a permanent error naming it,
// never "not found".
func testMissingContainer(t *testing.T, srv *azurite.Server) {
	s := open(t, srv, Options{Container: "nosuchcontainer"})
	_, err := s.Get(context.Background(), "wal_005/000000010000000000000001.lz4")
	if err == nil || errors.Is(err, storage.ErrNotFound) || storage.IsTransient(err) {
		t.Fatalf("Get from a missing container: %v, want a permanent error", err)
	}
	if !strings.Contains(err.Error(), "nosuchcontainer") {
		t.Fatalf("error %q does not name the container", err)
	}
	_, err = s.Stat(context.Background(), "x")
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat in a missing container: %v", err)
	}
}

// testKilledMidUpload: a Put Blob and a staged block upload cut short by
// a crash of the server; see storagetest.KilledMidUpload.
func testKilledMidUpload(t *testing.T, srv *azurite.Server) {
	s := open(t, srv, Options{BufferSize: 4 << 20, MaxBuffers: 2})
	storagetest.KilledMidUpload(t, s, storagetest.Server{
		Kill: srv.Kill, Restart: srv.Restart, Settle: azurite.MetadataSaveInterval,
	}, 24<<20)
}

// testUnreachable: a stopped server gives a transient error within the
// SDK's few retries.
func testUnreachable(t *testing.T, srv *azurite.Server) {
	s := open(t, srv, Options{})
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := s.Put(ctx, "x", strings.NewReader("data"), 4)
	if err == nil || !storage.IsTransient(err) || ctx.Err() != nil {
		t.Fatalf("Put against a stopped server: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
}

func TestOptionsFromSettings(t *testing.T) {
	get := func(m map[string]string) func(string) (string, bool) {
		return func(n string) (string, bool) { v, ok := m[n]; return v, ok }
	}
	o, err := OptionsFromSettings(get(map[string]string{
		"WALG_AZ_PREFIX":          "azure://ctr/some/path/",
		"AZURE_STORAGE_ACCOUNT":   "acct",
		"AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=abc",
		"AZURE_ENVIRONMENT_NAME":  "AzureChinaCloud",
		"AZURE_BUFFER_SIZE":       "10",
		"AZURE_MAX_BUFFERS":       "0",
		"AZURE_TRY_TIMEOUT":       "2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	d, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if d.Container != "ctr" || d.Prefix != "some/path" || d.SASToken != "sv=1&sig=abc" ||
		d.BufferSize != MinBufferSize || d.MaxBuffers != 1 || d.TryTimeout != 2*time.Minute ||
		d.serviceURL() != "https://acct.blob.core.chinacloudapi.cn" {
		t.Fatalf("options %+v, service %s", d, d.serviceURL())
	}
	if m := o.Memory(); m.Upload != requestBytes || m.UnknownSize != MinBufferSize {
		t.Fatalf("memory %+v", m)
	}
	d, _ = Options{Container: "c", AccountName: "a", EndpointSuffix: "example.net"}.withDefaults()
	if d.serviceURL() != "https://a.blob.example.net" {
		t.Fatalf("suffix: %s", d.serviceURL())
	}
	if m := (Options{}).Memory(); m.UnknownSize != DefaultMaxBuffers*DefaultBufferSize {
		t.Fatalf("default memory %+v", m)
	}

	_, err = OptionsFromSettings(get(map[string]string{
		"WALG_AZ_PREFIX":      "gs://ctr/x",
		"AZURE_BUFFER_SIZE":   "big",
		"AZURE_MAX_BUFFERS":   "some",
		"AZURE_TRY_TIMEOUT":   "0",
		"TUSK_AZURE_ENDPOINT": "127.0.0.1:10000",
	}))
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	for _, name := range []string{"WALG_AZ_PREFIX", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCESS_KEY", "AZURE_BUFFER_SIZE", "AZURE_MAX_BUFFERS", "AZURE_TRY_TIMEOUT", "TUSK_AZURE_ENDPOINT"} {
		if !strings.Contains("\n"+err.Error(), "\n"+name+": ") {
			t.Errorf("no line for %s in %q", name, err)
		}
	}
}

// BenchmarkPut measures what one upload allocates (B/op) with the default
// buffers: a 16 MiB body takes two 8 MiB blocks, a 1 MiB body of known
// size one buffer of its size.
func BenchmarkPut(b *testing.B) {
	srv := azurite.Start(b)
	data := bytes.Repeat([]byte("0123456789abcdef"), 16<<20/16)
	for _, bc := range []struct {
		name string
		body func() (io.Reader, int64)
	}{
		{"known-size-16MiB", func() (io.Reader, int64) { return bytes.NewReader(data), int64(len(data)) }},
		{"unknown-size-16MiB", func() (io.Reader, int64) { return storagetest.OnlyReader{R: bytes.NewReader(data)}, -1 }},
		{"known-size-1MiB", func() (io.Reader, int64) { return bytes.NewReader(data[:1<<20]), 1 << 20 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := open(b, srv, Options{})
			b.ReportAllocs()
			runtime.GC()
			debug.FreeOSMemory()
			testenv.ResetPeakRSS()
			_, before := testenv.PeakRSS()
			for i := 0; b.Loop(); i++ {
				r, n := bc.body()
				if err := s.Put(context.Background(), fmt.Sprintf("o%d", i%4), r, n); err != nil {
					b.Fatal(err)
				}
			}
			// Peak RSS growth covers buffers the heap figures miss (mmap).
			peak, _ := testenv.PeakRSS()
			b.ReportMetric(float64(peak-before)/(1<<20), "peak-RSS-growth-MiB")
		})
	}
}

package config

import (
	"testing"

	"github.com/tusk-pg/tusk/internal/storage/all"
)

// FuzzParseConfigFile feeds arbitrary bytes to every supported decoder: a
// config file is user-edited text and must never crash tusk.
func FuzzParseConfigFile(f *testing.F) {
	f.Add(uint8(0), []byte(`{"WALG_S3_PREFIX": "s3://b/p", "WALG_UPLOAD_CONCURRENCY": 4}`))
	f.Add(uint8(1), []byte("WALG_S3_PREFIX: s3://b/p\nWALG_FAILOVER_STORAGES:\n  a:\n    X: 1\n"))
	f.Add(uint8(2), []byte("WALG_S3_PREFIX = \"s3://b/p\"\n[table]\nx = 1979-05-27T07:32:00Z\n"))
	f.Add(uint8(3), []byte("WALG_S3_PREFIX=s3://b/p\nexport A='b'\n"))
	f.Add(uint8(1), []byte("a.b.c: 1\n? [x]\n: y\n"))
	exts := []string{"json", "yaml", "toml", "env"}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		vals, err := parseConfigFile("c."+exts[int(which)%len(exts)], data)
		if err != nil {
			return
		}
		for k, v := range vals {
			if v.src != SourceFile {
				t.Fatalf("%s: source %v", k, v.src)
			}
		}
		// Resolution and validation of whatever the file held.
		c, _, err := build(LoadOptions{Backends: all.Registry()}, nil, "c", vals, nil)
		if err != nil {
			return
		}
		_ = c.Dump()
		c.Export(func(k, v string) {
			if v == "" {
				t.Fatalf("exported empty %s", k)
			}
		})
		_, _, _ = c.StorageKind()
	})
}

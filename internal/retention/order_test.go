package retention

import (
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/wal"
)

func TestPosition(t *testing.T) {
	for _, c := range []struct {
		key string
		tl  uint32
		no  uint64
		ok  bool
	}{
		{"wal_005/000000010000000000000003.lz4", 1, 3, true},
		{"wal_005/000000010000000000000003.00000028.backup.lz4", 1, 3, true},
		{"basebackups_005/base_000000020000000100000005_D_000000010000000000000003/metadata.json", 2, 0x105, true},
		{"wal_005/00000002.history.lz4", 0, 0, false},
		// the leftmost run decides, even when it is not a valid segment
		{"wal_005/000000010000000000000100.lz4", 0, 0, false},
		{"basebackups_005/", 0, 0, false},
	} {
		s, ok := position(c.key, 16<<20)
		if ok != c.ok || (ok && (s.Timeline != c.tl || s.No != c.no)) {
			t.Errorf("position(%q) = %+v, %v; want %d/%d, %v", c.key, s, ok, c.tl, c.no, c.ok)
		}
	}
}

func TestBackupOfKey(t *testing.T) {
	for key, want := range map[string]string{
		"basebackups_005/base_000000010000000000000003_backup_stop_sentinel.json": "base_000000010000000000000003",
		"basebackups_005/base_000000010000000000000003/tar_partitions/part_1.tar": "base_000000010000000000000003",
		"basebackups_005/base_X_D_Y/metadata.json":                                "base_X_D_Y",
	} {
		if got, ok := backupOfKey(key); !ok || got != want {
			t.Errorf("backupOfKey(%q) = %q, %v", key, got, ok)
		}
	}
	if _, ok := backupOfKey("wal_005/000000010000000000000003.lz4"); ok {
		t.Error("a WAL key belongs to no backup")
	}
}

// Storage keys come from a listing anyone with write access can fill.
func FuzzPosition(f *testing.F) {
	f.Add("wal_005/000000010000000000000003.00000028.backup.lz4")
	f.Add("basebackups_005/base_000000010000000000000005_D_000000010000000000000003/x")
	f.Add("FFFFFFFFFFFFFFFFFFFFFFFFFFFF")
	f.Fuzz(func(t *testing.T, key string) {
		for _, size := range []int64{1 << 20, 16 << 20, 1 << 30} {
			s, ok := position(key, size)
			if !ok {
				continue
			}
			name := s.Name(size)
			if !strings.Contains(key, name) {
				t.Fatalf("position(%q) = %s, not in the key", key, name)
			}
			if back, err := wal.ParseSegment(name, size); err != nil || back != s {
				t.Fatalf("%s does not parse back: %v", name, err)
			}
		}
		backupOfKey(key)
		o := order{segSize: 16 << 20}
		if o.less(key, key) {
			t.Fatalf("less(%q, %q)", key, key)
		}
	})
}

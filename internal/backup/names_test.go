package backup

import (
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	good := map[string]Name{
		"base_000000010000000000000002":                                     {Start: "000000010000000000000002"},
		"base_000000010000000000000004_D_000000010000000000000002":          {Start: "000000010000000000000004", DeltaBase: "000000010000000000000002"},
		"base_0000000A00000000000000FF_00000040":                            {Start: "0000000A00000000000000FF", Tail: "00000040"},
		"base_000000010000000000000004_D_000000010000000000000002_0A0B0C0D": {Start: "000000010000000000000004", DeltaBase: "000000010000000000000002", Tail: "0A0B0C0D"},
	}
	for s, want := range good {
		n, err := ParseName(s)
		if err != nil || n != want {
			t.Errorf("ParseName(%s) = %+v, %v", s, n, err)
		}
		if n.String() != s {
			t.Errorf("%+v.String() = %s", n, n.String())
		}
	}
	for _, s := range []string{"", "base_", "base_00000001000000000000000", "base_000000010000000000000002_D_",
		"base_00000001000000000000000a", "xbase_000000010000000000000002", "base_000000010000000000000002_",
		"base_000000010000000000000002_D_000000010000000000000002_123", "base_000000010000000000000002/x"} {
		if _, err := ParseName(s); err == nil {
			t.Errorf("ParseName(%q) accepted", s)
		}
	}
}

func TestDeltaNameAndWalFileName(t *testing.T) {
	d, err := DeltaName("000000010000000000000006", "base_000000010000000000000004_D_000000010000000000000002")
	if err != nil || d != "base_000000010000000000000006_D_000000010000000000000004" {
		t.Errorf("DeltaName = %s, %v", d, err)
	}
	if _, err := DeltaName("000000010000000000000006", "nothex"); err == nil {
		t.Error("DeltaName of a name without WAL file accepted")
	}
	if w := WalFileName("base_000000010000000000000004_D_000000010000000000000002"); w != "000000010000000000000004" {
		t.Errorf("WalFileName = %s", w)
	}
	if w := WalFileName("weird"); w != strings.Repeat("Z", 24) {
		t.Errorf("WalFileName(weird) = %s", w)
	}
	if FullName("000000010000000000000002") != "base_000000010000000000000002" {
		t.Error("FullName")
	}
}

func TestKeys(t *testing.T) {
	n := "base_000000010000000000000002"
	if SentinelKey(n) != "basebackups_005/base_000000010000000000000002_backup_stop_sentinel.json" ||
		MetadataKey(n) != "basebackups_005/base_000000010000000000000002/metadata.json" ||
		FilesMetadataKey(n) != "basebackups_005/base_000000010000000000000002/files_metadata.json" ||
		TarKey(n, PartTarName(1, "lz4")) != "basebackups_005/base_000000010000000000000002/tar_partitions/part_001.tar.lz4" {
		t.Error("key layout")
	}
	if PartTarName(1000, "") != "part_1000.tar" || PgControlTarName("br") != "pg_control.tar.br" || BackupLabelTarName("") != "backup_label.tar" {
		t.Error("tar names")
	}
	if got, ok := NameFromSentinelKey(SentinelKey(n)); !ok || got != n {
		t.Errorf("NameFromSentinelKey = %s %v", got, ok)
	}
	for _, k := range []string{"basebackups_005/x/y_backup_stop_sentinel.json", "basebackups_005/_backup_stop_sentinel.json",
		"wal_005/base_1_backup_stop_sentinel.json", MetadataKey(n)} {
		if _, ok := NameFromSentinelKey(k); ok {
			t.Errorf("NameFromSentinelKey(%s) accepted", k)
		}
	}
	for _, bad := range []string{"", "..", "a/b", "."} {
		if CheckName(bad) == nil {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
}

func FuzzParseName(f *testing.F) {
	f.Add("base_000000010000000000000004_D_000000010000000000000002")
	f.Add("base_0000000A00000000000000FF_00000040")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			return
		}
		if n.String() != s {
			t.Fatalf("ParseName(%q).String() = %q", s, n.String())
		}
		if CheckName(s) != nil {
			t.Fatalf("parsed name %q is not a safe key", s)
		}
	})
}

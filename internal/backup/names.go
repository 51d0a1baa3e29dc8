package backup

import (
	"fmt"
	"strings"
)

// Storage key layout of base backups, relative to the storage prefix.
const (
	// Prefix holds every sentinel and one folder per backup.
	Prefix = "basebackups_005/"
	// SentinelSuffix ends a stop sentinel's key; its presence marks a
	// complete backup.
	SentinelSuffix = "_backup_stop_sentinel.json"
	// MetadataFileName and FilesMetadataFileName live in the backup folder.
	MetadataFileName      = "metadata.json"
	FilesMetadataFileName = "files_metadata.json"
	// TarPartitionFolder holds the backup's tar objects.
	TarPartitionFolder = "tar_partitions/"
	// NamePrefix starts every PostgreSQL backup name.
	NamePrefix = "base_"
	// LatestName selects the most recently completed backup.
	LatestName = "LATEST"
)

// SentinelKey is the storage key of a backup's stop sentinel.
func SentinelKey(name string) string { return Prefix + name + SentinelSuffix }

// MetadataKey is the storage key of a backup's metadata.json.
func MetadataKey(name string) string { return Prefix + name + "/" + MetadataFileName }

// FilesMetadataKey is the storage key of a backup's files_metadata.json.
func FilesMetadataKey(name string) string { return Prefix + name + "/" + FilesMetadataFileName }

// FolderKey is the prefix of every object that belongs to a backup.
func FolderKey(name string) string { return Prefix + name + "/" }

// TarPartitionsKey is the prefix under which a backup's tars are stored.
func TarPartitionsKey(name string) string { return Prefix + name + "/" + TarPartitionFolder }

// TarKey is the storage key of one tar object (e.g. "part_001.tar.lz4").
func TarKey(name, tarName string) string { return TarPartitionsKey(name) + tarName }

// PartTarName names the n-th (1-based) data tar: part_001.tar.<ext>; no
// dot when ext is empty (compression "none").
func PartTarName(n int, ext string) string { return withExt(fmt.Sprintf("part_%03d.tar", n), ext) }

// PgControlTarName names the tar holding global/pg_control.
func PgControlTarName(ext string) string { return withExt("pg_control.tar", ext) }

// BackupLabelTarName names the tar holding backup_label and tablespace_map.
func BackupLabelTarName(ext string) string { return withExt("backup_label.tar", ext) }

func withExt(base, ext string) string {
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// NameFromSentinelKey returns the backup name of a sentinel object found by
// listing Prefix, and false for any other object. Only sentinels directly
// under Prefix count (the listing is recursive, WAL-G's is not).
func NameFromSentinelKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok || strings.Contains(rest, "/") {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, SentinelSuffix)
	if !ok || name == "" {
		return "", false
	}
	return name, true
}

// Name is a parsed backup name
// `base_<24 hex>[_D_<24 hex>][_<8 hex>]`.
type Name struct {
	// Start is the WAL file name of the backup's start segment.
	Start string
	// DeltaBase is the start segment of the base backup of a delta, "" for
	// a full backup.
	DeltaBase string
	// Tail is the optional 8-hex suffix WAL-G accepts but never produces.
	Tail string
}

// ParseName parses a backup name exactly as WAL-G's pattern
// `base_[0-9A-F]{24}(_D_[0-9A-F]{24})?(_[0-9A-F]{8})?` (upper-case hex).
func ParseName(s string) (Name, error) {
	bad := fmt.Errorf("%q is not a backup name (base_<24 hex>[_D_<24 hex>])", s)
	rest, ok := strings.CutPrefix(s, NamePrefix)
	if !ok || len(rest) < 24 || !isUpperHex(rest[:24]) {
		return Name{}, bad
	}
	n := Name{Start: rest[:24]}
	rest = rest[24:]
	if d, ok := strings.CutPrefix(rest, "_D_"); ok {
		if len(d) < 24 || !isUpperHex(d[:24]) {
			return Name{}, bad
		}
		n.DeltaBase = d[:24]
		rest = d[24:]
	}
	if rest != "" {
		t, ok := strings.CutPrefix(rest, "_")
		if !ok || len(t) != 8 || !isUpperHex(t) {
			return Name{}, bad
		}
		n.Tail = t
	}
	return n, nil
}

// String formats the name back.
func (n Name) String() string {
	s := NamePrefix + n.Start
	if n.DeltaBase != "" {
		s += "_D_" + n.DeltaBase
	}
	if n.Tail != "" {
		s += "_" + n.Tail
	}
	return s
}

// IsDelta reports whether the name is a delta backup's.
func (n Name) IsDelta() bool { return n.DeltaBase != "" }

// FullName is the name of a full backup starting in WAL file walName.
func FullName(walName string) string { return NamePrefix + walName }

// DeltaName is the name WAL-G gives a delta starting in WAL file walName on
// top of the backup named base: the base's first 24-hex run (its own start
// segment, even when the base is itself a delta).
func DeltaName(walName, base string) (string, error) {
	b, ok := firstWalName(base)
	if !ok {
		return "", fmt.Errorf("base backup name %q contains no WAL file name", base)
	}
	return NamePrefix + walName + "_D_" + b, nil
}

// WalFileName is the first 24-hex run in a backup name, as shown in
// backup-list's wal_file_name column; 24 'Z's when there is none (WAL-G's
// placeholder).
func WalFileName(name string) string {
	if w, ok := firstWalName(name); ok {
		return w
	}
	return strings.Repeat("Z", 24)
}

func firstWalName(s string) (string, bool) {
	run := 0
	for i := 0; i < len(s); i++ {
		if isUpperHexByte(s[i]) {
			run++
			if run == 24 {
				return s[i-23 : i+1], true
			}
		} else {
			run = 0
		}
	}
	return "", false
}

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isUpperHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isUpperHexByte(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// CheckName rejects names that cannot safely be turned into storage keys
// (empty, containing '/', or dot segments). Names need not match ParseName:
// backups written by older tools may not.
func CheckName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("invalid backup name %q", name)
	}
	return nil
}

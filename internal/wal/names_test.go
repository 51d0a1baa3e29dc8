package wal

import "testing"

func TestSegmentNames(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name string
		size int64
		seg  Segment
		next string
	}{
		{"000000010000000000000001", 16 * mib, Segment{1, 1}, "000000010000000000000002"},
		{"0000000100000000000000FF", 16 * mib, Segment{1, 255}, "000000010000000100000000"},
		{"000000020000000100000000", 16 * mib, Segment{2, 256}, "000000020000000100000001"},
		{"000000010000000000000FFF", 1 * mib, Segment{1, 4095}, "000000010000000100000000"},
		{"00000001000000000000003F", 64 * mib, Segment{1, 63}, "000000010000000100000000"},
	}
	for _, c := range cases {
		got, err := ParseSegment(c.name, c.size)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.seg {
			t.Fatalf("%s: got %+v want %+v", c.name, got, c.seg)
		}
		if n := got.Name(c.size); n != c.name {
			t.Fatalf("round trip %s -> %s", c.name, n)
		}
		if n := got.Next().Name(c.size); n != c.next {
			t.Fatalf("next of %s = %s, want %s", c.name, n, c.next)
		}
	}
	// Part beyond the segments of one xlogid for 16 MiB segments.
	if _, err := ParseSegment("000000010000000000000100", 16*mib); err == nil {
		t.Fatal("accepted out-of-range segment part")
	}
	for _, bad := range []string{"", "00000001000000000000000", "00000001000000000000000g", "000000010000000000000001.partial"} {
		if _, err := ParseSegment(bad, 16*mib); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}

func TestArchivableNames(t *testing.T) {
	good := []string{"000000010000000000000001", "00000002.history", "000000010000000000000001.partial", "000000010000000000000002.00000028.backup"}
	bad := []string{"../etc/passwd", "RECOVERYXLOG", "00000002.history/../x", "0000000G.history", "000000010000000000000002.0000002.backup", "a/000000010000000000000001"}
	for _, n := range good {
		if !IsArchivableName(n) {
			t.Errorf("rejected %q", n)
		}
	}
	for _, n := range bad {
		if IsArchivableName(n) {
			t.Errorf("accepted %q", n)
		}
	}
	if MarkerName("00000002.history") != "00000002" || MarkerName("000000010000000000000001") != "000000010000000000000001" {
		t.Fatal("markerName")
	}
}

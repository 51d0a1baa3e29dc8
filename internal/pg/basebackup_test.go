package pg

import (
	"bytes"
	"testing"
)

func TestParseArchiveHeader(t *testing.T) {
	for _, c := range []struct {
		in         string
		name, path string
		ok         bool
	}{
		{"base.tar\x00\x00", "base.tar", "", true},
		{"16385.tar\x00/mnt/tbs\x00", "16385.tar", "/mnt/tbs", true},
		{"base.tar", "", "", false},
		{"base.tar\x00/x", "", "", false},
		{"base.tar\x00\x00junk", "", "", false},
		{"", "", "", false},
	} {
		name, path, err := ParseArchiveHeader([]byte(c.in))
		if (err == nil) != c.ok || name != c.name || path != c.path {
			t.Errorf("ParseArchiveHeader(%q) = %q, %q, %v", c.in, name, path, err)
		}
	}
}

func TestServerMajor(t *testing.T) {
	for in, want := range map[string]int{"15.4 (Debian 15.4-1.pgdg120+1)": 15, "10.23": 10, "17beta1": 17, "18devel": 18, "16": 16, "9.6.24": 0, "": 0, "x15": 0} {
		got, err := serverMajor(in)
		if want == 0 {
			if err == nil {
				t.Errorf("serverMajor(%q) = %d, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("serverMajor(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// FuzzParseArchiveHeader: the 'n' message body comes off the network.
func FuzzParseArchiveHeader(f *testing.F) {
	f.Add([]byte("base.tar\x00\x00"))
	f.Add([]byte("16385.tar\x00/mnt/tbs\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, path, err := ParseArchiveHeader(b)
		if err != nil {
			return
		}
		want := append(append(append([]byte(name), 0), path...), 0)
		if !bytes.Equal(want, b) {
			t.Fatalf("%q parsed as %q, %q", b, name, path)
		}
	})
}

package pgdata

import "testing"

func TestParseRelFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
		want RelFile
	}{
		{"16384", true, RelFile{Node: "16384"}},
		{"16384.12", true, RelFile{Node: "16384", Segment: 12}},
		{"16384_fsm", true, RelFile{Node: "16384", Fork: "fsm"}},
		{"16384_vm.3", true, RelFile{Node: "16384", Fork: "vm", Segment: 3}},
		{"16384_init", true, RelFile{Node: "16384", Fork: "init"}},
		{"16384.0", false, RelFile{}},
		{"16384.0001", false, RelFile{}},
		{"016384", false, RelFile{}},
		{"16384_foo", false, RelFile{}},
		{"16384.", false, RelFile{}},
		{"_fsm", false, RelFile{}},
		{"pg_filenode.map", false, RelFile{}},
		{"99999999999", false, RelFile{}},
		{"1a", false, RelFile{}},
	} {
		got, ok := ParseRelFile(tc.name)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseRelFile(%q) = %+v, %v", tc.name, got, ok)
		}
	}
	for rel, want := range map[string]bool{
		"base/1": true, "base/16384": true, "base": false, "base/pgsql_tmp": false, "base/1/2": false,
		"pg_tblspc/16384/PG_15_202209061/5": true, "pg_tblspc/16384/PG_15_202209061": false, "global": false,
	} {
		if got := IsDatabaseDir(rel); got != want {
			t.Errorf("IsDatabaseDir(%q) = %v", rel, got)
		}
	}
	for rel, want := range map[string]bool{
		"base/1/1259": true, "base/1/1259.3": true, "global/1262": true, "pg_tblspc/16384/PG_15_202209061/5/16385": true,
		"base/1/1259_fsm": false, "base/1/1259_vm": false, "base/1/pg_filenode.map": false, "base/1/t3_16500": false,
		"pg_xact/0000": false, "base/1": false, "1259": false,
	} {
		if _, got := PagedFile(rel); got != want {
			t.Errorf("PagedFile(%q) = %v", rel, got)
		}
	}
	if seg, _ := PagedFile("base/5/16384.7"); seg != 7 {
		t.Errorf("segment %d, want 7", seg)
	}
}

func FuzzParseRelFile(f *testing.F) {
	for _, s := range []string{"16384", "16384_vm.3", "t3_16500_fsm", "pg_internal.init", "1.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rf, ok := ParseRelFile(name)
		if !ok {
			return
		}
		// Whatever parses formats back to the same name.
		back := rf.Node
		if rf.Fork != "" {
			back += "_" + rf.Fork
		}
		if rf.Segment != 0 {
			back += "." + itoa(rf.Segment)
		}
		if back != name {
			t.Fatalf("%q parsed as %+v, formats back as %q", name, rf, back)
		}
	})
}

func itoa(n uint32) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

package push

import "testing"

func TestMemberName(t *testing.T) {
	for _, c := range []struct{ prefix, in, want string }{
		{"/", "base/1/112", "/base/1/112"},
		{"/", "./global/pg_control", "/global/pg_control"},
		{"/", "pg_wal/", "/pg_wal"},
		{"/pg_tblspc/16385/", "PG_15_202209061/5/16397", "/pg_tblspc/16385/PG_15_202209061/5/16397"},
		{"/pg_tblspc/16385/", "./", "/pg_tblspc/16385"},
		{"/", "../etc/passwd", ""},
		{"/", "base/../../x", ""},
		{"/", "/etc/passwd", ""},
		{"/", "base//1", ""},
	} {
		got, err := memberName(c.prefix, c.in)
		if (err != nil) != (c.want == "") || got != c.want {
			t.Errorf("memberName(%q, %q) = %q, %v; want %q", c.prefix, c.in, got, err, c.want)
		}
	}
}

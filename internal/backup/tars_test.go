package backup

import (
	"fmt"
	"testing"
)

func TestClassifyTars(t *testing.T) {
	ts := ClassifyTars([]string{"part_002.tar.br", "backup_label.tar.br", "part_001.tar.br", "pg_control.tar.br", "part_1000.tar.br"})
	if fmt.Sprint(ts.Parts) != "[part_001.tar.br part_002.tar.br part_1000.tar.br]" || ts.PgControl != "pg_control.tar.br" || ts.BackupLabel != "backup_label.tar.br" {
		t.Errorf("%+v", ts)
	}
	ts = ClassifyTars([]string{"pg_control.tar", "backup_label.tar", "pg_control.tarx", "part_001.tar"})
	if ts.PgControl != "pg_control.tar" || ts.BackupLabel != "backup_label.tar" || len(ts.Parts) != 2 {
		t.Errorf("%+v", ts)
	}
	for name, ext := range map[string]string{"part_001.tar": "", "part_001.tar.lz4": "lz4", "pg_control.tar.zst": "zst", "x.tar.br": "br"} {
		m, err := TarMethod(name)
		if err != nil || m.Ext() != ext {
			t.Errorf("TarMethod(%s) = %v, %v", name, m, err)
		}
	}
	if _, err := TarMethod("part_001.tar.rar"); err == nil {
		t.Error("unknown extension accepted")
	}
}

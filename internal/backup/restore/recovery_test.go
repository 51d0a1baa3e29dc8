package restore

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecoveryTargetValidate(t *testing.T) {
	no, yes := false, true
	good := []RecoveryTarget{
		{Immediate: true},
		{Time: "2026-11-25 16:43:00+00", Inclusive: &no, Action: "promote"},
		{Name: "fx_rp", Timeline: "latest", Action: "shutdown"},
		{LSN: "0/3000028", Inclusive: &yes},
		{XID: "1234"},
		{Timeline: "latest"},
		{Timeline: "3"},
	}
	for _, g := range good {
		if err := g.Validate(); err != nil {
			t.Errorf("%+v: %v", g, err)
		}
	}
	bad := []RecoveryTarget{
		{Immediate: true, Name: "x"},
		{Time: "t", XID: "1"},
		{LSN: "3000028"},
		{XID: "12a"},
		{Inclusive: &yes},
		{Immediate: true, Inclusive: &no},
		{Name: "x", Action: "continue"},
		{Action: "promote"},
		{Timeline: "0"},
		{Timeline: "newest"},
	}
	for _, b := range bad {
		if err := b.Validate(); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

func TestShellQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"/usr/bin/tusk", "/path with spaces/it's \"here\"", `$HOME;rm -rf /`, "a\\b", ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("ShellQuote(%q) came back as %q (%v)", s, out, err)
		}
	}
}

func TestWriteRecoveryConfig(t *testing.T) {
	dest := t.TempDir()
	// The restored file has no trailing newline: settings start on a new line.
	if err := os.WriteFile(filepath.Join(dest, "postgresql.auto.conf"), []byte("work_mem = '8MB'"), 0o600); err != nil {
		t.Fatal(err)
	}
	no := false
	cmd := RestoreCommand("/opt/tusk's/bin/tusk", "/etc/tusk.json", []string{"TUSK_FETCH_ABORT_ON_STORAGE_ERROR=true"})
	if cmd != `TUSK_FETCH_ABORT_ON_STORAGE_ERROR='true' '/opt/tusk'\''s/bin/tusk' --config '/etc/tusk.json' wal-fetch %f %p` {
		t.Errorf("restore command: %s", cmd)
	}
	target := RecoveryTarget{Time: "2026-11-25 16:43:00+00", Inclusive: &no, Timeline: "latest"}
	if err := WriteRecoveryConfig(dest, 150018, cmd, target, true); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	want := "work_mem = '8MB'\n# Recovery settings added by tusk backup-fetch\n" +
		`restore_command = 'TUSK_FETCH_ABORT_ON_STORAGE_ERROR=''true'' ''/opt/tusk''\\''''s/bin/tusk'' --config ''/etc/tusk.json'' wal-fetch %f %p'` + "\n" +
		"recovery_target_time = '2026-11-25 16:43:00+00'\nrecovery_target_inclusive = 'false'\n" +
		"recovery_target_timeline = 'latest'\nrecovery_target_action = 'pause'\n"
	if string(got) != want {
		t.Errorf("postgresql.auto.conf:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dest, "recovery.signal")); err != nil || fi.Size() != 0 {
		t.Errorf("recovery.signal: %v", err)
	}
	if err := WriteRecoveryConfig(dest, 150018, cmd, RecoveryTarget{Immediate: true, Name: "x"}, false); err == nil {
		t.Error("invalid target written")
	}

	// PostgreSQL before 12 reads recovery.conf and has no recovery.signal.
	old := t.TempDir()
	if err := WriteRecoveryConfig(old, 110005, cmd, RecoveryTarget{Immediate: true}, false); err != nil {
		t.Fatal(err)
	}
	rc, err := os.ReadFile(filepath.Join(old, "recovery.conf"))
	if err != nil || !strings.Contains(string(rc), "recovery_target = 'immediate'\n") {
		t.Errorf("recovery.conf: %q, %v", rc, err)
	}
	if _, err := os.Stat(filepath.Join(old, "recovery.signal")); err == nil {
		t.Error("recovery.signal written for PostgreSQL 11")
	}
}

// Recovery settings are never written through a symlink planted in the
// restored directory: not postgresql.auto.conf (which used to be appended
// to), not recovery.signal (which used to be created at the link's
// target).
func TestWriteRecoveryConfigRefusesPlantedSymlinks(t *testing.T) {
	for _, name := range []string{"postgresql.auto.conf", "recovery.signal"} {
		t.Run(name, func(t *testing.T) {
			dest := t.TempDir()
			outside := t.TempDir()
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("root's file\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			absent := filepath.Join(outside, "created")
			target := victim
			if name == "recovery.signal" {
				target = absent
			}
			if err := os.Symlink(target, filepath.Join(dest, name)); err != nil {
				t.Fatal(err)
			}
			err := WriteRecoveryConfig(dest, 150000, "tusk wal-fetch %f %p", RecoveryTarget{Immediate: true}, true)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("error %v, want one naming %s", err, name)
			}
			if b, _ := os.ReadFile(victim); string(b) != "root's file\n" {
				t.Errorf("written through the symlink: %q", b)
			}
			if _, err := os.Lstat(absent); err == nil {
				t.Errorf("a file was created at the symlink's target %s", absent)
			}
		})
	}
}

// The settings are added after the restored postgresql.auto.conf, whose
// mode is kept, and no temporary file is left.
func TestWriteRecoveryConfigKeepsExistingSettings(t *testing.T) {
	dest := t.TempDir()
	conf := filepath.Join(dest, "postgresql.auto.conf")
	if err := os.WriteFile(conf, []byte("work_mem = '8MB'"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(conf, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteRecoveryConfig(dest, 150000, "cmd", RecoveryTarget{}, true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "work_mem = '8MB'\n# Recovery settings") || !strings.Contains(string(b), "restore_command = 'cmd'") {
		t.Errorf("postgresql.auto.conf:\n%s", b)
	}
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v (%v), want 0640", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dest)
	if len(ents) != 2 {
		t.Errorf("destination holds %d entries, want postgresql.auto.conf and recovery.signal", len(ents))
	}
}

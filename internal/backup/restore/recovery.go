package restore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tusk-pg/tusk/internal/fsutil"
)

// RecoveryTarget is where PostgreSQL should stop replaying WAL after a
// restore (tusk's backup-fetch --target-* flags). At most one of Immediate,
// Time, Name, LSN and XID is set.
type RecoveryTarget struct {
	Immediate bool
	Time      string // recovery_target_time, passed to PostgreSQL as given
	Name      string // recovery_target_name (a pg_create_restore_point name)
	LSN       string // recovery_target_lsn, e.g. 0/3000028
	XID       string // recovery_target_xid
	// Inclusive is recovery_target_inclusive; nil leaves PostgreSQL's default.
	Inclusive *bool
	// Timeline is recovery_target_timeline: "current", "latest" or a number.
	Timeline string
	// Action is recovery_target_action: pause (default), promote or shutdown.
	Action string
}

var (
	lsnPattern = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)
	xidPattern = regexp.MustCompile(`^[0-9]+$`)
)

// HasTarget reports whether a stop point is set (not just a timeline).
func (t RecoveryTarget) HasTarget() bool {
	return t.Immediate || t.Time != "" || t.Name != "" || t.LSN != "" || t.XID != ""
}

// Validate rejects combinations PostgreSQL would refuse at startup, so the
// mistake shows at restore time instead.
func (t RecoveryTarget) Validate() error {
	n := 0
	for _, set := range []bool{t.Immediate, t.Time != "", t.Name != "", t.LSN != "", t.XID != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("give at most one of --target-immediate, --target-time, --target-name, --target-lsn, --target-xid")
	}
	if t.LSN != "" && !lsnPattern.MatchString(t.LSN) {
		return fmt.Errorf("--target-lsn %q is not an LSN like 0/3000028", t.LSN)
	}
	if t.XID != "" && !xidPattern.MatchString(t.XID) {
		return fmt.Errorf("--target-xid %q is not a transaction id", t.XID)
	}
	if t.Inclusive != nil && t.Time == "" && t.LSN == "" && t.XID == "" {
		return errors.New("--target-inclusive applies only with --target-time, --target-lsn or --target-xid")
	}
	switch t.Action {
	case "", "pause", "promote", "shutdown":
	default:
		return fmt.Errorf("--target-action %q: use pause, promote or shutdown", t.Action)
	}
	if t.Action != "" && !t.HasTarget() {
		return errors.New("--target-action needs a recovery target (--target-immediate, -time, -name, -lsn or -xid)")
	}
	if tl := t.Timeline; tl != "" && tl != "current" && tl != "latest" {
		if v, err := strconv.ParseUint(tl, 10, 32); err != nil || v == 0 {
			return fmt.Errorf("--target-timeline %q: use current, latest or a timeline number", tl)
		}
	}
	return nil
}

// Settings returns the recovery_target* settings, in a fixed order.
func (t RecoveryTarget) Settings() [][2]string {
	var s [][2]string
	switch {
	case t.Immediate:
		s = append(s, [2]string{"recovery_target", "immediate"})
	case t.Time != "":
		s = append(s, [2]string{"recovery_target_time", t.Time})
	case t.Name != "":
		s = append(s, [2]string{"recovery_target_name", t.Name})
	case t.LSN != "":
		s = append(s, [2]string{"recovery_target_lsn", t.LSN})
	case t.XID != "":
		s = append(s, [2]string{"recovery_target_xid", t.XID})
	}
	if t.Inclusive != nil {
		s = append(s, [2]string{"recovery_target_inclusive", strconv.FormatBool(*t.Inclusive)})
	}
	if t.Timeline != "" {
		s = append(s, [2]string{"recovery_target_timeline", t.Timeline})
	}
	if t.HasTarget() {
		action := t.Action
		if action == "" {
			action = "pause"
		}
		s = append(s, [2]string{"recovery_target_action", action})
	}
	return s
}

// ShellQuote quotes s for /bin/sh, which runs restore_command.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// confQuote quotes a value for postgresql.conf: backslashes and single
// quotes escaped inside single quotes.
func confQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// RestoreCommand builds a restore_command that runs exe's wal-fetch with
// the given config file and environment assignments (NAME=value, applied
// by the shell in front of the command).
func RestoreCommand(exe, configFile string, env []string) string {
	var b strings.Builder
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		b.WriteString(k + "=" + ShellQuote(v) + " ")
	}
	b.WriteString(ShellQuote(exe))
	if configFile != "" {
		b.WriteString(" --config " + ShellQuote(configFile))
	}
	b.WriteString(" wal-fetch %f %p")
	return b.String()
}

// WriteRecoveryConfig makes a restored data directory start archive
// recovery: the settings are added to postgresql.auto.conf (as
// pg_basebackup -R does; recovery.conf before PostgreSQL 12) and
// recovery.signal is created. Secrets never go into these files: the
// restore_command refers to a config file instead.
//
// Both files are written through an os.Root of dest as new files renamed
// into place (fsutil.Replace); a symlink or special file at either name,
// which a restore never creates, is refused rather than followed.
func WriteRecoveryConfig(dest string, pgVersion int, restoreCommand string, t RecoveryTarget, fsync bool) error {
	if err := t.Validate(); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Recovery settings added by tusk backup-fetch\n")
	fmt.Fprintf(&b, "restore_command = %s\n", confQuote(restoreCommand))
	for _, kv := range t.Settings() {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], confQuote(kv[1]))
	}
	legacy := pgVersion != 0 && pgVersion < 120000
	confName, signal := "postgresql.auto.conf", "recovery.signal"
	if legacy {
		confName, signal = "recovery.conf", ""
	}
	root, err := fsutil.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("restored directory: %w", err)
	}
	defer root.Close()
	if err := appendConf(root, confName, b.String(), !fsync); err != nil {
		return err
	}
	if signal != "" {
		if _, err := existingRegular(root, signal); err != nil {
			return err
		}
		if err := fsutil.Replace(root, signal, fsutil.Options{NoSync: !fsync}, func(*os.File) error { return nil }); err != nil {
			return err
		}
	}
	return nil
}

// existingRegular returns the file info of name in root, nil when there
// is none, and an error when it is anything but a regular file.
func existingRegular(root *os.Root, name string) (os.FileInfo, error) {
	fi, err := root.Lstat(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v): refusing to write recovery settings through it", filepath.Join(root.Name(), name), fi.Mode().Type())
	}
	return fi, nil
}

// appendConf adds text to a configuration file, starting on a new line:
// the old content and text go into a new file that replaces it.
func appendConf(root *os.Root, name, text string, noSync bool) error {
	fi, err := existingRegular(root, name)
	if err != nil {
		return err
	}
	var old []byte
	perm := os.FileMode(0o600)
	if fi != nil {
		perm = fi.Mode().Perm()
		f, err := fsutil.OpenIn(root, name, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(root.Name(), name), err)
		}
		old, err = io.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(root.Name(), name), err)
		}
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		text = "\n" + text
	}
	return fsutil.Replace(root, name, fsutil.Options{Perm: perm, NoSync: noSync}, func(f *os.File) error {
		if _, err := f.Write(old); err != nil {
			return err
		}
		_, err := f.WriteString(text)
		return err
	})
}

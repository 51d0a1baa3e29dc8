package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadWithin runs Load and fails the test if it takes longer than d (a
// config file that blocks in open must not hang the command).
func loadWithin(t *testing.T, d time.Duration, opts LoadOptions) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := loadAll(opts)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Load still running after %v", d)
		return nil
	}
}

// oneLine checks an error is a single line naming want, without the
// secret or the whole value.
func oneLine(t *testing.T, err error, want string, absent ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %s", want)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Errorf("error %q: want one line naming %s", msg, want)
	}
	for _, a := range absent {
		if strings.Contains(msg, a) {
			t.Errorf("error shows %q: %.200q", a, msg)
		}
	}
	if len(msg) > 400 {
		t.Errorf("error is %d bytes long", len(msg))
	}
}

func TestConfigFileFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "walg.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	t.Cleanup(func() {
		// Release an open blocked on the FIFO, should there be one.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	for _, opts := range []LoadOptions{
		{ConfigFile: fifo},
		{Environ: []string{"WALG_CONFIG_PATH=" + fifo}},
	} {
		oneLine(t, loadWithin(t, 5*time.Second, opts), fifo)
	}
	home := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(home, ".walg.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	oneLine(t, loadWithin(t, 5*time.Second, LoadOptions{Home: home}), ".walg.json")
}

func TestConfigFileDevice(t *testing.T) {
	oneLine(t, loadWithin(t, 5*time.Second, LoadOptions{ConfigFile: "/dev/zero"}), "/dev/zero")
}

func TestConfigFileWorldWritable(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "walg.json", `{"WALG_S3_PREFIX": "s3://b/p"}`)
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	_, _, err := loadAll(LoadOptions{ConfigFile: p})
	oneLine(t, err, p)
	if err != nil && !strings.Contains(err.Error(), "writable") {
		t.Errorf("error %q does not say why", err)
	}
	home := t.TempDir()
	h := writeFile(t, home, ".walg.json", `{"WALG_S3_PREFIX": "s3://b/p"}`)
	if err := os.Chmod(h, 0o646); err != nil {
		t.Fatal(err)
	}
	_, _, err = loadAll(LoadOptions{Home: home})
	oneLine(t, err, h)
	// Group-writable stays allowed (a shared postgres group is common).
	if err := os.Chmod(p, 0o660); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, LoadOptions{ConfigFile: p})
}

func TestConfigFileOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	dir := t.TempDir()
	p := writeFile(t, dir, "walg.json", `{"WALG_S3_PREFIX": "s3://b/p"}`)
	if err := os.Chown(p, 54321, 54321); err != nil {
		t.Fatal(err)
	}
	_, _, err := loadAll(LoadOptions{ConfigFile: p})
	oneLine(t, err, p)
	if err != nil && !strings.Contains(err.Error(), "54321") {
		t.Errorf("error %q does not name the owner", err)
	}
	// Root's own files are fine for any user.
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, LoadOptions{ConfigFile: p})
}

func TestConfigFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "walg.json", `{"WALG_S3_PREFIX": "s3://b/p", "X": "`+strings.Repeat("x", 2<<20)+`"}`)
	oneLine(t, loadWithin(t, 5*time.Second, LoadOptions{ConfigFile: p}), p, "xxxx")
}

func TestValueTooLarge(t *testing.T) {
	big := strings.Repeat("v", 100<<10)
	dir := t.TempDir()
	file := writeFile(t, dir, "walg.yaml", "WALG_SENTINEL_USER_DATA: '"+big+"'\n")
	for name, opts := range map[string]LoadOptions{
		"env":    {Environ: []string{"WALG_S3_PREFIX=" + big}},
		"secret": {Environ: []string{"WALG_PGP_KEY=" + big}},
		"flag":   {Flags: map[string]string{"WALG_S3_PREFIX": big}},
		"file":   {ConfigFile: file},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := loadAll(opts)
			want := "WALG_S3_PREFIX"
			switch name {
			case "secret":
				want = "WALG_PGP_KEY"
			case "file":
				want = "WALG_SENTINEL_USER_DATA"
			}
			oneLine(t, err, want, "vvvv")
		})
	}
	// Just under the cap is a value like any other.
	mustLoad(t, LoadOptions{Environ: []string{"WALG_SENTINEL_USER_DATA=\"" + strings.Repeat("v", 64<<10-2) + "\""}})
}

// A bad value is named, shown shortened, never whole.
func TestInvalidValueShortened(t *testing.T) {
	long := strings.Repeat("7x", 2000)
	_, _, err := loadAll(LoadOptions{Environ: []string{"WALG_UPLOAD_CONCURRENCY=" + long}})
	oneLine(t, err, "WALG_UPLOAD_CONCURRENCY", long[:200])
	_, _, err = loadAll(LoadOptions{Environ: []string{"WALG_UPLOAD_CONCURRENCY=x7"}})
	oneLine(t, err, `"x7"`)
}

// Unknown names are reported, shortened when long.
func TestUnknownNameShortened(t *testing.T) {
	long := "WALG_" + strings.Repeat("Q", 5000)
	_, w, err := loadAll(LoadOptions{Environ: []string{long + "=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || len(w[0]) > 400 {
		t.Errorf("warnings %.300q", w)
	}
}

// The selected storage's settings are checked in Load, for every command,
// and the error names the variable.
func TestStorageSettingsCheckedInLoad(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{[]string{"WALG_FILE_PREFIX=relative/path"}, "WALG_FILE_PREFIX"},
		{[]string{"WALE_FILE_PREFIX=relative/path"}, "WALE_FILE_PREFIX"},
		{[]string{"WALG_FILE_PREFIX=file://host/x"}, "WALG_FILE_PREFIX"},
		{[]string{"WALG_S3_PREFIX=s3://b/p", "WALG_S3_SSE=aws:kms"}, "WALG_S3_SSE_KMS_ID"},
		{[]string{"WALG_S3_PREFIX=s3://b/p", "WALG_S3_MAX_PART_SIZE=1024"}, "WALG_S3_MAX_PART_SIZE"},
	} {
		_, _, err := loadAll(LoadOptions{Environ: tt.env})
		oneLine(t, err, tt.want)
	}
	mustLoad(t, LoadOptions{Environ: []string{"WALG_FILE_PREFIX=/abs/path"}})
	mustLoad(t, LoadOptions{Environ: []string{"WALG_FILE_PREFIX=file:///abs/path"}})
}

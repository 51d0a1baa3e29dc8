package crypt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Errors about keys name the setting and what is wrong, never any part of
// the key: not a character, not its code point.
func TestKeyErrorsHideKeyMaterial(t *testing.T) {
	// A 64-character "hex" key with one secret non-hex character, and a
	// base64 one with a character outside the alphabet.
	hexKey := strings.Repeat("0f", 20) + "~^" + strings.Repeat("0f", 11)
	b64Key := strings.Repeat("AAAA", 5) + "~^~=" + strings.Repeat("AAAA", 2)
	dir := t.TempDir()
	hexPath := filepath.Join(dir, "hex")
	os.WriteFile(hexPath, []byte(hexKey), 0o600)
	b64Path := filepath.Join(dir, "b64")
	os.WriteFile(b64Path, []byte(b64Key), 0o600)
	pgpPath := filepath.Join(dir, "pgp")
	os.WriteFile(pgpPath, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n~^secret\n-----END PGP PRIVATE KEY BLOCK-----\n"), 0o600)

	for name, s := range map[string]Settings{
		"hex inline":      {LibsodiumKey: hexKey, LibsodiumKeyTransform: "hex"},
		"hex file":        {LibsodiumKeyPath: hexPath, LibsodiumKeyTransform: "hex"},
		"hex odd length":  {LibsodiumKey: hexKey[:63], LibsodiumKeyTransform: "hex"},
		"base64 inline":   {LibsodiumKey: b64Key, LibsodiumKeyTransform: "base64"},
		"base64 file":     {LibsodiumKeyPath: b64Path, LibsodiumKeyTransform: "base64"},
		"short none":      {LibsodiumKey: "~^~", LibsodiumKeyTransform: "none"},
		"pgp inline":      {PGPKey: "-----BEGIN PGP PRIVATE KEY BLOCK-----\\n\\n~^secret\\n-----END PGP PRIVATE KEY BLOCK-----"},
		"pgp file":        {PGPKeyPath: pgpPath},
		"pgp not armored": {PGPKey: "~^secret"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := FromSettings(context.Background(), s)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, leak := range []string{"~", "^", "U+007E", "U+005E", "secret"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q shows %q", msg, leak)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line", msg)
			}
		})
	}
}

// A key path naming a FIFO or a device is refused at once, not waited on
// or read without end.
func TestKeyFileNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	for name, s := range map[string]Settings{
		"libsodium fifo": {LibsodiumKeyPath: fifo},
		"pgp fifo":       {PGPKeyPath: fifo},
		"libsodium dev":  {LibsodiumKeyPath: "/dev/zero"},
		"pgp dev":        {PGPKeyPath: "/dev/zero"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := FromSettings(context.Background(), s)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: err = %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still reading the key after 5s", name)
		}
	}
}

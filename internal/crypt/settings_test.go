package crypt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFromSettings(t *testing.T) {
	dir := t.TempDir()
	priv, pub := newTestKey(t, "")
	privPath := filepath.Join(dir, "priv.asc")
	os.WriteFile(privPath, priv, 0o600)
	sodiumPath := filepath.Join(dir, "sodium")
	os.WriteFile(sodiumPath, []byte(strings.Repeat("k", 30)+"\n"), 0o600)
	hexKey := strings.Repeat("0f", 32)
	oneLinePub := strings.ReplaceAll(string(pub), "\n", `\n`)

	for _, c := range []struct {
		name     string
		settings Settings
		want     string // crypter name, "" for none
		err      string
	}{
		{"nothing", Settings{LibsodiumKeyTransform: "none"}, "", ""},
		{"empty values", Settings{}, "", ""},
		{"libsodium inline", Settings{LibsodiumKey: hexKey, LibsodiumKeyTransform: "hex"}, "libsodium", ""},
		{"libsodium path", Settings{LibsodiumKeyPath: sodiumPath}, "libsodium", ""},
		{"inline wins over path", Settings{LibsodiumKey: hexKey, LibsodiumKeyTransform: "hex", LibsodiumKeyPath: "/nonexistent"}, "libsodium", ""},
		{"libsodium bad key", Settings{LibsodiumKey: "short"}, "", "WALG_LIBSODIUM_KEY:"},
		{"libsodium bad transform", Settings{LibsodiumKey: hexKey, LibsodiumKeyTransform: "rot13"}, "", "WALG_LIBSODIUM_KEY_TRANSFORM"},
		{"pgp inline", Settings{PGPKey: oneLinePub}, "openpgp", ""},
		{"pgp path", Settings{PGPKeyPath: privPath}, "openpgp", ""},
		{"pgp over libsodium", Settings{PGPKeyPath: privPath, LibsodiumKey: hexKey}, "openpgp", ""},
		{"pgp bad inline", Settings{PGPKey: "garbage"}, "", "WALG_PGP_KEY:"},
		{"pgp missing file", Settings{PGPKeyPath: filepath.Join(dir, "none.asc")}, "", "WALG_PGP_KEY_PATH"},
	} {
		cr, err := FromSettings(context.Background(), c.settings)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "" && cr != nil:
			t.Errorf("%s: got %s, want no encryption", c.name, cr.Name())
		case c.want != "" && (cr == nil || cr.Name() != c.want):
			t.Errorf("%s: got %v, want %s", c.name, cr, c.want)
		}
		if err != nil && strings.Contains(err.Error(), hexKey) {
			t.Errorf("%s: error shows the key", c.name)
		}
	}
}

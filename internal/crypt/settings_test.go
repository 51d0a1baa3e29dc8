package crypt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func lookupOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

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
		settings map[string]string
		want     string // crypter name, "" for none
		err      string
	}{
		{"nothing", map[string]string{"WALG_LIBSODIUM_KEY_TRANSFORM": "none"}, "", ""},
		{"empty values", map[string]string{"WALG_PGP_KEY": "", "WALG_LIBSODIUM_KEY": ""}, "", ""},
		{"libsodium inline", map[string]string{"WALG_LIBSODIUM_KEY": hexKey, "WALG_LIBSODIUM_KEY_TRANSFORM": "hex"}, "libsodium", ""},
		{"libsodium path", map[string]string{"WALG_LIBSODIUM_KEY_PATH": sodiumPath}, "libsodium", ""},
		{"inline wins over path", map[string]string{"WALG_LIBSODIUM_KEY": hexKey, "WALG_LIBSODIUM_KEY_TRANSFORM": "hex", "WALG_LIBSODIUM_KEY_PATH": "/nonexistent"}, "libsodium", ""},
		{"libsodium bad key", map[string]string{"WALG_LIBSODIUM_KEY": "short"}, "", "WALG_LIBSODIUM_KEY:"},
		{"libsodium bad transform", map[string]string{"WALG_LIBSODIUM_KEY": hexKey, "WALG_LIBSODIUM_KEY_TRANSFORM": "rot13"}, "", "WALG_LIBSODIUM_KEY_TRANSFORM"},
		{"pgp inline", map[string]string{"WALG_PGP_KEY": oneLinePub}, "openpgp", ""},
		{"pgp path", map[string]string{"WALG_PGP_KEY_PATH": privPath}, "openpgp", ""},
		{"pgp over libsodium", map[string]string{"WALG_PGP_KEY_PATH": privPath, "WALG_LIBSODIUM_KEY": hexKey}, "openpgp", ""},
		{"pgp bad inline", map[string]string{"WALG_PGP_KEY": "garbage"}, "", "WALG_PGP_KEY:"},
		{"pgp missing file", map[string]string{"WALG_PGP_KEY_PATH": filepath.Join(dir, "none.asc")}, "", "WALG_PGP_KEY_PATH"},
		{"gpg key id", map[string]string{"WALG_GPG_KEY_ID": "ABCD"}, "", "WALG_GPG_KEY_ID"},
		{"pgp and envelope", map[string]string{"WALG_PGP_KEY_PATH": privPath, "WALG_ENVELOPE_PGP_KEY": "x"}, "", "cannot be configured together"},
		{"envelope", map[string]string{"WALG_ENVELOPE_PGP_KEY_PATH": "x"}, "", "envelope PGP encryption is not supported"},
		{"aws kms", map[string]string{"WALG_CSE_KMS_ID": "arn"}, "", "WALG_CSE_KMS_ID"},
		{"yc kms", map[string]string{"YC_CSE_KMS_KEY_ID": "id", "WALG_LIBSODIUM_KEY": hexKey}, "", "YC_CSE_KMS_KEY_ID"},
	} {
		cr, err := FromSettings(lookupOf(c.settings))
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

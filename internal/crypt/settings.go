package crypt

import (
	"errors"
	"fmt"
)

// FromSettings builds the encryption WAL-G's settings select, or returns
// nil when none is configured. lookup returns a setting's value (the
// config's Lookup, which also answers for WAL-G's alternative spellings
// such as GPG_KEY_ID); an empty value counts as unset. WAL-G's order:
//
//  1. WALG_PGP_KEY, else WALG_PGP_KEY_PATH (with WALG_PGP_KEY_PASSPHRASE):
//     OpenPGP. WALG_GPG_KEY_ID (GnuPG's keyring through the gpg command)
//     is refused.
//  2. Envelope PGP, AWS KMS and Yandex Cloud KMS: refused (not supported).
//  3. WALG_LIBSODIUM_KEY, else WALG_LIBSODIUM_KEY_PATH, with
//     WALG_LIBSODIUM_KEY_TRANSFORM: libsodium.
//
// Setting plain and envelope PGP together is an error, as in WAL-G.
func FromSettings(lookup func(name string) (string, bool)) (Crypter, error) {
	get := func(name string) string {
		v, ok := lookup(name)
		if !ok {
			return ""
		}
		return v
	}
	firstSet := func(names ...string) string {
		for _, n := range names {
			if get(n) != "" {
				return n
			}
		}
		return ""
	}

	pgp := firstSet("WALG_PGP_KEY", "WALG_PGP_KEY_PATH", "WALG_GPG_KEY_ID")
	envelope := firstSet("WALG_ENVELOPE_PGP_KEY", "WALG_ENVELOPE_PGP_KEY_PATH")
	if pgp != "" && envelope != "" {
		return nil, fmt.Errorf("%s and %s are both set: plain PGP and envelope PGP cannot be configured together", pgp, envelope)
	}
	passphrase := get("WALG_PGP_KEY_PASSPHRASE")
	switch pgp {
	case "WALG_PGP_KEY":
		c, err := NewOpenPGP(OpenPGPKeyFromEnv(get(pgp)), passphrase)
		if err != nil {
			return nil, fmt.Errorf("WALG_PGP_KEY: %w", err)
		}
		return c, nil
	case "WALG_PGP_KEY_PATH":
		path := get(pgp)
		key, err := OpenPGPKeyFile(path)
		if err != nil {
			return nil, err
		}
		c, err := NewOpenPGP(key, passphrase)
		if err != nil {
			return nil, fmt.Errorf("WALG_PGP_KEY_PATH (%s): %w", path, err)
		}
		return c, nil
	case "WALG_GPG_KEY_ID":
		return nil, errors.New("WALG_GPG_KEY_ID (GPG_KEY_ID): encryption through the gpg command is not supported; " +
			"export the key armored (gpg --armor --export-secret-keys ID) and set WALG_PGP_KEY_PATH")
	}
	if envelope != "" {
		return nil, fmt.Errorf("%s: envelope PGP encryption is not supported", envelope)
	}
	if get("WALG_CSE_KMS_ID") != "" {
		return nil, errors.New("WALG_CSE_KMS_ID: AWS KMS client-side encryption is not supported")
	}
	if get("YC_CSE_KMS_KEY_ID") != "" {
		return nil, errors.New("YC_CSE_KMS_KEY_ID: Yandex Cloud KMS encryption is not supported")
	}

	transform := get("WALG_LIBSODIUM_KEY_TRANSFORM")
	var key []byte
	var err error
	switch {
	case get("WALG_LIBSODIUM_KEY") != "":
		key, err = LibsodiumKey(get("WALG_LIBSODIUM_KEY"), transform)
	case get("WALG_LIBSODIUM_KEY_PATH") != "":
		key, err = LibsodiumKeyFile(get("WALG_LIBSODIUM_KEY_PATH"), transform)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return NewLibsodium(key)
}

// MemoryEstimate returns upper bounds, in bytes, of the live heap one
// encrypting writer and one decrypting reader of c hold, over a stream of
// any length; TestMemoryEstimate measures them. libsodium allocates nothing
// beyond its one chunk buffer. go-crypto's encrypting writer additionally
// makes short-lived garbage about equal to the bytes it encrypts
// (crypto/cipher.StreamWriter allocates per write; tusk cuts writes to
// 16 KiB), which the GC reclaims without raising the peak much.
func MemoryEstimate(c Crypter) (writer, reader int64) {
	switch c.(type) {
	case *libsodium:
		return 16 << 10, 16 << 10
	case *pgpCrypter:
		return 128 << 10, 64 << 10
	}
	return 0, 0
}

package crypt

import (
	"context"
	"fmt"
)

// Settings are the encryption settings tusk implements, by WAL-G's names.
// The configuration layer fills them and refuses the encryption kinds tusk
// lacks (GnuPG keyrings, envelope PGP, Yandex Cloud KMS) before they reach
// this package.
type Settings struct {
	PGPKey           string // WALG_PGP_KEY: an armored key, or its lines joined by "\n"
	PGPKeyPath       string // WALG_PGP_KEY_PATH
	PGPKeyPassphrase string // WALG_PGP_KEY_PASSPHRASE
	LibsodiumKey     string // WALG_LIBSODIUM_KEY
	LibsodiumKeyPath string // WALG_LIBSODIUM_KEY_PATH
	// LibsodiumKeyTransform is WALG_LIBSODIUM_KEY_TRANSFORM: none, hex or
	// base64 ("" is none).
	LibsodiumKeyTransform string
	KMSKeyID              string // WALG_CSE_KMS_ID
	KMSRegion             string // WALG_CSE_KMS_REGION
	KMSEndpoint           string // TUSK_KMS_ENDPOINT
}

// FromSettings builds the encryption s selects, or returns nil when none
// is configured; empty fields count as unset. WAL-G's order: WALG_PGP_KEY,
// else WALG_PGP_KEY_PATH (OpenPGP, with WALG_PGP_KEY_PASSPHRASE); then
// WALG_CSE_KMS_ID (AWS KMS); then WALG_LIBSODIUM_KEY, else
// WALG_LIBSODIUM_KEY_PATH (libsodium). ctx bounds the KMS requests of the
// crypter's whole life.
func FromSettings(ctx context.Context, s Settings) (Crypter, error) {
	switch {
	case s.PGPKey != "":
		c, err := NewOpenPGP(OpenPGPKeyFromEnv(s.PGPKey), s.PGPKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("WALG_PGP_KEY: %w", err)
		}
		return c, nil
	case s.PGPKeyPath != "":
		key, err := OpenPGPKeyFile(s.PGPKeyPath)
		if err != nil {
			return nil, err
		}
		c, err := NewOpenPGP(key, s.PGPKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("WALG_PGP_KEY_PATH (%s): %w", s.PGPKeyPath, err)
		}
		return c, nil
	case s.KMSKeyID != "":
		return NewKMS(ctx, KMSOptions{KeyID: s.KMSKeyID, Region: s.KMSRegion, Endpoint: s.KMSEndpoint})
	}

	var key []byte
	var err error
	switch {
	case s.LibsodiumKey != "":
		key, err = LibsodiumKey(s.LibsodiumKey, s.LibsodiumKeyTransform)
	case s.LibsodiumKeyPath != "":
		key, err = LibsodiumKeyFile(s.LibsodiumKeyPath, s.LibsodiumKeyTransform)
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
// 16 KiB), which the GC reclaims without raising the peak much. AWS KMS
// holds one DARE package (64 KiB and 32 bytes) each way, from sio's pool,
// its ciphers, and while a stream starts what its KMS request keeps live
// (the SDK's connection and caches): measured 117 to 129 KiB writer, 45 to
// 77 KiB reader in all.
func MemoryEstimate(c Crypter) (writer, reader int64) {
	switch c.(type) {
	case *libsodium:
		return 16 << 10, 16 << 10
	case *pgpCrypter:
		return 128 << 10, 64 << 10
	case *kmsCrypter:
		return 160 << 10, 112 << 10
	}
	return 0, 0
}

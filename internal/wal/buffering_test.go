package wal

import (
	"context"
	"strings"
	"testing"

	"github.com/tusk-pg/tusk/internal/crypt"
	"github.com/tusk-pg/tusk/internal/storage"
)

// ChooseBuffering keeps recompress (no spool) only where two passes give
// the same length and cost nothing more: no encryption or libsodium, over
// an unsigned payload. AWS KMS would make a KMS request per pass.
func TestChooseBufferingCrypters(t *testing.T) {
	sodium, err := crypt.NewLibsodium(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	kms, err := crypt.NewKMS(context.Background(), crypt.KMSOptions{KeyID: "alias/k", Region: "eu-west-2"})
	if err != nil {
		t.Fatal(err)
	}
	https := storage.Traits{}
	for _, tc := range []struct {
		name    string
		cr      crypt.Crypter
		st      storage.Traits
		want    string
		because string
	}{
		{"plain", nil, https, BufferRecompress, ""},
		{"libsodium", sodium, https, BufferRecompress, ""},
		{"libsodium signed", sodium, storage.Traits{SignsPayload: true}, BufferMemory, "HTTPS"},
		{"aws-kms", kms, https, BufferMemory, "KMS request per pass"},
		{"streams", kms, storage.Traits{StreamsUnknownSize: true}, BufferStream, ""},
	} {
		mode, why := ChooseBuffering(BufferRecompress, tc.st, tc.cr)
		if mode != tc.want || !strings.Contains(why, tc.because) {
			t.Errorf("%s: %s (%q), want %s (%q)", tc.name, mode, why, tc.want, tc.because)
		}
	}
}

package crypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/minio/sio"
)

// WAL-G's AWS KMS client-side encryption (internal/crypto/awskms): every
// object starts with its data key as encrypted by KMS, exactly
// kmsEncryptedKeySize bytes, followed by the object encrypted with that
// key as a DARE stream (minio/sio, the library WAL-G uses, with its default
// configuration: DARE 2.0, AES-256-GCM, or ChaCha20-Poly1305 on CPUs
// without AES instructions, in packages of 64 KiB).
const (
	kmsDataKeySize = 32
	// kmsEncryptedKeySize is what WAL-G reads back, fixed: the length of
	// an AWS KMS ciphertext of a 32-byte plaintext under a symmetric key.
	// WAL-G writes whatever KMS returns, so a key of another length makes
	// objects WAL-G cannot read; tusk refuses to write those.
	kmsEncryptedKeySize = 184
	// kmsCallTimeout bounds one KMS request with the SDK's retries, so a
	// KMS that accepts connections but never answers does not stall an
	// upload or a restore for ever.
	kmsCallTimeout = 60 * time.Second
)

// KMSOptions select the AWS KMS key of client-side encryption.
type KMSOptions struct {
	KeyID string // WALG_CSE_KMS_ID: key id, ARN, alias name or alias ARN
	// Region is WALG_CSE_KMS_REGION; empty takes the AWS SDK's (AWS_REGION,
	// the shared config profile), as WAL-G does.
	Region string
	// Endpoint is TUSK_KMS_ENDPOINT: a KMS URL for emulators and private
	// endpoints. WAL-G has no such setting (it always reaches AWS's
	// regional endpoint).
	Endpoint string
}

// keyService wraps and unwraps data keys: AWS KMS, or in fuzz tests a
// local stand-in.
type keyService interface {
	encryptKey(ctx context.Context, plaintext []byte) ([]byte, error)
	decryptKey(ctx context.Context, blob []byte) ([]byte, error)
}

type kmsCrypter struct {
	// ctx is the process's: the Crypter interface streams without a
	// context, and KMS requests must still stop on SIGTERM.
	ctx  context.Context
	keys keyService
}

// NewKMS returns WAL-G's AWS KMS client-side encryption with the key o
// names. Credentials come from the AWS SDK's default chain (AWS_ACCESS_KEY_ID,
// AWS_PROFILE, web identity, instance role), as in WAL-G. It makes no
// request: a wrong key or an unreachable KMS shows on the first object.
//
// As WAL-G, each object gets a fresh random data key, wrapped by one KMS
// Encrypt request (WAL-G's IAM policies grant kms:Encrypt and kms:Decrypt,
// not kms:GenerateDataKey), and reading an object makes one KMS Decrypt
// request. Nothing is cached: every object has its own key.
func NewKMS(ctx context.Context, o KMSOptions) (Crypter, error) {
	if o.KeyID == "" {
		return nil, errors.New("WALG_CSE_KMS_ID is empty")
	}
	var load []func(*config.LoadOptions) error
	if o.Region != "" {
		load = append(load, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("WALG_CSE_KMS_ID: loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("WALG_CSE_KMS_ID: no AWS region for the KMS key: set WALG_CSE_KMS_REGION (or AWS_REGION)")
	}
	client := kms.NewFromConfig(cfg, func(ko *kms.Options) {
		if o.Endpoint != "" {
			ko.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	where := "region " + cfg.Region
	if o.Endpoint != "" {
		where += ", TUSK_KMS_ENDPOINT " + o.Endpoint
	}
	return &kmsCrypter{ctx: ctx, keys: &awsKMS{client: client, keyID: o.KeyID, where: where}}, nil
}

func (*kmsCrypter) Name() string { return "aws-kms" }

func (c *kmsCrypter) Encrypt(w io.Writer) (io.WriteCloser, error) {
	return &kmsWriter{c: c, dst: w}, nil
}

func (c *kmsCrypter) Decrypt(r io.Reader) (io.ReadCloser, error) {
	return &openingReader{name: "aws kms", src: r, open: c.open}, nil
}

// kmsWriter makes the data key and writes its wrapped form on the first
// Write or Close, so a pipeline's writer is never blocked at creation and
// an object is only encrypted once something is stored.
type kmsWriter struct {
	c      *kmsCrypter
	dst    io.Writer
	w      io.WriteCloser // the DARE stream
	closed bool
	err    error
}

func (w *kmsWriter) start() error {
	var key [kmsDataKeySize]byte
	defer clear(key[:])
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("aws kms: data key: %w", err)
	}
	blob, err := w.c.keys.encryptKey(w.c.ctx, key[:])
	if err != nil {
		return err
	}
	if len(blob) != kmsEncryptedKeySize {
		return fmt.Errorf("aws kms: KMS returned a %d-byte encrypted data key; WAL-G's format stores exactly %d bytes, so the object could not be read back (WALG_CSE_KMS_ID must be a symmetric key)",
			len(blob), kmsEncryptedKeySize)
	}
	if _, err := w.dst.Write(blob); err != nil {
		return err
	}
	// sio closes a destination that is an io.Closer; ours must stay open.
	sw, err := sio.EncryptWriter(struct{ io.Writer }{w.dst}, sio.Config{Key: key[:]})
	if err != nil {
		return fmt.Errorf("aws kms: start stream: %w", err)
	}
	w.w = sw
	return nil
}

func (w *kmsWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("aws kms: write after Close")
	}
	if w.w == nil {
		if w.err = w.start(); w.err != nil {
			return 0, w.err
		}
	}
	n, err := w.w.Write(p)
	if err != nil {
		w.err = fmt.Errorf("aws kms: encrypt: %w", err)
	}
	return n, w.err
}

// Close writes the final package. It does not close the destination.
func (w *kmsWriter) Close() error {
	if w.err != nil || w.closed {
		return w.err
	}
	w.closed = true
	if w.w == nil {
		if w.err = w.start(); w.err != nil {
			return w.err
		}
	}
	if err := w.w.Close(); err != nil {
		w.err = fmt.Errorf("aws kms: finish stream: %w", err)
	}
	return w.err
}

// open reads the wrapped data key and has KMS unwrap it.
func (c *kmsCrypter) open(src io.Reader) (io.Reader, error) {
	blob, err := readKMSHeader(src)
	if err != nil {
		return nil, err
	}
	key, err := c.keys.decryptKey(c.ctx, blob)
	if err != nil {
		return nil, err
	}
	// Not cleared after use: sio keys its cipher on the first Read.
	if len(key) != kmsDataKeySize {
		return nil, fmt.Errorf("aws kms: KMS returned a %d-byte data key, WAL-G's are %d bytes", len(key), kmsDataKeySize)
	}
	body, err := sio.DecryptReader(src, sio.Config{Key: key})
	if err != nil {
		return nil, fmt.Errorf("aws kms: start stream: %w", err)
	}
	return body, nil
}

// readKMSHeader reads the wrapped data key an object starts with. Its
// content is KMS's own format, checked by KMS; only the length is WAL-G's.
func readKMSHeader(r io.Reader) ([]byte, error) {
	blob := make([]byte, kmsEncryptedKeySize)
	if _, err := io.ReadFull(r, blob); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("aws kms: object is shorter than its %d-byte encrypted data key (truncated, or not encrypted with KMS)", kmsEncryptedKeySize)
		}
		return nil, fmt.Errorf("aws kms: read encrypted data key: %w", err)
	}
	return blob, nil
}

// awsKMS is the AWS KMS API.
type awsKMS struct {
	client *kms.Client
	keyID  string
	where  string // region and endpoint, for errors
}

func (k *awsKMS) encryptKey(ctx context.Context, plaintext []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, kmsCallTimeout)
	defer cancel()
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(k.keyID), Plaintext: plaintext})
	if err != nil {
		return nil, k.explain("encrypting a data key with", err)
	}
	return out.CiphertextBlob, nil
}

// decryptKey names no key, as WAL-G: KMS finds it from the blob, so objects
// written under a previous WALG_CSE_KMS_ID stay readable.
func (k *awsKMS) decryptKey(ctx context.Context, blob []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, kmsCallTimeout)
	defer cancel()
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	if err != nil {
		return nil, k.explain("decrypting the object's data key with", err)
	}
	return out.Plaintext, nil
}

// explain makes one line of a KMS failure that names the setting, and
// never the key material.
func (k *awsKMS) explain(doing string, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		msg := api.ErrorMessage()
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		hint := ""
		switch api.ErrorCode() {
		case "NotFoundException":
			hint = " (check WALG_CSE_KMS_ID and WALG_CSE_KMS_REGION)"
		case "InvalidCiphertextException":
			hint = " (the object is damaged, or was not encrypted by a KMS key of this account and region)"
		case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException":
			hint = " (check the AWS credentials: kms:Encrypt and kms:Decrypt on the key are needed)"
		}
		return fmt.Errorf("WALG_CSE_KMS_ID %s: %s KMS (%s): %s: %s%s%w",
			k.keyID, doing, k.where, api.ErrorCode(), msg, hint, quiet{err})
	}
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("WALG_CSE_KMS_ID %s: %s KMS: cannot reach KMS (%s): %w", k.keyID, doing, k.where, err)
	}
	return fmt.Errorf("WALG_CSE_KMS_ID %s: %s KMS (%s): %w", k.keyID, doing, k.where, err)
}

// quiet wraps an error for errors.Is/As without adding its text, which the
// message already summarises.
type quiet struct{ err error }

func (quiet) Error() string   { return "" }
func (q quiet) Unwrap() error { return q.err }

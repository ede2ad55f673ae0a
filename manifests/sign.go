package manifests

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
)

// MaxSignatureSize bounds a .minisig file (a real one is about 300 bytes).
const MaxSignatureSize = 4 << 10

// GenerateKey returns a new minisign key pair as file contents: an unencrypted secret key
// (it is read unattended by cron; protect it with file permissions) and a public key, both
// in the format of the minisign tool.
func GenerateKey() (secret, public []byte, err error) {
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("manifests: generate key: %w", err)
	}
	secret, err = priv.MarshalText()
	if err != nil {
		return nil, nil, fmt.Errorf("manifests: encode secret key: %w", err)
	}
	public, _ = pub.MarshalText()
	return secret, append(public, '\n'), nil
}

// LoadSecretKey reads a minisign secret key file. Password-protected keys are refused with
// a clear error: sync runs unattended, so the key is protected by file permissions instead.
func LoadSecretKey(path string) (minisign.PrivateKey, error) {
	b, err := ReadSmallFile(path, MaxKeyFile)
	if err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("manifests: signing key: %w", err)
	}
	if minisign.IsEncrypted(b) {
		return minisign.PrivateKey{}, fmt.Errorf("manifests: signing key %s is password-protected; create one without a password (drepo keygen, or minisign -G -W): %w", path, ErrInvalid)
	}
	var k minisign.PrivateKey
	if err := k.UnmarshalText(b); err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("manifests: signing key %s: %v: %w", path, err, ErrInvalid)
	}
	return k, nil
}

// LoadPublicKey reads a minisign public key file (with or without its comment line).
func LoadPublicKey(path string) (minisign.PublicKey, error) {
	b, err := ReadSmallFile(path, MaxKeyFile)
	if err != nil {
		return minisign.PublicKey{}, fmt.Errorf("manifests: public key: %w", err)
	}
	var k minisign.PublicKey
	if err := k.UnmarshalText(bytes.TrimSpace(b)); err != nil {
		return minisign.PublicKey{}, fmt.Errorf("manifests: public key %s: %v: %w", path, err, ErrInvalid)
	}
	return k, nil
}

// Sign returns a detached minisign signature of doc (prehashed, as minisign ≥ 0.11 writes by
// default), so `minisign -Vm index.json -p key.pub` accepts it.
func Sign(key minisign.PrivateKey, doc []byte, now time.Time) []byte {
	r := minisign.NewReader(bytes.NewReader(doc))
	_, _ = io.Copy(io.Discard, r) // the Reader hashes what passes through it; reading memory cannot fail
	trusted := "timestamp:" + strconv.FormatInt(now.Unix(), 10) + "\tfile:index.json\thashed"
	untrusted := "signature from drepo secret key " + fmt.Sprintf("%X", key.ID())
	return r.SignWithComments(key, trusted, untrusted)
}

// Verify checks a detached signature of doc against the trusted keys (both the prehashed and
// the legacy minisign algorithm are accepted, as minisign itself does).
func Verify(keys []minisign.PublicKey, doc, sig []byte) error {
	_, err := VerifyKey(keys, doc, sig)
	return err
}

// VerifyKey is Verify, returning the trusted key that made the signature (a device keeps
// its rollback state per key).
func VerifyKey(keys []minisign.PublicKey, doc, sig []byte) (minisign.PublicKey, error) {
	if len(sig) > MaxSignatureSize {
		return minisign.PublicKey{}, fmt.Errorf("manifests: signature: %d bytes, limit %d: %w", len(sig), MaxSignatureSize, ErrTooLarge)
	}
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return minisign.PublicKey{}, fmt.Errorf("manifests: signature: %v: %w", err, ErrBadSignature)
	}
	known := false
	var trusted []string
	for _, k := range keys {
		if k.ID() == s.KeyID {
			known = true
			if minisign.Verify(k, doc, sig) {
				return k, nil
			}
		}
		trusted = append(trusted, fmt.Sprintf("%016X", k.ID()))
	}
	if !known {
		return minisign.PublicKey{}, fmt.Errorf("manifests: signed by key %016X, which is not in trusted_keys (trusted: %s): %w", s.KeyID, strings.Join(trusted, ", "), ErrBadSignature)
	}
	return minisign.PublicKey{}, fmt.Errorf("manifests: the signature by key %016X does not match the document (altered after signing): %w", s.KeyID, ErrBadSignature)
}

// VerifyIndex checks the signature of an index document, then decodes it strictly.
func VerifyIndex(keys []minisign.PublicKey, doc, sig []byte) (*Index, error) {
	if err := Verify(keys, doc, sig); err != nil {
		return nil, err
	}
	return DecodeIndex(doc)
}

// Package sealed encrypts the answer of a RecoveryPointQuery to the key of
// whoever asked (api/v1alpha1.QueryKeyAlgorithm): the requester makes a
// one-time X25519 key pair and puts the public half in the query; the
// extension seals the answer with an ephemeral X25519 key, HKDF-SHA256 and
// AES-256-GCM. Any identity that may read queries sees the sealed bytes
// only, so one vault cannot read the answers another vault asked for.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/arca-backup/arca/api/v1alpha1"
)

const info = "arca.io recovery point query answer v1"

// Key is a requester's one-time private key.
type Key struct{ k *ecdh.PrivateKey }

// NewKey makes a key pair for one query.
func NewKey() (*Key, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Key{k: k}, nil
}

// Public is the public key as spec.recipientKey wants it (base64).
func (k *Key) Public() string { return base64.StdEncoding.EncodeToString(k.k.PublicKey().Bytes()) }

func aead(shared, ephemeral, recipient []byte) (cipher.AEAD, error) {
	salt := append(append([]byte{}, ephemeral...), recipient...)
	key, err := hkdf.Key(sha256.New, shared, salt, info, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ParsePublic checks a spec.recipientKey.
func ParsePublic(s string) (*ecdh.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("recipientKey is not base64: %w", err)
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("recipientKey is not an X25519 public key (32 bytes): %w", err)
	}
	return pub, nil
}

// Seal encrypts plaintext to the recipient's public key (base64).
func Seal(recipient string, plaintext []byte) (*v1alpha1.SealedResult, error) {
	pub, err := ParsePublic(recipient)
	if err != nil {
		return nil, err
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, err
	}
	a, err := aead(shared, eph.PublicKey().Bytes(), pub.Bytes())
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &v1alpha1.SealedResult{Algorithm: v1alpha1.QueryKeyAlgorithm, EphemeralKey: eph.PublicKey().Bytes(), Nonce: nonce,
		Ciphertext: a.Seal(nil, nonce, plaintext, []byte(v1alpha1.QueryKeyAlgorithm))}, nil
}

// ErrNotForThisKey: the answer was sealed to another key, or altered.
var ErrNotForThisKey = errors.New("the sealed answer does not open with this key (sealed to another key, or altered)")

// Open decrypts an answer sealed to k.
func (k *Key) Open(s *v1alpha1.SealedResult) ([]byte, error) {
	if s.Algorithm != v1alpha1.QueryKeyAlgorithm {
		return nil, fmt.Errorf("sealed answer: algorithm %q, want %q", s.Algorithm, v1alpha1.QueryKeyAlgorithm)
	}
	eph, err := ecdh.X25519().NewPublicKey(s.EphemeralKey)
	if err != nil {
		return nil, fmt.Errorf("sealed answer: ephemeral key: %w", err)
	}
	shared, err := k.k.ECDH(eph)
	if err != nil {
		return nil, ErrNotForThisKey
	}
	a, err := aead(shared, s.EphemeralKey, k.k.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != a.NonceSize() {
		return nil, fmt.Errorf("sealed answer: nonce of %d bytes, want %d", len(s.Nonce), a.NonceSize())
	}
	out, err := a.Open(nil, s.Nonce, s.Ciphertext, []byte(v1alpha1.QueryKeyAlgorithm))
	if err != nil {
		return nil, ErrNotForThisKey
	}
	return out, nil
}

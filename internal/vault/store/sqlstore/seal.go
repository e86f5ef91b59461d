package sqlstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/arca-backup/arca/internal/vault/store"
)

// Cluster credentials (the tokens the vault holds for clusters registered
// through trusted access) are sealed at rest with XChaCha20-Poly1305 under
// a key that is not in the database: the vault's operator gives it to
// every replica (arca vault serve --credential-key-file, or the
// ARCA_VAULT_CREDENTIAL_KEY environment variable). A copy of the database
// alone (a backup, a read-only role, SQL injection elsewhere) does not
// reveal the tokens. The cluster's name is the associated data, so a
// sealed token copied into another cluster's row does not open.
//
// The database keeps the key's fingerprint (settings row
// credential-key-id), so that a replica started with another key is
// refused at start, before it could write tokens nobody else can open.

// CredentialKeySize is the key's length: 32 bytes (256 bits).
const CredentialKeySize = chacha20poly1305.KeySize

// sealedPrefix marks a sealed token; a token without it is a plaintext
// one written before sealing existed (sealed by UseCredentialKey).
const sealedPrefix = "sealed:v1:"

const keyIDSetting = "credential-key-id"

// CredentialKeyID is the fingerprint of a key that the database records:
// not the key, and not usable to find it.
func CredentialKeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("arca vault credential key id\x00"), key...))
	return hex.EncodeToString(sum[:8])
}

// UseCredentialKey makes the store seal cluster credentials with key:
// it checks the key against the fingerprint the database holds (recording
// it on first use), then seals every credential still stored in plaintext.
// A different key than the one the credentials were sealed with is
// refused with an error naming both fingerprints.
func (s *Store) UseCredentialKey(ctx context.Context, key []byte) error {
	if len(key) != CredentialKeySize {
		return fmt.Errorf("%w: want %d bytes, got %d", store.ErrCredentialKey, CredentialKeySize, len(key))
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return err
	}
	id := CredentialKeyID(key)
	return s.inLockedTx(ctx, func(tx *sql.Tx) error {
		var have string
		err := tx.QueryRowContext(ctx, s.q(`SELECT value FROM settings WHERE name = $1`), keyIDSetting).Scan(&have)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO settings (name, value) VALUES ($1, $2)`), keyIDSetting, id); err != nil {
				return err
			}
		case err != nil:
			return err
		case have != id:
			return fmt.Errorf("%w: the cluster credentials in this database are sealed with the key whose fingerprint is %s, but this vault was given the key %s: start every replica with the same --credential-key-file (or ARCA_VAULT_CREDENTIAL_KEY)",
				store.ErrCredentialKey, have, id)
		}
		s.aead = aead
		// Seal what an older vault (or one without a key) stored in
		// plaintext, in this transaction: all or nothing.
		rows, err := tx.QueryContext(ctx, `SELECT name, token FROM clusters`)
		if err != nil {
			return err
		}
		plain := map[string]string{}
		for rows.Next() {
			var name, tok string
			if err := rows.Scan(&name, &tok); err != nil {
				rows.Close()
				return err
			}
			if !strings.HasPrefix(tok, sealedPrefix) {
				plain[name] = tok
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for name, tok := range plain {
			sealed, err := s.seal(name, tok)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE clusters SET token = $1 WHERE name = $2`), sealed, name); err != nil {
				return fmt.Errorf("seal the credential of cluster %q: %w", name, err)
			}
		}
		return nil
	})
}

// seal returns the stored form of cluster name's token: sealed when the
// store has a key, as it is otherwise.
func (s *Store) seal(name, token string) (string, error) {
	if s.aead == nil || token == "" {
		return token, nil
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(token)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := s.aead.Seal(nonce, nonce, []byte(token), []byte("cluster/"+name))
	return sealedPrefix + base64.StdEncoding.EncodeToString(out), nil
}

// open returns cluster name's token from its stored form.
func (s *Store) open(name, stored string) (string, error) {
	b64, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return stored, nil
	}
	if s.aead == nil {
		return "", fmt.Errorf("%w: the credential of cluster %q is sealed and this vault has no credential key: start it with --credential-key-file (or ARCA_VAULT_CREDENTIAL_KEY) naming the key it was sealed with",
			store.ErrCredentialKey, name)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", fmt.Errorf("%w: the sealed credential of cluster %q is damaged; re-enable trusted access (arca trusted-access enable)", store.ErrCredentialKey, name)
	}
	pt, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte("cluster/"+name))
	if err != nil {
		return "", fmt.Errorf("%w: the credential of cluster %q does not open with this vault's key (another key, or a damaged or moved row); start the vault with the key it was sealed with, or re-enable trusted access (arca trusted-access enable)",
			store.ErrCredentialKey, name)
	}
	return string(pt), nil
}

// ParseCredentialKey decodes a key as written in a key file or the
// environment: 32 bytes in standard base64, surrounding space ignored.
func ParseCredentialKey(text string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(k) != CredentialKeySize {
		return nil, fmt.Errorf("%w: want %d random bytes in base64 (44 characters; create one with: head -c 32 /dev/urandom | base64)", store.ErrCredentialKey, CredentialKeySize)
	}
	return k, nil
}

// NewCredentialKey returns a fresh random key in its text form.
func NewCredentialKey() string {
	k := make([]byte, CredentialKeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.StdEncoding.EncodeToString(k)
}

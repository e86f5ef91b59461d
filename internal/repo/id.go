// Package repo implements Arca's backup repository: a content-addressed,
// deduplicated, compressed and encrypted store of blobs, trees and
// recovery-point manifests on top of a storage.Backend.
//
// The on-disk format is specified in docs/repository-format.md; this package
// and that document are kept in sync. Layering: storage.Backend (bytes in
// named files) → crypto envelope (this package, crypto.go) → packs and index
// (blobs by ID) → trees and manifests (recovery points).
package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"lukechampine.com/blake3"
)

// ID names blobs (SHA-256 of the plaintext) and files (SHA-256 of the stored
// bytes).
type ID [32]byte

// ParseID parses the 64-character lower- or upper-case hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("invalid ID %q: want %d hex characters", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("invalid ID %q: %w", s, err)
	}
	return id, nil
}

// Hash returns the SHA-256 of data as an ID.
func Hash(data []byte) ID { return sha256.Sum256(data) }

// packID names a pack by its bytes: BLAKE3-256 from format v3 on (twice
// SHA-256's speed on this hardware class; every byte the mover stores is
// hashed once more for its pack's name), SHA-256 before
// (docs/repository-format.md §6). Blob IDs and the names of other files
// stay SHA-256 in every version.
func (r *Repository) packID(data []byte) ID {
	if r.cfg.Version >= 3 {
		return blake3.Sum256(data)
	}
	return sha256.Sum256(data)
}

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex characters, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsNull reports whether id is the zero ID.
func (id ID) IsNull() bool { return id == ID{} }

// MarshalText encodes the ID as hex (used by JSON).
func (id ID) MarshalText() ([]byte, error) {
	b := make([]byte, 2*len(id))
	hex.Encode(b, id[:])
	return b, nil
}

// UnmarshalText parses the hex form.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

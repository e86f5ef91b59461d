package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/scrypt"

	"github.com/arca-backup/arca/internal/storage"
)

// KDFParams are the scrypt parameters of one key file.
type KDFParams struct {
	N int `json:"n"`
	R int `json:"r"`
	P int `json:"p"`
}

// DefaultKDF costs about 100 ms and 32 MiB on a current CPU.
var DefaultKDF = KDFParams{N: 1 << 15, R: 8, P: 1}

// keyFile is the JSON stored (unencrypted) in keys/<id>.
type keyFile struct {
	Version  int       `json:"version"`
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname,omitempty"`
	KDF      string    `json:"kdf"`
	N        int       `json:"n"`
	R        int       `json:"r"`
	P        int       `json:"p"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"` // envelope of masterKeyJSON under the password key
}

type masterKeyJSON struct {
	Version int    `json:"version"`
	Key     []byte `json:"key"` // 32 bytes
}

const keyFileVersion = 1

// maximal KDF cost accepted from a key file (protects Open from a planted key
// file that would take forever or exhaust memory: the extension runs with a
// 512 MiB limit). The default (N=2^15, r=8, p=1: 32 MiB) is 4 times below
// the memory cap and 16 times below the time cap.
const (
	maxScryptN   = 1 << 20
	maxScryptRP  = 1 << 10
	maxScryptNR  = 1 << 20 // 128·N·r bytes: 128 MiB of memory
	maxScryptNRP = 1 << 22 // time ∝ N·r·p: about 1.6 s
)

// ErrKDFTooCostly: a key file asks for scrypt parameters over the caps.
var ErrKDFTooCostly = errors.New("scrypt parameters over this version's limit")

func (p KDFParams) validate() error {
	if p.N < 2 || p.N&(p.N-1) != 0 {
		return fmt.Errorf("scrypt N=%d: must be a power of two", p.N)
	}
	if p.R < 1 || p.P < 1 {
		return fmt.Errorf("scrypt r=%d p=%d: must be at least 1", p.R, p.P)
	}
	// scrypt needs 128·N·r bytes and time proportional to N·r·p; the
	// products are checked in 64 bits before anything is allocated.
	nr, nrp := int64(p.N)*int64(p.R), int64(p.N)*int64(p.R)*int64(p.P)
	if p.N > maxScryptN || p.R*p.P > maxScryptRP || p.R > maxScryptRP || p.P > maxScryptRP || nr > maxScryptNR || nrp > maxScryptNRP {
		return fmt.Errorf("%w: N=%d r=%d p=%d would need %d MiB of memory (at most %d) and %dx the default time (at most %d)",
			ErrKDFTooCostly, p.N, p.R, p.P, min(nr, 1<<40)*128>>20, maxScryptNR*128>>20,
			min(nrp, 1<<50)/(int64(DefaultKDF.N)*int64(DefaultKDF.R)*int64(DefaultKDF.P)),
			maxScryptNRP/(DefaultKDF.N*DefaultKDF.R*DefaultKDF.P))
	}
	return nil
}

func deriveKey(password string, salt []byte, p KDFParams) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return scrypt.Key([]byte(password), salt, p.N, p.R, p.P, keySize)
}

// newKeyFile wraps master under password.
func newKeyFile(master []byte, password string, p KDFParams, now time.Time) ([]byte, error) {
	salt := randomBytes(32)
	wk, err := deriveKey(password, salt, p)
	if err != nil {
		return nil, err
	}
	c, err := newCrypter(wk, false)
	if err != nil {
		return nil, err
	}
	mk, err := json.Marshal(masterKeyJSON{Version: keyFileVersion, Key: master})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	kf := keyFile{
		Version: keyFileVersion, Created: now.UTC(), Hostname: host,
		KDF: "scrypt", N: p.N, R: p.R, P: p.P, Salt: salt,
		Data: c.seal(nil, mk, flagRaw, kindKey),
	}
	return json.Marshal(kf)
}

// decodeKeyFile parses a key file without deriving anything.
func decodeKeyFile(b []byte) (*keyFile, error) {
	var kf keyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&kf); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if kf.Version != keyFileVersion {
		return nil, fmt.Errorf("key file: unsupported version %d", kf.Version)
	}
	if kf.KDF != "scrypt" {
		return nil, fmt.Errorf("key file: unsupported kdf %q", kf.KDF)
	}
	if err := (KDFParams{kf.N, kf.R, kf.P}).validate(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if len(kf.Salt) < 16 {
		return nil, errors.New("key file: salt too short")
	}
	return &kf, nil
}

// unwrap returns the master key if password opens kf; errDecrypt otherwise.
func (kf *keyFile) unwrap(password string) ([]byte, error) {
	wk, err := deriveKey(password, kf.Salt, KDFParams{kf.N, kf.R, kf.P})
	if err != nil {
		return nil, err
	}
	c, err := newCrypter(wk, false)
	if err != nil {
		return nil, err
	}
	pt, err := c.open(nil, kf.Data, 0, kindKey)
	if err != nil {
		return nil, err
	}
	var mk masterKeyJSON
	if err := json.Unmarshal(pt, &mk); err != nil {
		return nil, fmt.Errorf("key file: master key: %w", err)
	}
	if len(mk.Key) != keySize {
		return nil, fmt.Errorf("key file: master key has %d bytes", len(mk.Key))
	}
	return mk.Key, nil
}

// KeyInfo describes one key file.
type KeyInfo struct {
	ID       ID        `json:"id"`
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname,omitempty"`
	Current  bool      `json:"current"` // the key this Repository was opened with
}

// ListKeys lists the key files.
func (r *Repository) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := r.be.List(ctx, storage.KeyFile, func(fi storage.FileInfo) error {
		id, err := ParseID(fi.Name)
		if err != nil {
			return nil // not ours
		}
		b, err := storage.ReadAll(ctx, r.be, storage.Handle{Type: storage.KeyFile, Name: fi.Name})
		if err != nil {
			return fmt.Errorf("read key %s: %w", fi.Name, err)
		}
		kf, err := decodeKeyFile(b)
		if err != nil {
			out = append(out, KeyInfo{ID: id, Current: id == r.keyID})
			return nil
		}
		out = append(out, KeyInfo{ID: id, Created: kf.Created, Hostname: kf.Hostname, Current: id == r.keyID})
		return nil
	})
	return out, err
}

// AddKey stores a new key file wrapping the master key under password.
func (r *Repository) AddKey(ctx context.Context, password string) (ID, error) {
	b, err := newKeyFile(r.master, password, r.opts.kdf, r.opts.clock.Now())
	if err != nil {
		return ID{}, err
	}
	id := Hash(b)
	if err := r.be.Save(ctx, storage.Handle{Type: storage.KeyFile, Name: id.String()}, int64(len(b)), bytes.NewReader(b)); err != nil {
		return ID{}, fmt.Errorf("save key: %w", err)
	}
	return id, nil
}

// ErrLastKey is returned when removing a key would leave none.
var ErrLastKey = errors.New("refusing to remove the last key of the repository")

// ErrCurrentKey is returned when removing the key this Repository was opened with.
var ErrCurrentKey = errors.New("refusing to remove the key in use; open the repository with another key first")

// RemoveKey removes a key file. It never removes the last key, nor the key
// the repository was opened with.
func (r *Repository) RemoveKey(ctx context.Context, id ID) error {
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, k := range keys {
		if k.ID == id {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("key %s: %w", id.Short(), storage.ErrNotExist)
	}
	if len(keys) <= 1 {
		return ErrLastKey
	}
	if id == r.keyID {
		return ErrCurrentKey
	}
	return r.be.Remove(ctx, storage.Handle{Type: storage.KeyFile, Name: id.String()})
}

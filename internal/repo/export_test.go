package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/arca-backup/arca/internal/storage"
)

// FrozenConfigIsBound reports (nil) whether the config at be opens, with the
// master key of password's key file, as a format-v2 envelope bound to the
// config type, and only as that. For the frozen-repository tests.
func FrozenConfigIsBound(ctx context.Context, be storage.Backend, password string) error {
	r, err := Open(ctx, be, password)
	if err != nil {
		return err
	}
	sealed, err := storage.ReadAll(ctx, be, configHandle)
	if err != nil {
		return err
	}
	bound, _ := newCrypter(r.master, true)
	unbound, _ := newCrypter(r.master, false)
	if _, err := bound.open(nil, sealed, 0, kindConfig); err != nil {
		return fmt.Errorf("config does not open as a bound config envelope: %w", err)
	}
	if _, err := bound.open(nil, sealed, 0, kindManifest); !errors.Is(err, errDecrypt) {
		return fmt.Errorf("config opens as a manifest envelope: %v", err)
	}
	if _, err := unbound.open(nil, sealed, 0, kindConfig); !errors.Is(err, errDecrypt) {
		return fmt.Errorf("config opens as an unbound (v1) envelope: %v", err)
	}
	return nil
}

// BlobFlags counts, per blob type, the envelope flags (§4: 0 raw, 1 zstd,
// 2 S2) of every blob the repository's index knows. For the frozen v3 test:
// what the format says a writer stores is what is stored.
func BlobFlags(ctx context.Context, r *Repository) (map[BlobType]map[byte]int, error) {
	idx := r.idx.Load()
	idx.mu.RLock()
	locs := make(map[ID]blobLoc, len(idx.blobs))
	for id, l := range idx.blobs {
		locs[id] = l
	}
	packs := append([]ID(nil), idx.packs...)
	idx.mu.RUnlock()
	out := map[BlobType]map[byte]int{}
	for id, l := range locs {
		h := storage.Handle{Type: storage.PackFile, Name: packs[l.pack].String()}
		sealed, err := readRange(ctx, r.be, h, int64(l.length), int64(l.offset))
		if err != nil {
			return nil, err
		}
		pt, err := r.crypt.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], r.crypt.ad(kindBlob))
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", id.Short(), err)
		}
		if out[l.typ] == nil {
			out[l.typ] = map[byte]int{}
		}
		out[l.typ][pt[0]]++
	}
	return out, nil
}

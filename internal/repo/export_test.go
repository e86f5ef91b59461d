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

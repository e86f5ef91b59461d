package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
	"github.com/arca-backup/arca/internal/vault/store/storetest"
)

func open(t *testing.T, path string) *sqlstore.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func(*testing.T) store.Store) {
		path := filepath.Join(t.TempDir(), "vault.db")
		return open(t, path), func(t *testing.T) store.Store { return open(t, path) }
	})
}

func TestMigrationsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	open(t, path)
	s := open(t, path) // second start applies nothing new
	got, err := s.AppliedMigrations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != sqlstore.SchemaVersion() {
		t.Fatalf("applied %v, want versions 1..%d once each", got, sqlstore.SchemaVersion())
	}
	var mode string
	if err := s.DB().QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q (%v), want wal", mode, err)
	}
}

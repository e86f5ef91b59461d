package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
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

// TestMigrationGrantsExistingTokenHoldersOwner: a vault upgraded from
// schema 1 (no role-based access, every token all-powerful) keeps its
// token holders' power as Owner at /.
func TestMigrationGrantsExistingTokenHoldersOwner(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vault.db")
	s := open(t, path)
	for _, tok := range []*store.Token{{Name: "a", Hash: "h1", Principal: "admin"}, {Name: "b", Hash: "h2", Principal: "admin"}, {Name: "c", Hash: "h3", Principal: "ci"}} {
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	// Back to schema 1.
	for _, q := range []string{`DROP TABLE role_assignments`, `DROP TABLE clusters`, `DELETE FROM schema_migrations WHERE version = 2`} {
		if _, err := s.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, path)
	as, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[0].Principal != "admin" || as[1].Principal != "ci" || as[0].Role != "Owner" || as[0].Scope != "/" {
		t.Fatalf("assignments after migration: %+v", as)
	}
}

// TestJobsOfAnInstanceUseTheirIndex: listing one instance's newest jobs
// (ListJobs with Vault, Instance and Limit) reads index jobs_instance
// (migration 4) instead of walking every job of the vault.
func TestJobsOfAnInstanceUseTheirIndex(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "vault.db"))
	rows, err := s.DB().Query(`EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE vault = ?1 AND instance = ?2 ORDER BY created_at DESC, id DESC LIMIT 20`, "v", "i")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); !strings.Contains(p, "INDEX jobs_instance") || strings.Contains(p, "TEMP B-TREE") {
		t.Fatalf("plan of the jobs of an instance: %s; want index jobs_instance and no sort", p)
	}
}

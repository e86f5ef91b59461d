package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/postgres"
	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
	"github.com/arca-backup/arca/internal/vault/store/storetest"
)

var dbSeq atomic.Int64

// freshDatabase creates an empty database on the server and returns its DSN.
func freshDatabase(t *testing.T, serverDSN string) string {
	t.Helper()
	admin, err := sql.Open("pgx", serverDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("arca_store_%d", dbSeq.Add(1))
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(serverDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func open(t *testing.T, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	t.Run("Suite", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) (store.Store, func(*testing.T) store.Store) {
			dsn := freshDatabase(t, pg.DSN())
			return open(t, dsn), func(t *testing.T) store.Store { return open(t, dsn) }
		})
	})
	t.Run("JobsOfAnInstanceUseTheirIndex", func(t *testing.T) {
		// The planner's choice on an empty table is a sequential scan;
		// with those off it shows which index serves the query: the
		// instance's own (migration 4), read in order, no sort.
		s := open(t, freshDatabase(t, pg.DSN()))
		ctx := context.Background()
		conn, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SET enable_seqscan = off`); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.QueryContext(ctx, `EXPLAIN SELECT id FROM jobs WHERE vault = $1 AND instance = $2 ORDER BY created_at DESC, id DESC LIMIT 20`, "v", "i")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if p := strings.Join(plan, "\n"); !strings.Contains(p, "jobs_instance") || strings.Contains(p, "Sort") {
			t.Fatalf("plan of the jobs of an instance:\n%s\nwant index jobs_instance and no sort", p)
		}
	})
	t.Run("ConcurrentMigrations", func(t *testing.T) {
		// Replicas starting together: the advisory lock makes them apply
		// the schema once, none failing on "relation already exists".
		dsn := freshDatabase(t, pg.DSN())
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := postgres.Open(context.Background(), dsn, nil)
				if err != nil {
					errs <- err
					return
				}
				s.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("replica start: %v", err)
		}
		s := open(t, dsn)
		got, err := s.AppliedMigrations(context.Background())
		if err != nil || len(got) != sqlstore.SchemaVersion() {
			t.Fatalf("applied %v (%v), want each of 1..%d once", got, err, sqlstore.SchemaVersion())
		}
	})
}

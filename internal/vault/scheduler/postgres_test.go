package scheduler_test

import (
	"database/sql"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/postgres"
)

var pgSeq atomic.Int64

// TestSchedulerPostgres runs the scheduler tests against PostgreSQL: the
// replica test there has two schedulers, each with its own connection
// pool, racing on row-level claims.
func TestSchedulerPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	runAll(t, func(t *testing.T) opener {
		admin, err := sql.Open("pgx", pg.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		name := fmt.Sprintf("arca_sched_%d", pgSeq.Add(1))
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(pg.DSN())
		u.Path = "/" + name
		dsn := u.String()
		return func(t *testing.T) store.Store {
			s, err := postgres.Open(ctx, dsn, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}

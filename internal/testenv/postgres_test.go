package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/arca-backup/arca/internal/testenv"
)

func TestPostgresSmoke(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatalf("connect %s: %v", pg.DSN(), err)
	}
	defer conn.Close(ctx)
	var version string
	var sum int
	if err := conn.QueryRow(ctx, "SELECT version(), 40 + 2").Scan(&version, &sum); err != nil {
		t.Fatalf("query: %v", err)
	}
	if sum != 42 {
		t.Fatalf("40 + 2 = %d", sum)
	}
	t.Logf("connected: %s", version)
	// A second database on the same server, for tests that need isolation.
	dsn := pg.CreateDatabase(t, "arca_smoke")
	conn2, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn2.Close(ctx)
	if _, err := conn2.Exec(ctx, "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("exec: %v", err)
	}
}

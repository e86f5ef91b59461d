// Package postgres is the store for vaults with several replicas: PostgreSQL
// through pgx/v5 (its database/sql adapter, so the queries are shared with
// SQLite in package sqlstore).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
)

// Open connects to dsn (postgres://…) and applies pending migrations.
func Open(ctx context.Context, dsn string, now func() time.Time) (*sqlstore.Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres DSN: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	s, err := sqlstore.New(ctx, db, Dialect, now)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

// migrationLockKey is an arbitrary constant naming the advisory lock that
// serialises migrations across replicas ("arca" in ASCII).
const migrationLockKey = 0x61726361

// Dialect is PostgreSQL's: $N parameters as written, SQLSTATE 23505 for
// unique violations, a transaction-scoped advisory lock around migrations.
var Dialect = sqlstore.Dialect{
	Name: "postgres",
	IsUnique: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
	MigrationLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLockKey),
}

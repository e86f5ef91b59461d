// Package sqlite is the embedded store: one SQLite file in WAL mode, through
// the pure-Go modernc.org/sqlite driver (no cgo).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
)

// Open opens (creating if needed) the database file at path and applies
// pending migrations. now supplies record timestamps (nil: wall clock).
func Open(ctx context.Context, path string, now func() time.Time) (*sqlstore.Store, error) {
	// busy_timeout makes concurrent writers (two schedulers, a second
	// process) wait instead of failing; _txlock=immediate takes the write
	// lock at BEGIN so read-then-write transactions cannot deadlock.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	s, err := sqlstore.New(ctx, db, Dialect, now)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return s, nil
}

// Dialect is SQLite's: ?N parameters, extended result codes for unique
// violations, and no migration lock (BEGIN IMMEDIATE already serialises).
var Dialect = sqlstore.Dialect{
	Name:   "sqlite",
	Rebind: sqlstore.RebindQuestion,
	IsUnique: func(err error) bool {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			return false
		}
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
}

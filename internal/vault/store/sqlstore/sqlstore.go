// Package sqlstore implements store.Store over database/sql. The SQLite and
// PostgreSQL packages supply a Dialect (placeholder style, error
// classification, migration lock) and share every query and the schema:
// the DDL uses only types and syntax both engines accept (TEXT, BIGINT,
// ON CONFLICT … DO NOTHING, RETURNING is not needed).
//
// Times are stored as BIGINT microseconds since the Unix epoch, UTC. That
// keeps comparisons (due triggers) identical on both engines and matches
// PostgreSQL's timestamp precision.
package sqlstore

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Dialect is what differs between engines.
type Dialect struct {
	Name string
	// Rebind turns the $1, $2 … placeholders the queries are written with
	// into the engine's own; nil keeps them.
	Rebind func(query string) string
	// IsUnique reports whether err is a unique-constraint violation.
	IsUnique func(err error) bool
	// MigrationLock, when set, runs first in the migration transaction so
	// that replicas starting together apply migrations one at a time.
	MigrationLock string
}

// Store is the database/sql implementation of store.Store.
type Store struct {
	db  *sql.DB
	d   Dialect
	now func() time.Time
	// aead seals cluster credentials (UseCredentialKey); nil: they are
	// stored as given, and a sealed one cannot be read.
	aead cipher.AEAD
}

var _ store.Store = (*Store)(nil)

// New wraps an open database, applying pending migrations. now supplies
// record timestamps (nil: the wall clock).
func New(ctx context.Context, db *sql.DB, d Dialect, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{db: db, d: d, now: now}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// DB exposes the underlying handle (tests, diagnostics).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) q(query string) string {
	if s.d.Rebind == nil {
		return query
	}
	return s.d.Rebind(query)
}

func (s *Store) exec(ctx context.Context, ex execer, query string, args ...any) (int64, error) {
	res, err := ex.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		if s.d.IsUnique != nil && s.d.IsUnique(err) {
			return 0, store.ErrAlreadyExists
		}
		return 0, err
	}
	return res.RowsAffected()
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// RebindQuestion turns $N into ?N (SQLite's numbered parameters).
func RebindQuestion(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	for i := 0; i < len(q); i++ {
		if q[i] == '$' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9' {
			b.WriteByte('?')
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromNull(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Store) stamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

func newID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func rawText(r json.RawMessage) string {
	if len(r) == 0 {
		return ""
	}
	return string(r)
}

func textRaw(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

// afterZeroRows decides what a write that matched no row means: the record
// is missing, or its version moved on.
func (s *Store) afterZeroRows(ctx context.Context, exists string, args []any, kind, key string, version int64) error {
	var one int
	err := s.db.QueryRowContext(ctx, s.q(exists), args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s %q: %w", kind, key, store.ErrNotFound)
	}
	if err != nil {
		return err
	}
	return &store.ConflictError{Kind: kind, Key: key, Expected: version}
}

func notFound(err error, kind, key string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s %q: %w", kind, key, store.ErrNotFound)
	}
	return err
}

func exists(err error, kind, key string) error {
	if errors.Is(err, store.ErrAlreadyExists) {
		return fmt.Errorf("%s %q: %w", kind, key, store.ErrAlreadyExists)
	}
	return err
}

// deleteVersioned deletes one row, honouring an expected version (0: any).
func (s *Store) deleteVersioned(ctx context.Context, table, where string, keyArgs []any, kind, key string, version int64) error {
	q := "DELETE FROM " + table + " WHERE " + where
	args := append([]any{}, keyArgs...)
	if version != 0 {
		q += fmt.Sprintf(" AND version = $%d", len(args)+1)
		args = append(args, version)
	}
	n, err := s.exec(ctx, s.db, q, args...)
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", kind, key, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, "SELECT 1 FROM "+table+" WHERE "+where, keyArgs, kind, key, version)
	}
	return nil
}

// deleteCascading deletes one row like deleteVersioned and, in the same
// transaction, the role assignments at scope and below it.
func (s *Store) deleteCascading(ctx context.Context, table, where string, keyArgs []any, kind, key string, version int64, scope string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	q := "DELETE FROM " + table + " WHERE " + where
	args := append([]any{}, keyArgs...)
	if version != 0 {
		q += fmt.Sprintf(" AND version = $%d", len(args)+1)
		args = append(args, version)
	}
	n, err := s.exec(ctx, tx, q, args...)
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", kind, key, err)
	}
	if n == 0 {
		_ = tx.Rollback()
		return s.afterZeroRows(ctx, "SELECT 1 FROM "+table+" WHERE "+where, keyArgs, kind, key, version)
	}
	// Scope paths are segments: /vaults/a encloses /vaults/a/… but not
	// /vaults/ab.
	if _, err := s.exec(ctx, tx, `DELETE FROM role_assignments WHERE scope = $1 OR substr(scope, 1, $2) = $3`,
		scope, len(scope)+1, scope+"/"); err != nil {
		return fmt.Errorf("delete role assignments at %s: %w", scope, err)
	}
	return tx.Commit()
}

// ---- vaults ----

func (s *Store) CreateVault(ctx context.Context, v *store.Vault) error {
	now := s.stamp()
	if v.Immutability == "" {
		v.Immutability = store.ImmutabilityDisabled
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO vaults (`+vaultCols+`) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)`,
		v.Name, v.Description, v.SoftDeleteDays, v.Immutability, boolInt(v.ResourceGuard), micros(now))
	if err != nil {
		return exists(err, "vault", v.Name)
	}
	v.Version, v.CreatedAt, v.UpdatedAt = 1, now, now
	return nil
}

const vaultCols = `name, description, soft_delete_days, immutability, resource_guard, version, created_at, updated_at`

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func scanVault(sc interface{ Scan(...any) error }) (*store.Vault, error) {
	var v store.Vault
	var c, u, guard int64
	if err := sc.Scan(&v.Name, &v.Description, &v.SoftDeleteDays, &v.Immutability, &guard, &v.Version, &c, &u); err != nil {
		return nil, err
	}
	v.ResourceGuard = guard != 0
	v.CreatedAt, v.UpdatedAt = fromMicros(c), fromMicros(u)
	return &v, nil
}

func (s *Store) GetVault(ctx context.Context, name string) (*store.Vault, error) {
	v, err := scanVault(s.db.QueryRowContext(ctx, s.q(`SELECT `+vaultCols+` FROM vaults WHERE name = $1`), name))
	return v, notFound(err, "vault", name)
}

func (s *Store) ListVaults(ctx context.Context) ([]*store.Vault, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+vaultCols+` FROM vaults ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanVault)
}

func (s *Store) UpdateVault(ctx context.Context, v *store.Vault) error {
	now := s.stamp()
	n, err := s.exec(ctx, s.db, `UPDATE vaults SET description = $1, soft_delete_days = $5, immutability = $6, resource_guard = $7,
		version = version + 1, updated_at = $2 WHERE name = $3 AND version = $4`,
		v.Description, micros(now), v.Name, v.Version, v.SoftDeleteDays, v.Immutability, boolInt(v.ResourceGuard))
	if err != nil {
		return fmt.Errorf("update vault %q: %w", v.Name, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM vaults WHERE name = $1`, []any{v.Name}, "vault", v.Name, v.Version)
	}
	v.Version++
	v.UpdatedAt = now
	return nil
}

func (s *Store) DeleteVault(ctx context.Context, name string, version int64) error {
	return s.deleteCascading(ctx, "vaults", "name = $1", []any{name}, "vault", name, version, rbac.VaultScope(name))
}

// ---- policies ----

const policyCols = `vault, name, schedule, retention, version, created_at, updated_at, copy_to, verify`

func scanPolicy(sc interface{ Scan(...any) error }) (*store.Policy, error) {
	var p store.Policy
	var ret string
	var c, u int64
	if err := sc.Scan(&p.Vault, &p.Name, &p.Schedule, &ret, &p.Version, &c, &u, &p.CopyTo, &p.Verify); err != nil {
		return nil, err
	}
	p.Retention = textRaw(ret)
	p.CreatedAt, p.UpdatedAt = fromMicros(c), fromMicros(u)
	return &p, nil
}

func (s *Store) CreatePolicy(ctx context.Context, p *store.Policy) error {
	now := s.stamp()
	_, err := s.exec(ctx, s.db, `INSERT INTO policies (`+policyCols+`) VALUES ($1, $2, $3, $4, 1, $5, $5, $6, $7)`,
		p.Vault, p.Name, p.Schedule, rawText(p.Retention), micros(now), p.CopyTo, p.Verify)
	if err != nil {
		return exists(err, "policy", p.Vault+"/"+p.Name)
	}
	p.Version, p.CreatedAt, p.UpdatedAt = 1, now, now
	return nil
}

func (s *Store) GetPolicy(ctx context.Context, vault, name string) (*store.Policy, error) {
	p, err := scanPolicy(s.db.QueryRowContext(ctx, s.q(`SELECT `+policyCols+` FROM policies WHERE vault = $1 AND name = $2`), vault, name))
	return p, notFound(err, "policy", vault+"/"+name)
}

func (s *Store) ListPolicies(ctx context.Context, vault string) ([]*store.Policy, error) {
	return s.ListPoliciesPage(ctx, vault, store.Page{})
}

func (s *Store) ListPoliciesPage(ctx context.Context, vault string, p store.Page) ([]*store.Policy, error) {
	q, args := paged(`SELECT `+policyCols+` FROM policies WHERE vault = $1`, []any{vault}, p)
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPolicy)
}

// paged adds a page's condition, the order by name and its limit to a
// query whose WHERE clause has len(args) parameters.
func paged(q string, args []any, p store.Page) (string, []any) {
	if p.After != "" {
		args = append(args, p.After)
		q += fmt.Sprintf(" AND name > $%d", len(args))
	}
	q += " ORDER BY name"
	if p.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", p.Limit)
	}
	return q, args
}

func (s *Store) UpdatePolicy(ctx context.Context, p *store.Policy) error {
	now := s.stamp()
	n, err := s.exec(ctx, s.db, `UPDATE policies SET schedule = $1, retention = $2, copy_to = $7, verify = $8, version = version + 1, updated_at = $3 WHERE vault = $4 AND name = $5 AND version = $6`,
		p.Schedule, rawText(p.Retention), micros(now), p.Vault, p.Name, p.Version, p.CopyTo, p.Verify)
	if err != nil {
		return fmt.Errorf("update policy %q: %w", p.Name, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM policies WHERE vault = $1 AND name = $2`, []any{p.Vault, p.Name}, "policy", p.Vault+"/"+p.Name, p.Version)
	}
	p.Version++
	p.UpdatedAt = now
	return nil
}

func (s *Store) DeletePolicy(ctx context.Context, vault, name string, version int64) error {
	return s.deleteCascading(ctx, "policies", "vault = $1 AND name = $2", []any{vault, name}, "policy", vault+"/"+name, version, rbac.PolicyScope(vault, name))
}

// ---- instances ----

const instanceCols = `vault, name, cluster, policy, config, storage_location, snapshot_location, protection_state, stop_mode, version, created_at, updated_at, deleted_at, purge_at, delete_instance`

func scanInstance(sc interface{ Scan(...any) error }) (*store.Instance, error) {
	var in store.Instance
	var cfg string
	var c, u, delInst int64
	var del, purge sql.NullInt64
	if err := sc.Scan(&in.Vault, &in.Name, &in.Cluster, &in.Policy, &cfg, &in.StorageLocation, &in.SnapshotLocation,
		&in.ProtectionState, &in.StopMode, &in.Version, &c, &u, &del, &purge, &delInst); err != nil {
		return nil, err
	}
	in.DeletedAt, in.PurgeAt, in.DeleteInstance = fromNull(del), fromNull(purge), delInst != 0
	in.Config = textRaw(cfg)
	in.CreatedAt, in.UpdatedAt = fromMicros(c), fromMicros(u)
	return &in, nil
}

func (s *Store) CreateInstance(ctx context.Context, in *store.Instance) error {
	now := s.stamp()
	if in.ProtectionState == "" {
		in.ProtectionState = store.ProtectionConfigured
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO instances (`+instanceCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10, NULL, NULL, 0)`,
		in.Vault, in.Name, in.Cluster, in.Policy, rawText(in.Config), in.StorageLocation, in.SnapshotLocation,
		in.ProtectionState, in.StopMode, micros(now))
	if err != nil {
		return exists(err, "instance", in.Vault+"/"+in.Name)
	}
	in.Version, in.CreatedAt, in.UpdatedAt = 1, now, now
	return nil
}

func (s *Store) GetInstance(ctx context.Context, vault, name string) (*store.Instance, error) {
	in, err := scanInstance(s.db.QueryRowContext(ctx, s.q(`SELECT `+instanceCols+` FROM instances WHERE vault = $1 AND name = $2`), vault, name))
	return in, notFound(err, "instance", vault+"/"+name)
}

func (s *Store) ListInstances(ctx context.Context, vault, policy string) ([]*store.Instance, error) {
	return s.ListInstancesPage(ctx, vault, policy, store.Page{})
}

func (s *Store) ListInstancesPage(ctx context.Context, vault, policy string, p store.Page) ([]*store.Instance, error) {
	q, args := `SELECT `+instanceCols+` FROM instances WHERE vault = $1`, []any{vault}
	if policy != "" {
		q += ` AND policy = $2`
		args = append(args, policy)
	}
	q, args = paged(q, args, p)
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanInstance)
}

func (s *Store) UpdateInstance(ctx context.Context, in *store.Instance) error {
	now := s.stamp()
	n, err := s.exec(ctx, s.db, `UPDATE instances SET cluster = $1, policy = $2, config = $3, storage_location = $4, snapshot_location = $5,
		protection_state = $6, stop_mode = $7, version = version + 1, updated_at = $8 WHERE vault = $9 AND name = $10 AND version = $11`,
		in.Cluster, in.Policy, rawText(in.Config), in.StorageLocation, in.SnapshotLocation, in.ProtectionState, in.StopMode,
		micros(now), in.Vault, in.Name, in.Version)
	if err != nil {
		return fmt.Errorf("update instance %q: %w", in.Name, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM instances WHERE vault = $1 AND name = $2`, []any{in.Vault, in.Name}, "instance", in.Vault+"/"+in.Name, in.Version)
	}
	in.Version++
	in.UpdatedAt = now
	return nil
}

func (s *Store) DeleteInstance(ctx context.Context, vault, name string, version int64) error {
	return s.deleteCascading(ctx, "instances", "vault = $1 AND name = $2", []any{vault, name}, "instance", vault+"/"+name, version, rbac.InstanceScope(vault, name))
}

// ---- recovery points ----

const rpCols = `vault, id, instance, job_id, taken_at, repo_id, tag, datastore, expires_at, state, items, bytes, version, created_at, updated_at, deleted_at, purge_at,
	op_rule, op_expires_at, op_state, vault_rule, vault_expires_at, vault_state, copies, stored_bytes`

func scanRP(sc interface{ Scan(...any) error }) (*store.RecoveryPoint, error) {
	var rp store.RecoveryPoint
	var taken, c, u int64
	var exp, del, purge, opExp, vExp sql.NullInt64
	var op, vt store.Tier
	var copies string
	if err := sc.Scan(&rp.Vault, &rp.ID, &rp.Instance, &rp.JobID, &taken, &rp.RepoID, &rp.Tag, &rp.Datastore, &exp,
		&rp.State, &rp.Items, &rp.Bytes, &rp.Version, &c, &u, &del, &purge,
		&op.Rule, &opExp, &op.State, &vt.Rule, &vExp, &vt.State, &copies, &rp.StoredBytes); err != nil {
		return nil, err
	}
	rp.DeletedAt, rp.PurgeAt = fromNull(del), fromNull(purge)
	rp.Time, rp.ExpiresAt = fromMicros(taken), fromNull(exp)
	rp.CreatedAt, rp.UpdatedAt = fromMicros(c), fromMicros(u)
	if op.State != "" {
		op.ExpiresAt = fromNull(opExp)
		rp.Tiers.Operational = &op
	}
	if vt.State != "" {
		vt.ExpiresAt = fromNull(vExp)
		rp.Tiers.Vault = &vt
	}
	if copies != "" {
		if err := json.Unmarshal([]byte(copies), &rp.Copies); err != nil {
			return nil, fmt.Errorf("recovery point %s: copies: %w", rp.ID, err)
		}
	}
	return &rp, nil
}

// tierCols are the stored form of a tier: rule, expiry, state (empty
// and NULL when the point has no such tier).
func tierCols(t *store.Tier) (string, any, string) {
	if t == nil {
		return "", nil, ""
	}
	return t.Rule, nullMicros(t.ExpiresAt), t.State
}

func copiesCol(cs []store.Copy) string {
	if len(cs) == 0 {
		return ""
	}
	b, _ := json.Marshal(cs)
	return string(b)
}

func (s *Store) CreateRecoveryPoint(ctx context.Context, rp *store.RecoveryPoint) error {
	now := s.stamp()
	if rp.ID == "" {
		rp.ID = newID()
	}
	if rp.State == "" {
		rp.State = store.RPAvailable
	}
	opRule, opExp, opState := tierCols(rp.Tiers.Operational)
	vRule, vExp, vState := tierCols(rp.Tiers.Vault)
	_, err := s.exec(ctx, s.db, `INSERT INTO recovery_points (`+rpCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $13, NULL, NULL,
		$14, $15, $16, $17, $18, $19, $20, $21)`,
		rp.Vault, rp.ID, rp.Instance, rp.JobID, micros(rp.Time), rp.RepoID, rp.Tag, rp.Datastore, nullMicros(rp.ExpiresAt),
		rp.State, rp.Items, rp.Bytes, micros(now), opRule, opExp, opState, vRule, vExp, vState, copiesCol(rp.Copies), rp.StoredBytes)
	if err != nil {
		return exists(err, "recovery point", rp.ID)
	}
	rp.Time = rp.Time.UTC().Truncate(time.Microsecond)
	rp.Version, rp.CreatedAt, rp.UpdatedAt = 1, now, now
	return nil
}

func (s *Store) GetRecoveryPoint(ctx context.Context, vault, id string) (*store.RecoveryPoint, error) {
	rp, err := scanRP(s.db.QueryRowContext(ctx, s.q(`SELECT `+rpCols+` FROM recovery_points WHERE vault = $1 AND id = $2`), vault, id))
	return rp, notFound(err, "recovery point", id)
}

func (s *Store) ListRecoveryPoints(ctx context.Context, f store.RecoveryPointFilter) ([]*store.RecoveryPoint, error) {
	var where []string
	var args []any
	if f.Vault != "" {
		args = append(args, f.Vault)
		where = append(where, fmt.Sprintf("vault = $%d", len(args)))
	}
	if f.Instance != "" {
		args = append(args, f.Instance)
		where = append(where, fmt.Sprintf("instance = $%d", len(args)))
	}
	switch {
	case f.OnlyDeleted:
		args = append(args, store.RPSoftDeleted)
		where = append(where, fmt.Sprintf("state = $%d", len(args)))
	case !f.IncludeDeleted:
		args = append(args, store.RPSoftDeleted)
		where = append(where, fmt.Sprintf("state <> $%d", len(args)))
	}
	q := `SELECT ` + rpCols + ` FROM recovery_points`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, s.q(q+` ORDER BY taken_at, id`), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanRP)
}

func (s *Store) UpdateRecoveryPoint(ctx context.Context, rp *store.RecoveryPoint) error {
	now := s.stamp()
	opRule, opExp, opState := tierCols(rp.Tiers.Operational)
	vRule, vExp, vState := tierCols(rp.Tiers.Vault)
	n, err := s.exec(ctx, s.db, `UPDATE recovery_points SET tag = $1, datastore = $2, expires_at = $3, state = $4, repo_id = $5,
		version = version + 1, updated_at = $6,
		op_rule = $10, op_expires_at = $11, op_state = $12, vault_rule = $13, vault_expires_at = $14, vault_state = $15, copies = $16
		WHERE vault = $7 AND id = $8 AND version = $9`,
		rp.Tag, rp.Datastore, nullMicros(rp.ExpiresAt), rp.State, rp.RepoID, micros(now), rp.Vault, rp.ID, rp.Version,
		opRule, opExp, opState, vRule, vExp, vState, copiesCol(rp.Copies))
	if err != nil {
		return fmt.Errorf("update recovery point %q: %w", rp.ID, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM recovery_points WHERE vault = $1 AND id = $2`, []any{rp.Vault, rp.ID}, "recovery point", rp.ID, rp.Version)
	}
	rp.Version++
	rp.UpdatedAt = now
	return nil
}

func (s *Store) ClearRecoveryPointExpiries(ctx context.Context, vault, instance string) (int64, error) {
	n, err := s.exec(ctx, s.db, `UPDATE recovery_points SET expires_at = NULL, version = version + 1, updated_at = $1
		WHERE vault = $2 AND instance = $3 AND expires_at IS NOT NULL`, micros(s.stamp()), vault, instance)
	if err != nil {
		return 0, fmt.Errorf("clear the expiries of %s/%s: %w", vault, instance, err)
	}
	return n, nil
}

func (s *Store) SetRecoveryPointExpiries(ctx context.Context, vault string, expiries map[string]*time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	now := micros(s.stamp())
	for id, exp := range expiries {
		n, err := s.exec(ctx, tx, `UPDATE recovery_points SET expires_at = $1, version = version + 1, updated_at = $2 WHERE vault = $3 AND id = $4`,
			nullMicros(exp), now, vault, id)
		if err != nil {
			return fmt.Errorf("set the expiry of recovery point %q: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("recovery point %q: %w", id, store.ErrNotFound)
		}
	}
	return tx.Commit()
}

func (s *Store) DeleteRecoveryPoint(ctx context.Context, vault, id string, version int64) error {
	return s.deleteVersioned(ctx, "recovery_points", "vault = $1 AND id = $2", []any{vault, id}, "recovery point", id, version)
}

// ---- jobs ----

const jobCols = `vault, id, type, instance, state, dedup_key, trigger_time, started_at, ended_at, params, external_ref, sub_tasks, warnings, errors, progress, version, created_at, updated_at`

func scanJob(sc interface{ Scan(...any) error }) (*store.Job, error) {
	var j store.Job
	var dedup sql.NullString
	var trig, start, end sql.NullInt64
	var params, subs, warns, errs, prog string
	var c, u int64
	if err := sc.Scan(&j.Vault, &j.ID, &j.Type, &j.Instance, &j.State, &dedup, &trig, &start, &end, &params, &j.ExternalRef,
		&subs, &warns, &errs, &prog, &j.Version, &c, &u); err != nil {
		return nil, err
	}
	j.DedupKey = dedup.String
	j.TriggerTime, j.StartedAt, j.EndedAt = fromNull(trig), fromNull(start), fromNull(end)
	j.Params = textRaw(params)
	for _, x := range []struct {
		s string
		v any
	}{{subs, &j.SubTasks}, {warns, &j.Warnings}, {errs, &j.Errors}, {prog, &j.Progress}} {
		if x.s != "" && x.s != "null" {
			if err := json.Unmarshal([]byte(x.s), x.v); err != nil {
				return nil, fmt.Errorf("job %s: decode: %w", j.ID, err)
			}
		}
	}
	j.CreatedAt, j.UpdatedAt = fromMicros(c), fromMicros(u)
	return &j, nil
}

func jobLists(j *store.Job) (subs, warns, errs, prog string, err error) {
	if subs, err = jsonText(j.SubTasks); err != nil {
		return
	}
	if warns, err = jsonText(j.Warnings); err != nil {
		return
	}
	if errs, err = jsonText(j.Errors); err != nil {
		return
	}
	if j.Progress != nil {
		prog, err = jsonText(j.Progress)
	}
	return
}

func (s *Store) insertJob(ctx context.Context, ex execer, j *store.Job, onConflictNothing bool) (bool, error) {
	now := s.stamp()
	if j.ID == "" {
		j.ID = newID()
	}
	if j.State == "" {
		j.State = store.JobQueued
	}
	subs, warns, errs, prog, err := jobLists(j)
	if err != nil {
		return false, err
	}
	q := `INSERT INTO jobs (` + jobCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $16, 1, $15, $15)`
	if onConflictNothing {
		q += ` ON CONFLICT (dedup_key) DO NOTHING`
	}
	n, err := s.exec(ctx, ex, q, j.Vault, j.ID, j.Type, j.Instance, j.State, nullString(j.DedupKey), nullMicros(j.TriggerTime),
		nullMicros(j.StartedAt), nullMicros(j.EndedAt), rawText(j.Params), j.ExternalRef, subs, warns, errs, micros(now), prog)
	if err != nil {
		return false, exists(err, "job", j.ID)
	}
	if n == 0 {
		return false, nil
	}
	j.Version, j.CreatedAt, j.UpdatedAt = 1, now, now
	return true, nil
}

func (s *Store) CreateJob(ctx context.Context, j *store.Job) error {
	_, err := s.insertJob(ctx, s.db, j, false)
	return err
}

func (s *Store) GetJob(ctx context.Context, vault, id string) (*store.Job, error) {
	j, err := scanJob(s.db.QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM jobs WHERE vault = $1 AND id = $2`), vault, id))
	return j, notFound(err, "job", id)
}

func (s *Store) ListJobs(ctx context.Context, f store.JobFilter) ([]*store.Job, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"vault", f.Vault}, {"instance", f.Instance}, {"type", f.Type}, {"state", f.State}} {
		if c.v != "" {
			args = append(args, c.v)
			where = append(where, fmt.Sprintf("%s = $%d", c.col, len(args)))
		}
	}
	q := `SELECT ` + jobCols + ` FROM jobs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanJob)
}

func (s *Store) UpdateJob(ctx context.Context, j *store.Job) error {
	now := s.stamp()
	subs, warns, errs, prog, err := jobLists(j)
	if err != nil {
		return err
	}
	n, err := s.exec(ctx, s.db, `UPDATE jobs SET state = $1, started_at = $2, ended_at = $3, params = $4, external_ref = $5, sub_tasks = $6,
		warnings = $7, errors = $8, progress = $13, version = version + 1, updated_at = $9 WHERE vault = $10 AND id = $11 AND version = $12`,
		j.State, nullMicros(j.StartedAt), nullMicros(j.EndedAt), rawText(j.Params), j.ExternalRef, subs, warns, errs,
		micros(now), j.Vault, j.ID, j.Version, prog)
	if err != nil {
		return fmt.Errorf("update job %q: %w", j.ID, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM jobs WHERE vault = $1 AND id = $2`, []any{j.Vault, j.ID}, "job", j.ID, j.Version)
	}
	j.Version++
	j.UpdatedAt = now
	return nil
}

// ---- tokens ----

const tokenCols = `id, name, hash, principal, created_at, expires_at`

func scanToken(sc interface{ Scan(...any) error }) (*store.Token, error) {
	var t store.Token
	var c int64
	var exp sql.NullInt64
	if err := sc.Scan(&t.ID, &t.Name, &t.Hash, &t.Principal, &c, &exp); err != nil {
		return nil, err
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(c), fromNull(exp)
	return &t, nil
}

func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	now := s.stamp()
	if t.ID == "" {
		t.ID = newID()
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO tokens (`+tokenCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		t.ID, t.Name, t.Hash, t.Principal, micros(now), nullMicros(t.ExpiresAt))
	if err != nil {
		return exists(err, "token", t.ID)
	}
	t.CreatedAt = now
	return nil
}

func (s *Store) GetTokenByHash(ctx context.Context, hash string) (*store.Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens WHERE hash = $1`), hash))
	return t, notFound(err, "token", "(by hash)")
}

func (s *Store) ListTokens(ctx context.Context) ([]*store.Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanToken)
}

func (s *Store) BoundTokens(ctx context.Context, at time.Time) (int64, error) {
	n, err := s.exec(ctx, s.db, `UPDATE tokens SET expires_at = $1 WHERE expires_at IS NULL`, micros(at))
	if err != nil {
		return 0, fmt.Errorf("bound tokens: %w", err)
	}
	return n, nil
}

func (s *Store) DeleteToken(ctx context.Context, id string) error {
	return s.deleteVersioned(ctx, "tokens", "id = $1", []any{id}, "token", id, 0)
}

// ---- triggers ----

const triggerCols = `vault, instance, schedule, next_run, last_run, version, created_at, updated_at`

func scanTrigger(sc interface{ Scan(...any) error }) (*store.Trigger, error) {
	var t store.Trigger
	var next, c, u int64
	var last sql.NullInt64
	if err := sc.Scan(&t.Vault, &t.Instance, &t.Schedule, &next, &last, &t.Version, &c, &u); err != nil {
		return nil, err
	}
	t.NextRun, t.LastRun = fromMicros(next), fromNull(last)
	t.CreatedAt, t.UpdatedAt = fromMicros(c), fromMicros(u)
	return &t, nil
}

func (s *Store) PutTrigger(ctx context.Context, t *store.Trigger) error {
	now := s.stamp()
	_, err := s.exec(ctx, s.db, `INSERT INTO triggers (`+triggerCols+`) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)
		ON CONFLICT (vault, instance) DO UPDATE SET schedule = excluded.schedule, next_run = excluded.next_run,
		last_run = excluded.last_run, version = triggers.version + 1, updated_at = excluded.updated_at`,
		t.Vault, t.Instance, t.Schedule, micros(t.NextRun), nullMicros(t.LastRun), micros(now))
	if err != nil {
		return fmt.Errorf("put trigger %s/%s: %w", t.Vault, t.Instance, err)
	}
	got, err := s.GetTrigger(ctx, t.Vault, t.Instance)
	if err != nil {
		return err
	}
	*t = *got
	return nil
}

func (s *Store) GetTrigger(ctx context.Context, vault, instance string) (*store.Trigger, error) {
	t, err := scanTrigger(s.db.QueryRowContext(ctx, s.q(`SELECT `+triggerCols+` FROM triggers WHERE vault = $1 AND instance = $2`), vault, instance))
	return t, notFound(err, "trigger", vault+"/"+instance)
}

func (s *Store) DeleteTrigger(ctx context.Context, vault, instance string) error {
	return s.deleteVersioned(ctx, "triggers", "vault = $1 AND instance = $2", []any{vault, instance}, "trigger", vault+"/"+instance, 0)
}

func (s *Store) DueTriggers(ctx context.Context, now time.Time) ([]*store.Trigger, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+triggerCols+` FROM triggers WHERE next_run <= $1 ORDER BY next_run, vault, instance`), micros(now))
	if err != nil {
		return nil, err
	}
	return collect(rows, scanTrigger)
}

func (s *Store) ClaimTrigger(ctx context.Context, t *store.Trigger, next time.Time, job *store.Job) (claimed bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if !claimed || err != nil {
			_ = tx.Rollback()
		}
	}()
	now := s.stamp()
	n, err := s.exec(ctx, tx, `UPDATE triggers SET next_run = $1, last_run = $2, version = version + 1, updated_at = $3
		WHERE vault = $4 AND instance = $5 AND next_run = $6`,
		micros(next), micros(t.NextRun), micros(now), t.Vault, t.Instance, micros(t.NextRun))
	if err != nil || n == 0 {
		return false, err
	}
	ok, err := s.insertJob(ctx, tx, job, true)
	if err != nil {
		return false, err
	}
	if !ok {
		// A job for this slot exists already (dedup key): the slot is
		// spent, so still advance the trigger, but report no new job.
		if err := tx.Commit(); err != nil {
			return false, err
		}
		return false, nil
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	claimed = true
	last := t.NextRun
	t.LastRun, t.NextRun = &last, next.UTC().Truncate(time.Microsecond)
	t.Version++
	return true, nil
}

func collect[T any](rows *sql.Rows, scan func(interface{ Scan(...any) error }) (*T, error)) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

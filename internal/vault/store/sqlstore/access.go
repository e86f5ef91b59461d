package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- role assignments ----

const assignmentCols = `id, principal, role, scope, created_by, created_at`

func scanAssignment(sc interface{ Scan(...any) error }) (*store.RoleAssignment, error) {
	var a store.RoleAssignment
	var c int64
	if err := sc.Scan(&a.ID, &a.Principal, &a.Role, &a.Scope, &a.CreatedBy, &c); err != nil {
		return nil, err
	}
	a.CreatedAt = fromMicros(c)
	return &a, nil
}

func (s *Store) CreateRoleAssignment(ctx context.Context, a *store.RoleAssignment) error {
	now := s.stamp()
	if a.ID == "" {
		a.ID = newID()
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO role_assignments (`+assignmentCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		a.ID, a.Principal, a.Role, a.Scope, a.CreatedBy, micros(now))
	if err != nil {
		return exists(err, "role assignment", a.Principal+" "+a.Role+" "+a.Scope)
	}
	a.CreatedAt = now
	return nil
}

func (s *Store) ListRoleAssignments(ctx context.Context, f store.RoleAssignmentFilter) ([]*store.RoleAssignment, error) {
	q := `SELECT ` + assignmentCols + ` FROM role_assignments WHERE 1 = 1`
	var args []any
	if f.Principal != "" {
		args = append(args, f.Principal)
		q += fmt.Sprintf(" AND principal = $%d", len(args))
	}
	if f.Scope != "" {
		args = append(args, f.Scope)
		q += fmt.Sprintf(" AND scope = $%d", len(args))
	}
	rows, err := s.db.QueryContext(ctx, s.q(q+` ORDER BY scope, principal, role`), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAssignment)
}

func (s *Store) GetRoleAssignment(ctx context.Context, id string) (*store.RoleAssignment, error) {
	a, err := scanAssignment(s.db.QueryRowContext(ctx, s.q(`SELECT `+assignmentCols+` FROM role_assignments WHERE id = $1`), id))
	return a, notFound(err, "role assignment", id)
}

func (s *Store) DeleteRoleAssignment(ctx context.Context, id string) error {
	return s.deleteVersioned(ctx, "role_assignments", "id = $1", []any{id}, "role assignment", id, 0)
}

// ---- clusters ----

const clusterCols = `name, server, ca_data, namespace, service_account, token, token_expires_at, state, message, registered_at, renewals, version, created_at, updated_at`

func (s *Store) scanCluster(sc interface{ Scan(...any) error }) (*store.Cluster, error) {
	var c store.Cluster
	var ca, tok string
	var exp sql.NullInt64
	var reg, cr, up int64
	if err := sc.Scan(&c.Name, &c.Server, &ca, &c.Namespace, &c.ServiceAccount, &tok, &exp, &c.State, &c.Message, &reg, &c.Renewals,
		&c.Version, &cr, &up); err != nil {
		return nil, err
	}
	if ca != "" {
		b, err := base64.StdEncoding.DecodeString(ca)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: CA data: %w", c.Name, err)
		}
		c.CAData = b
	}
	var err error
	if c.Token, err = s.open(c.Name, tok); err != nil {
		return nil, err
	}
	c.TokenExpiresAt = fromNull(exp)
	c.RegisteredAt = fromMicros(reg)
	c.CreatedAt, c.UpdatedAt = fromMicros(cr), fromMicros(up)
	return &c, nil
}

func (s *Store) CreateCluster(ctx context.Context, c *store.Cluster) error {
	now := s.stamp()
	if c.RegisteredAt.IsZero() {
		c.RegisteredAt = now
	}
	tok, err := s.seal(c.Name, c.Token)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, s.db, `INSERT INTO clusters (`+clusterCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12)`,
		c.Name, c.Server, base64.StdEncoding.EncodeToString(c.CAData), c.Namespace, c.ServiceAccount, tok,
		nullMicros(c.TokenExpiresAt), c.State, c.Message, micros(c.RegisteredAt), c.Renewals, micros(now))
	if err != nil {
		return exists(err, "cluster", c.Name)
	}
	c.RegisteredAt = c.RegisteredAt.UTC().Truncate(time.Microsecond)
	c.Version, c.CreatedAt, c.UpdatedAt = 1, now, now
	return nil
}

func (s *Store) GetCluster(ctx context.Context, name string) (*store.Cluster, error) {
	c, err := s.scanCluster(s.db.QueryRowContext(ctx, s.q(`SELECT `+clusterCols+` FROM clusters WHERE name = $1`), name))
	return c, notFound(err, "cluster", name)
}

func (s *Store) ListClusters(ctx context.Context) ([]*store.Cluster, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+clusterCols+` FROM clusters ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return collect(rows, s.scanCluster)
}

func (s *Store) UpdateCluster(ctx context.Context, c *store.Cluster) error {
	now := s.stamp()
	tok, err := s.seal(c.Name, c.Token)
	if err != nil {
		return err
	}
	n, err := s.exec(ctx, s.db, `UPDATE clusters SET server = $1, ca_data = $2, namespace = $3, service_account = $4, token = $5,
		token_expires_at = $6, state = $7, message = $8, registered_at = $12, renewals = $13, version = version + 1, updated_at = $9
		WHERE name = $10 AND version = $11`,
		c.Server, base64.StdEncoding.EncodeToString(c.CAData), c.Namespace, c.ServiceAccount, tok,
		nullMicros(c.TokenExpiresAt), c.State, c.Message, micros(now), c.Name, c.Version, micros(c.RegisteredAt), c.Renewals)
	if err != nil {
		return fmt.Errorf("update cluster %q: %w", c.Name, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM clusters WHERE name = $1`, []any{c.Name}, "cluster", c.Name, c.Version)
	}
	c.Version++
	c.UpdatedAt = now
	return nil
}

func (s *Store) DeleteCluster(ctx context.Context, name string, version int64) error {
	return s.deleteCascading(ctx, "clusters", "name = $1", []any{name}, "cluster", name, version, rbac.ClusterScope(name))
}

// ---- leases ----

func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := s.stamp()
	// Insert, or take over when expired, or extend when already ours; a
	// live lease of another holder matches no row.
	n, err := s.exec(ctx, s.db, `INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
			acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
		WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at`,
		name, holder, micros(now), micros(now.Add(ttl)))
	if err != nil {
		return false, fmt.Errorf("lease %q: %w", name, err)
	}
	return n > 0, nil
}

func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.exec(ctx, s.db, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
	return err
}

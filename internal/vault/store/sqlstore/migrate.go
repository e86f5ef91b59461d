package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; entry i is schema version i+1. Never edit
// a released entry: append a new one. Each entry runs in one transaction,
// together with the row recording it, so a crash leaves either all or none.
var migrations = [][]string{
	{ // 1: initial schema
		`CREATE TABLE vaults (
			name TEXT PRIMARY KEY,
			description TEXT NOT NULL DEFAULT '',
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL)`,
		`CREATE TABLE policies (
			vault TEXT NOT NULL,
			name TEXT NOT NULL,
			schedule TEXT NOT NULL,
			retention TEXT NOT NULL,
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (vault, name))`,
		`CREATE TABLE instances (
			vault TEXT NOT NULL,
			name TEXT NOT NULL,
			cluster TEXT NOT NULL,
			policy TEXT NOT NULL,
			config TEXT NOT NULL,
			storage_location TEXT NOT NULL,
			snapshot_location TEXT NOT NULL,
			protection_state TEXT NOT NULL,
			stop_mode TEXT NOT NULL,
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (vault, name))`,
		`CREATE INDEX instances_policy ON instances (vault, policy)`,
		`CREATE TABLE recovery_points (
			vault TEXT NOT NULL,
			id TEXT NOT NULL,
			instance TEXT NOT NULL,
			job_id TEXT NOT NULL,
			taken_at BIGINT NOT NULL,
			repo_id TEXT NOT NULL,
			tag TEXT NOT NULL,
			datastore TEXT NOT NULL,
			expires_at BIGINT,
			state TEXT NOT NULL,
			items BIGINT NOT NULL,
			bytes BIGINT NOT NULL,
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (vault, id))`,
		`CREATE INDEX recovery_points_instance ON recovery_points (vault, instance, taken_at)`,
		`CREATE TABLE jobs (
			vault TEXT NOT NULL,
			id TEXT NOT NULL,
			type TEXT NOT NULL,
			instance TEXT NOT NULL,
			state TEXT NOT NULL,
			dedup_key TEXT UNIQUE,
			trigger_time BIGINT,
			started_at BIGINT,
			ended_at BIGINT,
			params TEXT NOT NULL,
			external_ref TEXT NOT NULL,
			sub_tasks TEXT NOT NULL,
			warnings TEXT NOT NULL,
			errors TEXT NOT NULL,
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (vault, id))`,
		`CREATE INDEX jobs_state ON jobs (state)`,
		`CREATE INDEX jobs_created ON jobs (vault, created_at)`,
		`CREATE TABLE tokens (
			id TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			hash TEXT NOT NULL UNIQUE,
			principal TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			expires_at BIGINT)`,
		`CREATE TABLE triggers (
			vault TEXT NOT NULL,
			instance TEXT NOT NULL,
			schedule TEXT NOT NULL,
			next_run BIGINT NOT NULL,
			last_run BIGINT,
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (vault, instance))`,
		`CREATE INDEX triggers_next_run ON triggers (next_run)`,
	},
	{ // 2: role-based access and trusted-access clusters
		`CREATE TABLE role_assignments (
			id TEXT PRIMARY KEY,
			principal TEXT NOT NULL,
			role TEXT NOT NULL,
			scope TEXT NOT NULL,
			created_by TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			UNIQUE (principal, role, scope))`,
		`CREATE INDEX role_assignments_scope ON role_assignments (scope)`,
		`CREATE TABLE clusters (
			name TEXT PRIMARY KEY,
			server TEXT NOT NULL,
			ca_data TEXT NOT NULL,
			namespace TEXT NOT NULL,
			service_account TEXT NOT NULL,
			token TEXT NOT NULL,
			token_expires_at BIGINT,
			state TEXT NOT NULL,
			message TEXT NOT NULL,
			version BIGINT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL)`,
		// Tokens issued before role-based access could do everything;
		// their principals keep that as Owner at the root scope.
		`INSERT INTO role_assignments (id, principal, role, scope, created_by, created_at)
			SELECT DISTINCT 'migrated-' || principal, principal, 'Owner', '/', 'migration-2', 0 FROM tokens`,
	},
	{ // 3: job progress (items, bytes, counts) as JSON; '' when none
		`ALTER TABLE jobs ADD COLUMN progress TEXT NOT NULL DEFAULT ''`,
	},
	{ // 4: the jobs of one instance, newest first (arca job list --instance),
		// without walking every job of the vault: jobs are never pruned, and
		// a vault at 5,000 instances adds 5,000 to 10,000 a day
		// (BenchmarkVaultAtScale).
		`CREATE INDEX jobs_instance ON jobs (vault, instance, created_at, id)`,
	},
	{ // 5: vault hardening (issue 14): the fingerprint of the key cluster
		// credentials are sealed with (settings), leases that let one
		// replica run a background task (retention), and when a cluster's
		// credential was last given by its owner and how often the vault
		// renewed it since (renewal is bounded).
		`CREATE TABLE settings (
			name TEXT PRIMARY KEY,
			value TEXT NOT NULL)`,
		`CREATE TABLE leases (
			name TEXT PRIMARY KEY,
			holder TEXT NOT NULL,
			acquired_at BIGINT NOT NULL,
			expires_at BIGINT NOT NULL)`,
		`ALTER TABLE clusters ADD COLUMN registered_at BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE clusters ADD COLUMN renewals BIGINT NOT NULL DEFAULT 0`,
		`UPDATE clusters SET registered_at = updated_at`,
	},
	{ // 6: protection users can trust (issue 17): vault settings (soft
		// delete, immutability, resource guard), soft-deleted points and
		// instances, multi-user authorization requests, and webhook
		// subscriptions with their deliveries. Vaults that existed get the
		// default soft delete (14 days), as new ones do.
		`ALTER TABLE vaults ADD COLUMN soft_delete_days BIGINT NOT NULL DEFAULT 14`,
		`ALTER TABLE vaults ADD COLUMN immutability TEXT NOT NULL DEFAULT 'disabled'`,
		`ALTER TABLE vaults ADD COLUMN resource_guard BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE recovery_points ADD COLUMN deleted_at BIGINT`,
		`ALTER TABLE recovery_points ADD COLUMN purge_at BIGINT`,
		`CREATE INDEX recovery_points_purge ON recovery_points (purge_at)`,
		`ALTER TABLE instances ADD COLUMN deleted_at BIGINT`,
		`ALTER TABLE instances ADD COLUMN purge_at BIGINT`,
		`ALTER TABLE instances ADD COLUMN delete_instance BIGINT NOT NULL DEFAULT 0`,
		`CREATE TABLE approvals (
			vault TEXT NOT NULL,
			id TEXT NOT NULL,
			operation TEXT NOT NULL,
			target TEXT NOT NULL,
			requester TEXT NOT NULL,
			state TEXT NOT NULL,
			approver TEXT NOT NULL,
			reason TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			expires_at BIGINT NOT NULL,
			decided_at BIGINT,
			used_at BIGINT,
			version BIGINT NOT NULL,
			PRIMARY KEY (vault, id))`,
		`CREATE INDEX approvals_request ON approvals (vault, requester, operation, target)`,
		`CREATE TABLE subscriptions (
			vault TEXT NOT NULL,
			id TEXT NOT NULL,
			url TEXT NOT NULL,
			secret TEXT NOT NULL,
			events TEXT NOT NULL,
			created_by TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (vault, id))`,
		`CREATE TABLE deliveries (
			id TEXT PRIMARY KEY,
			vault TEXT NOT NULL,
			subscription TEXT NOT NULL,
			event TEXT NOT NULL,
			state TEXT NOT NULL,
			attempts BIGINT NOT NULL,
			last_status BIGINT NOT NULL,
			last_error TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			delivered_at BIGINT)`,
		`CREATE INDEX deliveries_vault ON deliveries (vault, created_at)`,
		`CREATE INDEX deliveries_state ON deliveries (state)`,
	},
	{ // 7: retention per datastore (issue 15): each recovery point's
		// operational tier (snapshots) and vault tier (volume data in the
		// repository) with their own rule, expiry and state, and its
		// copies in secondary storage locations (JSON; '' when none);
		// a policy's secondary storage location for vault-tier points.
		// Points recorded before held only the operational tier.
		`ALTER TABLE recovery_points ADD COLUMN op_rule TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE recovery_points ADD COLUMN op_expires_at BIGINT`,
		`ALTER TABLE recovery_points ADD COLUMN op_state TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE recovery_points ADD COLUMN vault_rule TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE recovery_points ADD COLUMN vault_expires_at BIGINT`,
		`ALTER TABLE recovery_points ADD COLUMN vault_state TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE recovery_points ADD COLUMN copies TEXT NOT NULL DEFAULT ''`,
		`UPDATE recovery_points SET op_rule = tag, op_expires_at = expires_at, op_state = 'Available'`,
		`ALTER TABLE policies ADD COLUMN copy_to TEXT NOT NULL DEFAULT ''`,
	},
	{ // 8: scheduled verification (issue 17): a policy's verify period
		// (daily, weekly, monthly; '' none).
		`ALTER TABLE policies ADD COLUMN verify TEXT NOT NULL DEFAULT ''`,
	},
	{ // 9: storage used per instance (issue 16): the bytes each backup
		// added to the repository after dedup and compression (0 unknown).
		`ALTER TABLE recovery_points ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0`,
	},
}

// SchemaVersion is the version a fully migrated database has.
func SchemaVersion() int { return len(migrations) }

func (s *Store) migrate(ctx context.Context) error {
	// Even CREATE TABLE IF NOT EXISTS races on PostgreSQL (two sessions
	// can both pass the check), so it runs under the migration lock too.
	if err := s.inLockedTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY,
			applied_at BIGINT NOT NULL)`)
		return err
	}); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	for i, stmts := range migrations {
		if err := s.applyMigration(ctx, i+1, stmts); err != nil {
			return fmt.Errorf("schema migration %d: %w", i+1, err)
		}
	}
	return nil
}

func (s *Store) inLockedTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if s.d.MigrationLock != "" {
		if _, err := tx.ExecContext(ctx, s.d.MigrationLock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *Store) applyMigration(ctx context.Context, version int, stmts []string) error {
	return s.inLockedTx(ctx, func(tx *sql.Tx) error {
		// Checked after taking the lock: a replica that waited for
		// another one sees its work and does nothing.
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = $1`), version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		for _, st := range stmts {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`), version, micros(s.stamp()))
		return err
	})
}

// AppliedMigrations returns the recorded schema versions, ascending.
func (s *Store) AppliedMigrations(ctx context.Context) ([]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

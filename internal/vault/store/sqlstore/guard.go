package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- soft delete ----

func (s *Store) SoftDeleteRecoveryPoint(ctx context.Context, vault, id string, version int64, at, purge time.Time) error {
	q := `UPDATE recovery_points SET state = $1, deleted_at = $2, purge_at = $3, version = version + 1, updated_at = $4
		WHERE vault = $5 AND id = $6 AND state <> $1`
	args := []any{store.RPSoftDeleted, micros(at), micros(purge), micros(s.stamp()), vault, id}
	if version != 0 {
		q += ` AND version = $7`
		args = append(args, version)
	}
	n, err := s.exec(ctx, s.db, q, args...)
	if err != nil {
		return fmt.Errorf("soft-delete recovery point %q: %w", id, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM recovery_points WHERE vault = $1 AND id = $2`, []any{vault, id}, "recovery point", id, version)
	}
	return nil
}

func (s *Store) UndeleteRecoveryPoint(ctx context.Context, vault, id string) error {
	n, err := s.exec(ctx, s.db, `UPDATE recovery_points SET state = $1, deleted_at = NULL, purge_at = NULL, version = version + 1, updated_at = $2
		WHERE vault = $3 AND id = $4 AND state = $5`, store.RPAvailable, micros(s.stamp()), vault, id, store.RPSoftDeleted)
	if err != nil {
		return fmt.Errorf("undelete recovery point %q: %w", id, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM recovery_points WHERE vault = $1 AND id = $2`, []any{vault, id}, "recovery point", id, 0)
	}
	return nil
}

func (s *Store) SoftDeleteInstance(ctx context.Context, in *store.Instance, at, purge time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	at, purge = at.UTC().Truncate(time.Microsecond), purge.UTC().Truncate(time.Microsecond)
	now := s.stamp()
	n, err := s.exec(ctx, tx, `UPDATE instances SET protection_state = $1, stop_mode = $2, deleted_at = $3, purge_at = $4, delete_instance = $5,
		version = version + 1, updated_at = $6 WHERE vault = $7 AND name = $8 AND version = $9`,
		store.ProtectionSoftDeleted, in.StopMode, micros(at), micros(purge), boolInt(in.DeleteInstance), micros(now), in.Vault, in.Name, in.Version)
	if err != nil {
		return fmt.Errorf("soft-delete instance %q: %w", in.Name, err)
	}
	if n == 0 {
		_ = tx.Rollback()
		return s.afterZeroRows(ctx, `SELECT 1 FROM instances WHERE vault = $1 AND name = $2`, []any{in.Vault, in.Name}, "instance", in.Vault+"/"+in.Name, in.Version)
	}
	if _, err := s.exec(ctx, tx, `UPDATE recovery_points SET state = $1, deleted_at = $2, purge_at = $3, version = version + 1, updated_at = $4
		WHERE vault = $5 AND instance = $6 AND state <> $1`, store.RPSoftDeleted, micros(at), micros(purge), micros(now), in.Vault, in.Name); err != nil {
		return fmt.Errorf("soft-delete the recovery points of %q: %w", in.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	in.ProtectionState, in.DeletedAt, in.PurgeAt = store.ProtectionSoftDeleted, &at, &purge
	in.Version++
	in.UpdatedAt = now
	return nil
}

func (s *Store) UndeleteInstance(ctx context.Context, in *store.Instance, state, mode string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	now := s.stamp()
	n, err := s.exec(ctx, tx, `UPDATE instances SET protection_state = $1, stop_mode = $2, deleted_at = NULL, purge_at = NULL, delete_instance = 0,
		version = version + 1, updated_at = $3 WHERE vault = $4 AND name = $5 AND version = $6 AND protection_state = $7`,
		state, mode, micros(now), in.Vault, in.Name, in.Version, store.ProtectionSoftDeleted)
	if err != nil {
		return fmt.Errorf("undelete instance %q: %w", in.Name, err)
	}
	if n == 0 {
		_ = tx.Rollback()
		return s.afterZeroRows(ctx, `SELECT 1 FROM instances WHERE vault = $1 AND name = $2`, []any{in.Vault, in.Name}, "instance", in.Vault+"/"+in.Name, in.Version)
	}
	if in.DeletedAt != nil {
		if _, err := s.exec(ctx, tx, `UPDATE recovery_points SET state = $1, deleted_at = NULL, purge_at = NULL, version = version + 1, updated_at = $2
			WHERE vault = $3 AND instance = $4 AND state = $5 AND deleted_at = $6`,
			store.RPAvailable, micros(now), in.Vault, in.Name, store.RPSoftDeleted, micros(*in.DeletedAt)); err != nil {
			return fmt.Errorf("undelete the recovery points of %q: %w", in.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	in.ProtectionState, in.StopMode, in.DeletedAt, in.PurgeAt, in.DeleteInstance = state, mode, nil, nil, false
	in.Version++
	in.UpdatedAt = now
	return nil
}

func (s *Store) ListPurgeableInstances(ctx context.Context, now time.Time) ([]*store.Instance, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+instanceCols+` FROM instances WHERE protection_state = $1 AND purge_at <= $2 ORDER BY vault, name`),
		store.ProtectionSoftDeleted, micros(now))
	if err != nil {
		return nil, err
	}
	return collect(rows, scanInstance)
}

func (s *Store) ListPurgeableRecoveryPoints(ctx context.Context, now time.Time) ([]*store.RecoveryPoint, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+rpCols+` FROM recovery_points WHERE state IN ($1, $3) AND purge_at <= $2 ORDER BY vault, instance, taken_at, id`),
		store.RPSoftDeleted, micros(now), store.RPDeleting)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanRP)
}

// ---- approvals ----

const approvalCols = `vault, id, operation, target, requester, state, approver, reason, created_at, expires_at, decided_at, used_at, version`

func scanApproval(sc interface{ Scan(...any) error }) (*store.Approval, error) {
	var a store.Approval
	var c, e int64
	var dec, used sql.NullInt64
	if err := sc.Scan(&a.Vault, &a.ID, &a.Operation, &a.Target, &a.Requester, &a.State, &a.Approver, &a.Reason, &c, &e, &dec, &used, &a.Version); err != nil {
		return nil, err
	}
	a.CreatedAt, a.ExpiresAt, a.DecidedAt, a.UsedAt = fromMicros(c), fromMicros(e), fromNull(dec), fromNull(used)
	return &a, nil
}

func (s *Store) CreateApproval(ctx context.Context, a *store.Approval) error {
	now := s.stamp()
	if a.ID == "" {
		a.ID = "mua-" + newID()
	}
	if a.State == "" {
		a.State = store.ApprovalPending
	}
	a.ExpiresAt = a.ExpiresAt.UTC().Truncate(time.Microsecond)
	_, err := s.exec(ctx, s.db, `INSERT INTO approvals (`+approvalCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)`,
		a.Vault, a.ID, a.Operation, a.Target, a.Requester, a.State, a.Approver, a.Reason, micros(now), micros(a.ExpiresAt),
		nullMicros(a.DecidedAt), nullMicros(a.UsedAt))
	if err != nil {
		return exists(err, "approval", a.ID)
	}
	a.CreatedAt, a.Version = now, 1
	return nil
}

func (s *Store) GetApproval(ctx context.Context, vault, id string) (*store.Approval, error) {
	a, err := scanApproval(s.db.QueryRowContext(ctx, s.q(`SELECT `+approvalCols+` FROM approvals WHERE vault = $1 AND id = $2`), vault, id))
	return a, notFound(err, "approval", id)
}

func (s *Store) ListApprovals(ctx context.Context, vault string, f store.ApprovalFilter) ([]*store.Approval, error) {
	where, args := []string{"vault = $1"}, []any{vault}
	for _, c := range []struct{ col, v string }{{"requester", f.Requester}, {"operation", f.Operation}, {"target", f.Target}, {"state", f.State}} {
		if c.v != "" {
			args = append(args, c.v)
			where = append(where, fmt.Sprintf("%s = $%d", c.col, len(args)))
		}
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+approvalCols+` FROM approvals WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at DESC, id DESC`), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanApproval)
}

func (s *Store) UpdateApproval(ctx context.Context, a *store.Approval) error {
	n, err := s.exec(ctx, s.db, `UPDATE approvals SET state = $1, approver = $2, reason = $3, expires_at = $4, decided_at = $5, used_at = $6,
		version = version + 1 WHERE vault = $7 AND id = $8 AND version = $9`,
		a.State, a.Approver, a.Reason, micros(a.ExpiresAt), nullMicros(a.DecidedAt), nullMicros(a.UsedAt), a.Vault, a.ID, a.Version)
	if err != nil {
		return fmt.Errorf("update approval %q: %w", a.ID, err)
	}
	if n == 0 {
		return s.afterZeroRows(ctx, `SELECT 1 FROM approvals WHERE vault = $1 AND id = $2`, []any{a.Vault, a.ID}, "approval", a.ID, a.Version)
	}
	a.Version++
	return nil
}

// ---- notifications ----

const subscriptionCols = `vault, id, url, secret, events, created_by, created_at`

// secretName is what a webhook secret is sealed under (the credential
// key seals it like a cluster credential; no cluster is named so).
func secretName(vault, id string) string { return "webhook:" + vault + "/" + id }

func (s *Store) scanSubscription(sc interface{ Scan(...any) error }) (*store.Subscription, error) {
	var sub store.Subscription
	var events, secret string
	var c int64
	if err := sc.Scan(&sub.Vault, &sub.ID, &sub.URL, &secret, &events, &sub.CreatedBy, &c); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(events), &sub.Events); err != nil {
		return nil, fmt.Errorf("subscription %s: decode events: %w", sub.ID, err)
	}
	var err error
	if sub.Secret, err = s.open(secretName(sub.Vault, sub.ID), secret); err != nil {
		return nil, err
	}
	sub.CreatedAt = fromMicros(c)
	return &sub, nil
}

func (s *Store) CreateSubscription(ctx context.Context, sub *store.Subscription) error {
	now := s.stamp()
	if sub.ID == "" {
		sub.ID = "wh-" + newID()
	}
	events, err := jsonText(sub.Events)
	if err != nil {
		return err
	}
	secret, err := s.seal(secretName(sub.Vault, sub.ID), sub.Secret)
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.db, `INSERT INTO subscriptions (`+subscriptionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		sub.Vault, sub.ID, sub.URL, secret, events, sub.CreatedBy, micros(now)); err != nil {
		return exists(err, "subscription", sub.ID)
	}
	sub.CreatedAt = now
	return nil
}

func (s *Store) GetSubscription(ctx context.Context, vault, id string) (*store.Subscription, error) {
	sub, err := s.scanSubscription(s.db.QueryRowContext(ctx, s.q(`SELECT `+subscriptionCols+` FROM subscriptions WHERE vault = $1 AND id = $2`), vault, id))
	return sub, notFound(err, "subscription", id)
}

func (s *Store) ListSubscriptions(ctx context.Context, vault string) ([]*store.Subscription, error) {
	q, args := `SELECT `+subscriptionCols+` FROM subscriptions`, []any{}
	if vault != "" {
		q, args = q+` WHERE vault = $1`, append(args, vault)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q+` ORDER BY vault, created_at, id`), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, s.scanSubscription)
}

func (s *Store) DeleteSubscription(ctx context.Context, vault, id string) error {
	return s.deleteVersioned(ctx, "subscriptions", "vault = $1 AND id = $2", []any{vault, id}, "subscription", id, 0)
}

const deliveryCols = `id, vault, subscription, event, state, attempts, last_status, last_error, created_at, updated_at, delivered_at`

func scanDelivery(sc interface{ Scan(...any) error }) (*store.Delivery, error) {
	var d store.Delivery
	var ev string
	var c, u int64
	var done sql.NullInt64
	if err := sc.Scan(&d.ID, &d.Vault, &d.Subscription, &ev, &d.State, &d.Attempts, &d.LastStatus, &d.LastError, &c, &u, &done); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(ev), &d.Event); err != nil {
		return nil, fmt.Errorf("delivery %s: decode event: %w", d.ID, err)
	}
	d.CreatedAt, d.UpdatedAt, d.DeliveredAt = fromMicros(c), fromMicros(u), fromNull(done)
	return &d, nil
}

func (s *Store) CreateDelivery(ctx context.Context, d *store.Delivery) error {
	now := s.stamp()
	if d.ID == "" {
		d.ID = newID()
	}
	if d.State == "" {
		d.State = store.DeliveryPending
	}
	ev, err := jsonText(d.Event)
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.db, `INSERT INTO deliveries (`+deliveryCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)`,
		d.ID, d.Vault, d.Subscription, ev, d.State, d.Attempts, d.LastStatus, d.LastError, micros(now), nullMicros(d.DeliveredAt)); err != nil {
		return exists(err, "delivery", d.ID)
	}
	d.CreatedAt, d.UpdatedAt = now, now
	return nil
}

func (s *Store) UpdateDelivery(ctx context.Context, d *store.Delivery) error {
	now := s.stamp()
	n, err := s.exec(ctx, s.db, `UPDATE deliveries SET state = $1, attempts = $2, last_status = $3, last_error = $4, updated_at = $5, delivered_at = $6 WHERE id = $7`,
		d.State, d.Attempts, d.LastStatus, d.LastError, micros(now), nullMicros(d.DeliveredAt), d.ID)
	if err != nil {
		return fmt.Errorf("update delivery %q: %w", d.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("delivery %q: %w", d.ID, store.ErrNotFound)
	}
	d.UpdatedAt = now
	return nil
}

func (s *Store) ListDeliveries(ctx context.Context, vault, subscription string, limit int) ([]*store.Delivery, error) {
	q, args := `SELECT `+deliveryCols+` FROM deliveries WHERE vault = $1`, []any{vault}
	if subscription != "" {
		q, args = q+` AND subscription = $2`, append(args, subscription)
	}
	q += ` ORDER BY created_at DESC, id DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanDelivery)
}

func (s *Store) PendingDeliveries(ctx context.Context) ([]*store.Delivery, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+deliveryCols+` FROM deliveries WHERE state = $1 ORDER BY created_at, id`), store.DeliveryPending)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanDelivery)
}

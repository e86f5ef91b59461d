// Package retention decides how long each recovery point is kept and
// removes the expired ones.
//
// Tagging (when a recovery point is recorded): a scheduled recovery point
// taken at time t is the first of its day, ISO week (Monday to Sunday),
// month and/or year when no earlier scheduled recovery point of the same
// instance falls in that period (periods in UTC). Of the configured rules
// it matches, the one with the highest priority — yearly > monthly > weekly
// > daily — tags it; otherwise the default rule does. The tag's duration
// gives the expiry (t + duration, calendar arithmetic) and its datastore
// where it is kept. On-demand recovery points carry their own retention and
// do not take part in first-of decisions.
//
// Expiry (periodically): every recovery point whose expiry is at or before
// now is deleted, except the newest recovery point of each instance, which
// is kept whatever its expiry so that an instance whose backups stopped
// never loses its last copy. Points without expiry (retain-forever) stay.
package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/arca-backup/arca/internal/calendar"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/store"
)

// TagOnDemand marks recovery points of on-demand backups.
const TagOnDemand = "ondemand"

// Classify returns the rule that keeps a scheduled recovery point taken at
// t, given the times of the instance's earlier scheduled recovery points
// (any order; times at or after t are ignored).
func Classify(p *policy.Policy, t time.Time, earlier []time.Time) policy.Rule {
	periods := map[string]calendar.Period{policy.RuleDaily: calendar.Day, policy.RuleWeekly: calendar.Week,
		policy.RuleMonthly: calendar.Month, policy.RuleYearly: calendar.Year}
	firstOf := map[string]bool{}
	for rule, period := range periods {
		firstOf[rule] = true
		for _, e := range earlier {
			if e.Before(t) && period.Same(e, t) {
				firstOf[rule] = false
				break
			}
		}
	}
	for _, r := range p.Rules { // descending priority, default last
		if r.Name == policy.RuleDefault || firstOf[r.Name] {
			return r
		}
	}
	return p.Default()
}

// Expired selects the recovery points to delete at now: those whose expiry
// has passed, never the newest point of an instance.
func Expired(now time.Time, rps []*store.RecoveryPoint) []*store.RecoveryPoint {
	newest := map[string]*store.RecoveryPoint{}
	for _, rp := range rps {
		k := rp.Vault + "/" + rp.Instance
		if n := newest[k]; n == nil || rp.Time.After(n.Time) || (rp.Time.Equal(n.Time) && rp.ID > n.ID) {
			newest[k] = rp
		}
	}
	var out []*store.RecoveryPoint
	for _, rp := range rps {
		if rp.ExpiresAt == nil || rp.ExpiresAt.After(now) || newest[rp.Vault+"/"+rp.Instance] == rp {
			continue
		}
		out = append(out, rp)
	}
	return out
}

// DataRemover deletes what a recovery point holds outside the catalog:
// retained volume snapshots and repository references. Not built yet (it
// needs the cluster driver and the repository's forget); without one the
// engine removes catalog entries only and says so in the job.
type DataRemover interface {
	RemoveRecoveryPoint(ctx context.Context, rp *store.RecoveryPoint) error
}

// Store is the part of the vault's store the retention engine uses: it
// walks vaults and instances, tags and expires recovery points and records
// Retention jobs.
type Store interface {
	store.VaultStore
	store.InstanceStore
	store.RecoveryPointStore
	store.JobStore
}

// Engine tags new recovery points and expires old ones.
type Engine struct {
	Store   Store
	Clock   clock.Clock
	Remover DataRemover // optional
	Log     *slog.Logger
}

func (e *Engine) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

// Apply fills Tag, Datastore, ExpiresAt and the operational tier of a new
// scheduled recovery point from the instance's policy and its earlier
// recovery points (a point without vault-tier data).
func (e *Engine) Apply(ctx context.Context, p *policy.Policy, rp *store.RecoveryPoint) error {
	return e.ApplyTiers(ctx, p, rp, nil)
}

// ApplyTiers is Apply for a point that also reached the vault tier under
// rule vault (nil: it did not); see tiers.go.
func (e *Engine) ApplyTiers(ctx context.Context, p *policy.Policy, rp *store.RecoveryPoint, vault *policy.Rule) error {
	existing, err := e.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: rp.Vault, Instance: rp.Instance})
	if err != nil {
		return fmt.Errorf("list recovery points of %s: %w", rp.Instance, err)
	}
	var earlier []time.Time
	for _, x := range existing {
		if x.Tag != TagOnDemand {
			earlier = append(earlier, x.Time)
		}
	}
	SetTiers(rp, ClassifyOperational(p, rp.Time, earlier), vault)
	return nil
}

// ApplyOnDemand sets an on-demand recovery point's retention: the given
// duration, or the policy's default rule when d is nil, for each tier it
// has (vaultTier: its volume data went to the vault tier too).
func ApplyOnDemand(p *policy.Policy, d *policy.Duration, rp *store.RecoveryPoint, vaultTier bool) {
	r := p.Default()
	if d != nil {
		r.Duration = *d
	}
	r.Name = TagOnDemand
	var v *policy.Rule
	if vaultTier {
		vr := r
		v = &vr
	}
	SetTiers(rp, r, v)
}

// Result of one retention pass over an instance.
type Result struct {
	Deleted []string `json:"deleted"`
	// SnapshotsExpired are the points whose operational tier expired:
	// their snapshots were deleted, the points kept.
	SnapshotsExpired []string      `json:"snapshotsExpired,omitempty"`
	Errors           []store.Issue `json:"errors,omitempty"`
}

// ExpireInstance deletes the instance's expired recovery points, then
// deletes the snapshots of the points whose operational tier alone expired.
func (e *Engine) ExpireInstance(ctx context.Context, vault, instance string) (*Result, error) {
	rps, err := e.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: vault, Instance: instance})
	if err != nil {
		return nil, err
	}
	now := e.Clock.Now()
	expired := Expired(now, rps)
	res := e.remove(ctx, expired)
	skip := map[string]bool{}
	for _, rp := range expired {
		skip[rp.ID] = true // forgotten, or to be retried as a whole
	}
	e.expireSnapshots(ctx, SnapshotsExpired(now, rps, skip), res)
	return res, nil
}

// DeleteAll removes every recovery point of an instance, the newest
// and soft-deleted ones included: stop protection with delete-data.
func (e *Engine) DeleteAll(ctx context.Context, vault, instance string) (*Result, error) {
	rps, err := e.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: vault, Instance: instance, IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	return e.remove(ctx, rps), nil
}

// DeletePoints removes the named recovery points of a vault (a purge of
// soft-deleted points, or an explicit delete without soft delete); a
// point already gone is skipped.
func (e *Engine) DeletePoints(ctx context.Context, vault string, ids []string) (*Result, error) {
	var rps []*store.RecoveryPoint
	for _, id := range ids {
		rp, err := e.Store.GetRecoveryPoint(ctx, vault, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		rps = append(rps, rp)
	}
	return e.remove(ctx, rps), nil
}

func (e *Engine) remove(ctx context.Context, rps []*store.RecoveryPoint) *Result {
	res := &Result{Deleted: []string{}}
	for _, rp := range rps {
		if e.Remover != nil {
			if err := e.Remover.RemoveRecoveryPoint(ctx, rp); err != nil {
				code := "RecoveryPointDataNotRemoved"
				var coded interface{ JobCode() string }
				if errors.As(err, &coded) {
					code = coded.JobCode() // CopyNotRemoved: the copy in a secondary location
				}
				res.Errors = append(res.Errors, store.Issue{Code: code, Message: err.Error(), Object: rp.ID})
				continue
			}
		}
		if err := e.Store.DeleteRecoveryPoint(ctx, rp.Vault, rp.ID, 0); err != nil {
			res.Errors = append(res.Errors, store.Issue{Code: "RecoveryPointNotDeleted", Message: err.Error(), Object: rp.ID})
			continue
		}
		e.log().Info("recovery point expired", "vault", rp.Vault, "instance", rp.Instance, "id", rp.ID, "tag", rp.Tag, "taken", rp.Time)
		res.Deleted = append(res.Deleted, rp.ID)
	}
	return res
}

// RetainForever clears the expiry of every recovery point of an instance
// (stop protection with retain-forever).
//
// One statement, however many points the instance has: stopping
// protection does a bounded amount of work inside its request (a point at
// a time, with a commit each, grows with the points kept and could pass
// the API's write timeout).
func (e *Engine) RetainForever(ctx context.Context, vault, instance string) error {
	_, err := e.Store.ClearRecoveryPointExpiries(ctx, vault, instance)
	return err
}

// Reapply recomputes the expiry of points without one from their tag and
// the policy (resume after retain-forever). On-demand points and tags the
// policy no longer has fall back to the default rule.
func (e *Engine) Reapply(ctx context.Context, p *policy.Policy, vault, instance string) error {
	rps, err := e.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: vault, Instance: instance})
	if err != nil {
		return err
	}
	// One transaction for all of them (all or none, one commit).
	exps := map[string]*time.Time{}
	for _, rp := range rps {
		if rp.ExpiresAt != nil {
			continue
		}
		// The tiers keep the expiries computed when the point was
		// recorded; retain-forever only overrode the point's own.
		if exp := latestTierExpiry(rp); exp != nil {
			exps[rp.ID] = exp
			continue
		}
		r := p.Default()
		for _, x := range p.Rules {
			if x.Name == rp.Tag {
				r = x
			}
		}
		exp := r.Duration.AddTo(rp.Time.UTC())
		exps[rp.ID] = &exp
	}
	if len(exps) == 0 {
		return nil
	}
	return e.Store.SetRecoveryPointExpiries(ctx, vault, exps)
}

// Run expires recovery points of every instance of every vault, recording
// one Retention job per instance that lost any. Instances stopped with
// retain-forever have no expiring points, so they are naturally skipped.
func (e *Engine) Run(ctx context.Context) ([]*store.Job, error) {
	vaults, err := e.Store.ListVaults(ctx)
	if err != nil {
		return nil, err
	}
	var jobs []*store.Job
	for _, v := range vaults {
		insts, err := e.Store.ListInstances(ctx, v.Name, "")
		if err != nil {
			return jobs, err
		}
		for _, in := range insts {
			start := e.Clock.Now()
			res, err := e.ExpireInstance(ctx, v.Name, in.Name)
			if err != nil {
				return jobs, err
			}
			if len(res.Deleted) == 0 && len(res.SnapshotsExpired) == 0 && len(res.Errors) == 0 {
				continue
			}
			j, err := e.RecordJob(ctx, v.Name, in.Name, start, res)
			if err != nil {
				return jobs, err
			}
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

// RecordJob stores a finished Retention job describing res.
func (e *Engine) RecordJob(ctx context.Context, vault, instance string, start time.Time, res *Result) (*store.Job, error) {
	end := e.Clock.Now()
	params, _ := json.Marshal(res)
	j := &store.Job{Vault: vault, Type: store.JobRetention, Instance: instance, State: store.JobCompleted,
		StartedAt: &start, EndedAt: &end, Params: params, Errors: res.Errors}
	if e.Remover == nil {
		j.Warnings = append(j.Warnings, store.Issue{Code: "CatalogOnly",
			Message: "recovery points were removed from the catalog; snapshot and repository cleanup is not available in this vault version"})
	}
	if len(res.Errors) > 0 {
		j.State = store.JobFailed
		if len(res.Deleted) > 0 || len(res.SnapshotsExpired) > 0 {
			j.State = store.JobCompletedWithWarnings
			j.Warnings, j.Errors = append(j.Warnings, res.Errors...), nil
		}
	} else if len(j.Warnings) > 0 {
		j.State = store.JobCompletedWithWarnings
	}
	if err := e.Store.CreateJob(ctx, j); err != nil {
		return nil, err
	}
	return j, nil
}

package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
)

// tiersOf decides, when a backup starts, whether it goes to the vault tier
// and where its copy goes, and records the decision in the job's
// parameters (the point is recorded from them when the backup succeeds):
//   - a scheduled backup goes to the vault tier when it is the first of a
//     vault rule's period (retention.VaultRule) — judged now, against the
//     points that reached the vault tier and the vault-tier backups still
//     running, so a failed first backup leaves the next one to take its
//     place;
//   - an on-demand backup when it asked for it (BackupParams.VaultTier);
//   - a vault-tier backup is copied to the policy's copyTo, when set.
func (r *Runner) tiersOf(ctx context.Context, j *store.Job, in *store.Instance) (BackupParams, error) {
	var bp BackupParams
	if len(j.Params) > 0 {
		_ = json.Unmarshal(j.Params, &bp)
	}
	pol, err := r.Store.GetPolicy(ctx, j.Vault, in.Policy)
	if err != nil {
		return bp, fmt.Errorf("policy %q of instance %q: %w", in.Policy, in.Name, err)
	}
	p, err := policy.ParseJSON(pol.Schedule, pol.Retention)
	if err != nil {
		return bp, err // a *policy.ValidationError: the job fails with PolicyInvalid
	}
	if j.Type == store.JobScheduledBackup {
		rps, err := r.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: j.Vault, Instance: in.Name})
		if err != nil {
			return bp, err
		}
		earlier := retention.VaultTimes(rps)
		// A vault-tier backup still running counts too: a mover can
		// outlast the schedule's period, and its day needs one point.
		running, err := r.Store.ListJobs(ctx, store.JobFilter{Vault: j.Vault, Instance: in.Name, State: store.JobInProgress})
		if err != nil {
			return bp, err
		}
		for _, o := range running {
			var op BackupParams
			if o.ID != j.ID && o.StartedAt != nil && json.Unmarshal(o.Params, &op) == nil && op.VaultRule != "" {
				earlier = append(earlier, *o.StartedAt)
			}
		}
		if rule, ok := retention.VaultRule(p, r.Clock.Now().UTC(), earlier); ok {
			bp.VaultRule = rule.Name
		}
	}
	if (bp.VaultTier || bp.VaultRule != "") && pol.CopyTo != "" {
		bp.CopyTo = pol.CopyTo
	}
	if bp.VaultRule != "" || bp.CopyTo != "" {
		j.Params = mergeParams(j.Params, bp)
	}
	return bp, nil
}

// mergeParams writes bp's fields into a job's parameters, keeping the
// others (requestedBy).
func mergeParams(raw json.RawMessage, bp BackupParams) json.RawMessage {
	m := map[string]any{}
	_ = json.Unmarshal(raw, &m)
	b, _ := json.Marshal(bp)
	var add map[string]any
	_ = json.Unmarshal(b, &add)
	for k, v := range add {
		m[k] = v
	}
	out, _ := json.Marshal(m)
	return out
}

// vaultRuleNamed returns the policy's rule of that name that keeps the
// vault tier; a rule since removed or moved to the operational datastore
// still keeps the data the backup moved, for the policy default's
// duration.
func vaultRuleNamed(p *policy.Policy, name string) *policy.Rule {
	if name == "" {
		return nil
	}
	for _, r := range p.Rules {
		if r.Name == name && r.Datastore == policy.VaultStore {
			return &r
		}
	}
	r := p.Default()
	r.Name, r.Datastore = name, policy.VaultStore
	return &r
}

// FallbackAuthorizer is implemented by Authorizers that judge whether a
// restore may read a point's copy in a secondary storage location.
type FallbackAuthorizer interface {
	AuthorizeFallback(ctx context.Context, j *store.Job, in *store.Instance, target, location string) error
}

// CodeFallbackNotAuthorized: a restore job's point has a copy, but the
// restore may not read it; it reads the primary only (a warning).
const CodeFallbackNotAuthorized = "FallbackNotAuthorized"

// fallback is the secondary storage location a restore of rp may read
// when the primary is unreachable: where its copy is, when the job's
// Authorizer allows reading it there. A refusal is a warning on the job:
// the restore goes on from the primary alone.
func (r *Runner) fallback(ctx context.Context, j *store.Job, in *store.Instance, target string, rp *store.RecoveryPoint) (string, error) {
	if len(rp.Copies) == 0 {
		return "", nil
	}
	loc := rp.Copies[0].StorageLocation
	if fa, ok := r.Authorize.(FallbackAuthorizer); ok && in != nil {
		if err := fa.AuthorizeFallback(ctx, j, in, target, loc); err != nil {
			var coded interface{ JobCode() string }
			if !errors.As(err, &coded) {
				return "", err
			}
			j.Warnings = append(j.Warnings, store.Issue{Code: CodeFallbackNotAuthorized, Object: loc, Message: fmt.Sprintf(
				"recovery point %s has a copy in %s, but this restore may not read it (%v): it reads %s only", rp.ID, loc, err, in.StorageLocation)})
			return "", nil
		}
	}
	return loc, nil
}

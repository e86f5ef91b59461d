package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/arca-backup/arca/internal/calendar"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

// StartVerification queues a Verification job: the recovery point is
// restored into sandbox namespaces of the target cluster, compared with
// the point and checked, and the verdict recorded (docs/vault.md,
// Verification). The caller needs what a restore into that cluster needs
// (RestoreRequirements), now and when the job runs. Of the restore
// criteria only filters and restoreHookReferences (smoke tests) are
// accepted: the extension maps the namespaces itself and changes nothing
// outside the sandbox.
func (s *Service) StartVerification(ctx context.Context, caller, vault string, b jobs.VerificationParams) (*store.Job, error) {
	if b.ReadDataPercent < 0 || b.ReadDataPercent > 100 {
		return nil, InvalidField("InvalidValue", "readDataPercent", fmt.Sprint(b.ReadDataPercent), "a share of the packs between 0 and 100",
			"readDataPercent %d: want 0 to 100", b.ReadDataPercent)
	}
	rs, err := s.CheckRestore(ctx, vault, jobs.RestoreParams{RecoveryPoint: b.RecoveryPoint, TargetCluster: b.TargetCluster, Criteria: b.Criteria})
	if err != nil {
		return nil, err
	}
	c := rs.Criteria
	for _, bad := range []struct {
		set   bool
		field string
	}{
		{len(c.NamespaceMappings) > 0, "namespaceMappings"},
		{len(c.ResourceModifiers) > 0, "resourceModifiers"},
		{c.IncludeClusterScopeResources != nil && *c.IncludeClusterScopeResources, "includeClusterScopeResources"},
		{c.DryRun, "dryRun"},
		{c.ConflictPolicy == "Patch", "conflictPolicy"},
	} {
		if bad.set {
			return nil, InvalidField("InvalidVerification", "restoreCriteria."+bad.field, bad.field,
				"leave it out: a verification restores namespaced objects into its own sandbox namespaces (arca-verify-…), skips what exists and changes nothing",
				"a verification does not take restoreCriteria.%s", bad.field)
		}
	}
	in, err := s.RestoreInstance(ctx, rs)
	if err != nil {
		return nil, err
	}
	if err := s.Require(ctx, RestoreRequirements(caller, in, b.TargetCluster)); err != nil {
		return nil, err
	}
	b.Result, b.RequestedBy = nil, caller
	j := &store.Job{Vault: vault, Type: store.JobVerification, Instance: in.Name, State: store.JobQueued, Params: withRequester(b, caller)}
	if err := s.Store.CreateJob(ctx, j); err != nil {
		return nil, err
	}
	s.created(j)
	return j, nil
}

// withVerifications fills in each point's latest verification, read from
// the vault's finished Verification jobs (newest first).
func (s *Service) withVerifications(ctx context.Context, vault string, rps ...*store.RecoveryPoint) error {
	if len(rps) == 0 {
		return nil
	}
	js, err := s.Store.ListJobs(ctx, store.JobFilter{Vault: vault, Type: store.JobVerification})
	if err != nil {
		return err
	}
	latest := map[string]*store.Verification{}
	for _, j := range js {
		v := jobs.VerificationOf(j)
		if v == nil {
			continue
		}
		var p jobs.VerificationParams
		if err := json.Unmarshal(j.Params, &p); err != nil {
			continue
		}
		if _, seen := latest[p.RecoveryPoint]; !seen {
			latest[p.RecoveryPoint] = v
		}
	}
	for _, rp := range rps {
		rp.Verification = latest[rp.ID]
	}
	return nil
}

// Verify periods of a policy.
var verifyPeriods = map[string]calendar.Period{"daily": calendar.Day, "weekly": calendar.Week, "monthly": calendar.Month}

// checkVerify validates a policy's verify period.
func checkVerify(v string) error {
	if _, ok := verifyPeriods[v]; v != "" && !ok {
		return InvalidField("InvalidValue", "verify", v, "daily, weekly or monthly (left out: no scheduled verification)",
			"verify %q: want daily, weekly or monthly", v)
	}
	return nil
}

// ScheduledVerificationReadPercent is the share of packs a scheduled
// verification reads whole.
const ScheduledVerificationReadPercent = 10

// ScheduleVerifications queues, for every protected instance whose
// policy has verify set, a Verification job of its latest available
// recovery point in the instance's own cluster, unless a Verification job
// of the instance was already created in the current period (day, ISO week
// or month, UTC) of now. The retention pass calls it; the jobs carry no
// requester (the vault's own identities need what a restore needs, checked
// when each job starts).
func (s *Service) ScheduleVerifications(ctx context.Context, now time.Time) ([]*store.Job, error) {
	vaults, err := s.Store.ListVaults(ctx)
	if err != nil {
		return nil, err
	}
	var queued []*store.Job
	for _, v := range vaults {
		ins, err := s.Store.ListInstances(ctx, v.Name, "")
		if err != nil {
			return queued, err
		}
		policies := map[string]*store.Policy{}
		for _, in := range ins {
			if in.ProtectionState != store.ProtectionConfigured {
				continue
			}
			p, ok := policies[in.Policy]
			if !ok {
				if p, err = s.Store.GetPolicy(ctx, v.Name, in.Policy); err != nil && !errors.Is(err, store.ErrNotFound) {
					return queued, err
				}
				policies[in.Policy] = p
			}
			if p == nil || p.Verify == "" {
				continue
			}
			period := verifyPeriods[p.Verify]
			done, err := s.Store.ListJobs(ctx, store.JobFilter{Vault: v.Name, Instance: in.Name, Type: store.JobVerification, Limit: 1})
			if err != nil {
				return queued, err
			}
			if len(done) > 0 && period.Same(done[0].CreatedAt, now) {
				continue
			}
			rps, err := s.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: v.Name, Instance: in.Name})
			if err != nil {
				return queued, err
			}
			var latest *store.RecoveryPoint
			for _, rp := range rps { // oldest first
				if rp.State == store.RPAvailable && rp.RepoID != "" {
					latest = rp
				}
			}
			if latest == nil {
				continue
			}
			params, _ := json.Marshal(jobs.VerificationParams{RecoveryPoint: latest.ID, TargetCluster: in.Cluster,
				VerificationOptions: jobs.VerificationOptions{ReadDataPercent: ScheduledVerificationReadPercent}})
			j := &store.Job{Vault: v.Name, Type: store.JobVerification, Instance: in.Name, State: store.JobQueued, Params: params,
				DedupKey: "verify/" + in.Name + "/" + p.Verify + "/" + period.Key(now)}
			if err := s.Store.CreateJob(ctx, j); err != nil {
				if errors.Is(err, store.ErrAlreadyExists) {
					continue // another replica queued it
				}
				return queued, err
			}
			s.created(j)
			queued = append(queued, j)
		}
	}
	return queued, nil
}

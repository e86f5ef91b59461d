package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- recovery points ----

// ListRecoveryPoints lists a vault's recovery points, of one instance when
// set, oldest first.
func (s *Service) ListRecoveryPoints(ctx context.Context, vault, instance string) ([]*store.RecoveryPoint, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	rps, err := s.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: vault, Instance: instance})
	if err != nil {
		return nil, err
	}
	return rps, s.withVerifications(ctx, vault, rps...)
}

// GetRecoveryPoint returns a recovery point, with its latest verification.
func (s *Service) GetRecoveryPoint(ctx context.Context, vault, id string) (*store.RecoveryPoint, error) {
	rp, err := s.Store.GetRecoveryPoint(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	return rp, s.withVerifications(ctx, vault, rp)
}

// ---- catalog sync ----

// SyncPoint is a recovery point found in the repository, as `arca vault
// sync` reads it from the manifest the extension wrote.
type SyncPoint struct {
	// RepositoryID is the point's full repository ID (64 hex characters):
	// never latest, never a prefix, which could name another instance's
	// point in a shared repository.
	RepositoryID string `json:"repositoryId"`
	// Vault and Instance are the manifest's arca.io/vault and
	// arca.io/instance tags: they must name the vault and instance synced.
	Vault    string    `json:"vault"`
	Instance string    `json:"instance"`
	Time     time.Time `json:"time"`
	JobID    string    `json:"jobId,omitempty"` // the manifest's arca.io/job tag
	Items    int64     `json:"items"`
	Bytes    int64     `json:"bytes"`
	// VaultTier: the point holds its volumes' data in the repository
	// (manifest field volumeData): it is recorded in the vault tier.
	VaultTier bool `json:"vaultTier,omitempty"`
}

var repositoryIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkRepositoryID refuses anything but a full repository ID.
func checkRepositoryID(field, id string) error {
	if !repositoryIDRE.MatchString(id) {
		return InvalidField("InvalidRecoveryPointID", field, id,
			"the recovery point's full repository ID: 64 lowercase hex characters, as arca repo list -o json shows it (latest and prefixes are not accepted)")
	}
	return nil
}

// SyncRequest is the body of POST …/instances/{instance}/sync.
type SyncRequest struct {
	RecoveryPoints []SyncPoint `json:"recoveryPoints"`
}

// SyncResult says what a sync changed.
type SyncResult struct {
	Created  []*store.RecoveryPoint `json:"created"`
	Existing int                    `json:"existing"`
}

// MaxSyncPoints bounds one sync request.
const MaxSyncPoints = 10000

// SyncRecoveryPoints re-creates the catalog entries of recovery points
// that are in the repository but not in the vault (after losing the
// database). A point written by a vault job gets the ID it had
// (jobs.RecoveryPointID of its job); others an ID from their repository
// ID. Tags and expiry are computed again from the instance's policy,
// oldest first, as when they were taken.
func (s *Service) SyncRecoveryPoints(ctx context.Context, vault, instance string, req SyncRequest) (*SyncResult, error) {
	if len(req.RecoveryPoints) > MaxSyncPoints {
		return nil, TooLargef("TooManyRecoveryPoints", "at most %d recovery points per sync request", MaxSyncPoints)
	}
	for i, p := range req.RecoveryPoints {
		field := fmt.Sprintf("recoveryPoints[%d]", i)
		if err := checkRepositoryID(field+".repositoryId", p.RepositoryID); err != nil {
			return nil, err
		}
		if p.Time.IsZero() || p.Items < 0 || p.Bytes < 0 {
			return nil, InvalidField("InvalidValue", field, p.RepositoryID, "needs repositoryId, time and non-negative items and bytes")
		}
	}
	in, err := s.Store.GetInstance(ctx, vault, instance)
	if err != nil {
		return nil, err
	}
	for i, p := range req.RecoveryPoints {
		if p.Vault != vault || p.Instance != instance {
			return nil, InvalidField(v1alpha1.CodeRecoveryPointOfAnotherInstance, fmt.Sprintf("recoveryPoints[%d]", i), p.RepositoryID,
				fmt.Sprintf("sync only the points whose manifest is tagged %s=%s and %s=%s", v1alpha1.TagVault, vault, v1alpha1.TagInstance, instance),
				"recovery point %s is tagged vault %q, instance %q, not vault %q, instance %q: a sync re-creates only the points of the instance synced",
				p.RepositoryID, p.Vault, p.Instance, vault, instance)
		}
	}
	_, p, err := s.policyOf(ctx, in)
	if err != nil {
		return nil, err
	}
	have, err := s.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: in.Vault, Instance: in.Name})
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, rp := range have {
		known[rp.RepoID] = true
	}
	vaultTimes := retention.VaultTimes(have)
	pts := append([]SyncPoint(nil), req.RecoveryPoints...)
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].Time.Before(pts[j].Time) })
	eng := s.retention()
	res := &SyncResult{Created: []*store.RecoveryPoint{}}
	for _, sp := range pts {
		if known[sp.RepositoryID] {
			res.Existing++
			continue
		}
		known[sp.RepositoryID] = true
		// The whole repository ID: a prefix could name two points, and
		// recovery points are referred to by full ID only.
		id := "rp-repo-" + sp.RepositoryID
		if sp.JobID != "" {
			id = jobs.RecoveryPointID(sp.JobID)
		}
		rp := &store.RecoveryPoint{Vault: in.Vault, ID: id, Instance: in.Name, JobID: sp.JobID, Time: sp.Time.UTC(),
			RepoID: sp.RepositoryID, Items: sp.Items, Bytes: sp.Bytes}
		var vault *policy.Rule
		if sp.VaultTier {
			// The vault rule whose period it opened; a vault-tier point no
			// rule takes (on demand, or a second of its day) keeps its
			// data as long as its snapshots.
			r, ok := retention.VaultRule(p, rp.Time, vaultTimes)
			if !ok {
				r = retention.ClassifyOperational(p, rp.Time, nil)
			}
			vault = &r
			vaultTimes = append(vaultTimes, rp.Time)
		}
		if err := eng.ApplyTiers(ctx, p, rp, vault); err != nil {
			return nil, err
		}
		if in.ProtectionState == store.ProtectionStopped && in.StopMode == store.StopRetainForever {
			rp.ExpiresAt = nil
		}
		if err := s.Store.CreateRecoveryPoint(ctx, rp); errors.Is(err, store.ErrAlreadyExists) {
			res.Existing++
			continue
		} else if err != nil {
			return nil, err
		}
		res.Created = append(res.Created, rp)
	}
	return res, nil
}

// ---- restores ----

// RestoreCriteria decodes and checks a restore's restoreCriteria (empty:
// the defaults).
func RestoreCriteria(raw json.RawMessage) (v1alpha1.RestoreCriteria, error) {
	var c v1alpha1.RestoreCriteria
	if len(raw) == 0 {
		return c, nil
	}
	if err := decodeStrict(raw, &c); err != nil {
		return c, InvalidField("InvalidRestoreCriteria", "restoreCriteria", "", err.Error())
	}
	if err := c.Validate(); err != nil {
		return c, InvalidField("InvalidRestoreCriteria", "restoreCriteria", "", err.Error())
	}
	return c, nil
}

// Restore is a checked restore request: the recovery point, the instance
// that took it and the criteria.
type Restore struct {
	Point    *store.RecoveryPoint
	Instance *store.Instance
	Criteria v1alpha1.RestoreCriteria
}

// CheckRestore checks a restore request in vault (validation and start
// share it).
func (s *Service) CheckRestore(ctx context.Context, vault string, b jobs.RestoreParams) (*Restore, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	if err := CheckName("targetCluster", b.TargetCluster); err != nil {
		return nil, err
	}
	rp, err := s.Store.GetRecoveryPoint(ctx, vault, b.RecoveryPoint)
	if errors.Is(err, store.ErrNotFound) {
		return nil, InvalidField("UnknownReference", "recoveryPoint", b.RecoveryPoint,
			"name a recovery point by its full ID, as arca recovery-point list shows it (latest and prefixes are not accepted)",
			"recovery point %q does not exist in vault %q: recovery points are named by full ID only", b.RecoveryPoint, vault)
	} else if err != nil {
		return nil, err
	}
	if rp.State == store.RPSoftDeleted || rp.State == store.RPDeleting {
		return nil, InvalidField(CodeSoftDeleted, "recoveryPoint", rp.ID, "undelete it first (arca recovery-point undelete "+rp.ID+"), or restore another point",
			"recovery point %s is %s and cannot be restored: undelete it first (arca recovery-point undelete %s)", rp.ID, rp.State, rp.ID)
	}
	// What the cluster is asked to restore is the point's repository ID:
	// it must be whole, or the extension would resolve it in a repository
	// that other instances share.
	if rp.RepoID != "" {
		if err := checkRepositoryID("recoveryPoint", rp.RepoID); err != nil {
			return nil, InvalidField("InvalidRecoveryPointID", "recoveryPoint", rp.ID, "re-create the catalog entry with arca vault sync",
				"recovery point %s names repository point %q, which is not a full repository ID", rp.ID, rp.RepoID)
		}
	}
	crit, err := RestoreCriteria(b.Criteria)
	if err != nil {
		return nil, err
	}
	return &Restore{Point: rp, Criteria: crit}, nil
}

// RestoreInstance returns the instance a checked restore's point belongs to.
func (s *Service) RestoreInstance(ctx context.Context, r *Restore) (*store.Instance, error) {
	in, err := s.Store.GetInstance(ctx, r.Point.Vault, r.Point.Instance)
	if err != nil {
		return nil, fmt.Errorf("instance %s of recovery point %s: %w", r.Point.Instance, r.Point.ID, err)
	}
	return in, nil
}

// StartRestore queues a restore job asked for by caller, who, like the
// vault's identities, must hold the restore's requirements
// (RestoreRequirements) now and when the job runs.
func (s *Service) StartRestore(ctx context.Context, caller, vault string, b jobs.RestoreParams) (*store.Job, error) {
	rs, err := s.CheckRestore(ctx, vault, b)
	if err != nil {
		return nil, err
	}
	in, err := s.RestoreInstance(ctx, rs)
	if err != nil {
		return nil, err
	}
	if err := s.Require(ctx, RestoreRequirements(caller, in, b.TargetCluster)); err != nil {
		return nil, err
	}
	j := &store.Job{Vault: vault, Type: store.JobRestore, State: store.JobQueued, Params: withRequester(b, caller)}
	if err := s.Store.CreateJob(ctx, j); err != nil {
		return nil, err
	}
	s.created(j)
	return j, nil
}

// ---- jobs ----

// MaxJobs bounds one job listing.
const MaxJobs = 1000

// ListJobs lists a vault's jobs, newest first, at most limit of them
// (1-1000; empty: 1000).
func (s *Service) ListJobs(ctx context.Context, f store.JobFilter, limit string) ([]*store.Job, error) {
	if _, err := s.Store.GetVault(ctx, f.Vault); err != nil {
		return nil, err
	}
	f.Limit = MaxJobs
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > MaxJobs {
			return nil, InvalidField("InvalidValue", "limit", limit, "want 1-1000", "limit %q: want 1-1000", limit)
		}
		f.Limit = n
	}
	return s.Store.ListJobs(ctx, f)
}

// GetJob returns a job.
func (s *Service) GetJob(ctx context.Context, vault, id string) (*store.Job, error) {
	return s.Store.GetJob(ctx, vault, id)
}

// CancelJob cancels a job that has not finished (in its cluster too).
func (s *Service) CancelJob(ctx context.Context, vault, id string) (*store.Job, error) {
	j, err := s.Store.GetJob(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	if store.JobStateTerminal(j.State) {
		return nil, Conflictf("JobFinished", "job %s is already %s", j.ID, j.State)
	}
	if err := s.Runner.Cancel(ctx, j); err != nil {
		return nil, err
	}
	if s.OnJobFinished != nil {
		s.OnJobFinished(j)
	}
	return j, nil
}

package service

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Soft delete: in a vault whose SoftDeleteDays is above zero, deleting a
// recovery point, stopping protection with delete-data and deleting an
// instance with its data keep what they delete for that many days in the
// SoftDeleted state: hidden from lists (unless asked for), not
// restorable, undeletable, still counted in the vault's storage figures.
// PurgeSoftDeleted, run by the vault's retention pass, queues the real
// deletion jobs once the period is over. Without soft delete (0 days) the
// deletion jobs are queued at once.

// Codes of soft delete.
const (
	CodeNotSoftDeleted      = "NotSoftDeleted"
	CodeSoftDeleted         = "SoftDeleted"
	CodeInstanceSoftDeleted = "InstanceSoftDeleted"
)

func (s *Service) purgeTime(v *store.Vault, now time.Time) time.Time {
	return now.Add(time.Duration(v.SoftDeleteDays) * 24 * time.Hour)
}

// immutableDelete refuses, in an immutable vault, deleting any of rps
// before it expires.
func (s *Service) immutableDelete(v *store.Vault, what string, rps []*store.RecoveryPoint) error {
	if !v.Immutable() {
		return nil
	}
	now := s.now().Now()
	for _, rp := range rps {
		if rp.ExpiresAt == nil || rp.ExpiresAt.After(now) {
			until := "it is kept until deleted (no expiry)"
			if rp.ExpiresAt != nil {
				until = "it expires at " + rp.ExpiresAt.UTC().Format(time.RFC3339)
			}
			return Conflictf(CodeImmutableDelete, "vault %q is immutable (%s): %s would delete recovery point %s before it expires, and %s; wait until it expires, or (unlocked vaults only) disable immutability with arca vault update %s --immutability disabled",
				v.Name, v.Immutability, what, rp.ID, until, v.Name)
		}
	}
	return nil
}

// ListRecoveryPointsWith lists a vault's recovery points, of one
// instance when set, oldest first; deleted selects soft-deleted ones:
// "" none (the default), "include" them too, "only" them.
func (s *Service) ListRecoveryPointsWith(ctx context.Context, vault, instance, deleted string) ([]*store.RecoveryPoint, error) {
	f := store.RecoveryPointFilter{Vault: vault, Instance: instance}
	switch deleted {
	case "", "false":
	case "include", "true":
		f.IncludeDeleted = true
	case "only":
		f.OnlyDeleted = true
	default:
		return nil, InvalidField("InvalidValue", "deleted", deleted, "want include or only (left out: soft-deleted points are not listed)")
	}
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	rps, err := s.Store.ListRecoveryPoints(ctx, f)
	if err != nil {
		return nil, err
	}
	return rps, s.withVerifications(ctx, vault, rps...)
}

// DeleteRecoveryPoint deletes a recovery point: soft-deleted when the
// vault keeps deleted points (the point is returned), else queued for
// removal (the job is returned). Refused in an immutable vault before
// the point expires; guarded by the resource guard.
func (s *Service) DeleteRecoveryPoint(ctx context.Context, vault, id string, expected int64) (*store.RecoveryPoint, *store.Job, error) {
	v, err := s.Store.GetVault(ctx, vault)
	if err != nil {
		return nil, nil, err
	}
	rp, err := s.Store.GetRecoveryPoint(ctx, vault, id)
	if err != nil {
		return nil, nil, err
	}
	switch rp.State {
	case store.RPSoftDeleted:
		return nil, nil, Conflictf(CodeSoftDeleted, "recovery point %s is already soft-deleted; it is purged at %s (arca recovery-point undelete %s brings it back)", rp.ID, fmtTime(rp.PurgeAt), rp.ID)
	case store.RPDeleting:
		// Its deletion job is pending, or it failed (the message of
		// that job says why): then the delete queues a new one.
		if busy, err := s.retentionPending(ctx, vault, rp.Instance); err != nil {
			return nil, nil, err
		} else if busy {
			return nil, nil, Conflictf("RecoveryPointDeleting", "recovery point %s is being deleted already: a Retention job of instance %s is queued or running (arca job list --type Retention)", rp.ID, rp.Instance)
		}
	}
	if err := Precondition(expected, rp.Version); err != nil {
		return nil, nil, err
	}
	if err := s.immutableDelete(v, "deleting it", []*store.RecoveryPoint{rp}); err != nil {
		return nil, nil, err
	}
	var j *store.Job
	err = s.guarded(ctx, v, OpDeleteRecoveryPoint, rp.ID, func() error {
		now := s.now().Now().UTC()
		if v.SoftDeleteDays > 0 && rp.State != store.RPDeleting {
			return fromStore(s.Store.SoftDeleteRecoveryPoint(ctx, vault, rp.ID, rp.Version, now, s.purgeTime(v, now)), expected)
		}
		if rp.State != store.RPDeleting {
			rp.State = store.RPDeleting
			if err := s.Store.UpdateRecoveryPoint(ctx, rp); err != nil {
				return fromStore(err, expected)
			}
		}
		var err error
		j, err = s.queueRetention(ctx, vault, rp.Instance, jobs.RetentionParams{RecoveryPoints: []string{rp.ID}})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	rp, err = s.Store.GetRecoveryPoint(ctx, vault, id)
	return rp, j, err
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "(never)"
	}
	return t.UTC().Format(time.RFC3339)
}

// UndeleteRecoveryPoint brings a soft-deleted point back (Available).
// A point deleted with its instance comes back with the instance.
func (s *Service) UndeleteRecoveryPoint(ctx context.Context, vault, id string) (*store.RecoveryPoint, error) {
	rp, err := s.Store.GetRecoveryPoint(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	if rp.State != store.RPSoftDeleted {
		return nil, Conflictf(CodeNotSoftDeleted, "recovery point %s is %s, not soft-deleted: nothing to undelete", rp.ID, rp.State)
	}
	if in, err := s.Store.GetInstance(ctx, vault, rp.Instance); err == nil && in.ProtectionState == store.ProtectionSoftDeleted {
		return nil, Conflictf(CodeInstanceSoftDeleted, "recovery point %s belongs to backup instance %q, which is soft-deleted: undelete the instance (arca instance undelete %s) and its points come back with it",
			rp.ID, in.Name, in.Name)
	}
	if err := s.Store.UndeleteRecoveryPoint(ctx, vault, id); err != nil {
		return nil, err
	}
	return s.Store.GetRecoveryPoint(ctx, vault, id)
}

// softDeleteInstance soft-deletes a stopped instance and its points.
func (s *Service) softDeleteInstance(ctx context.Context, v *store.Vault, in *store.Instance, deleteInstance bool, expected int64) error {
	now := s.now().Now().UTC()
	in.StopMode, in.DeleteInstance = store.StopDeleteData, deleteInstance
	return fromStore(s.Store.SoftDeleteInstance(ctx, in, now, s.purgeTime(v, now)), expected)
}

// UndeleteInstance brings a soft-deleted instance back, with the points
// deleted with it: protection stays stopped, and its points are kept
// (retain-forever) until protection is resumed or stopped another way.
func (s *Service) UndeleteInstance(ctx context.Context, vault, name string, expected int64) (*store.Instance, error) {
	in, err := s.Store.GetInstance(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if in.ProtectionState != store.ProtectionSoftDeleted {
		return nil, Conflictf(CodeNotSoftDeleted, "backup instance %q is %s, not soft-deleted: nothing to undelete", in.Name, in.ProtectionState)
	}
	if err := Precondition(expected, in.Version); err != nil {
		return nil, err
	}
	if err := s.Store.UndeleteInstance(ctx, in, store.ProtectionStopped, store.StopRetainForever); err != nil {
		return nil, fromStore(err, expected)
	}
	if err := s.retention().RetainForever(ctx, in.Vault, in.Name); err != nil {
		return nil, err
	}
	return in, nil
}

func (s *Service) queueRetention(ctx context.Context, vault, instance string, p jobs.RetentionParams) (*store.Job, error) {
	params, _ := json.Marshal(p)
	j := &store.Job{Vault: vault, Type: store.JobRetention, Instance: instance, State: store.JobQueued, Params: params}
	if err := s.Store.CreateJob(ctx, j); err != nil {
		return nil, err
	}
	s.created(j)
	return j, nil
}

// PurgeSoftDeleted ends the soft-delete period of what reached its purge
// time: a soft-deleted instance is stopped with delete-data again and its
// deletion job queued (deleting the instance too when it was deleted
// with its data); soft-deleted points of other instances are marked
// Deleting and one deletion job per instance is queued. The job runner
// then removes their data and catalog entries. It returns the jobs.
func (s *Service) PurgeSoftDeleted(ctx context.Context) ([]*store.Job, error) {
	now := s.now().Now().UTC()
	var out []*store.Job
	ins, err := s.Store.ListPurgeableInstances(ctx, now)
	if err != nil {
		return nil, err
	}
	purged := map[string]bool{}
	for _, in := range ins {
		deleteInstance := in.DeleteInstance
		in.ProtectionState, in.StopMode = store.ProtectionStopped, store.StopDeleteData
		if err := s.Store.UpdateInstance(ctx, in); err != nil {
			return out, fmt.Errorf("purge instance %s/%s: %w", in.Vault, in.Name, err)
		}
		purged[in.Vault+"/"+in.Name] = true
		j, err := s.queueRetention(ctx, in.Vault, in.Name, jobs.RetentionParams{DeleteAll: true, DeleteInstance: deleteInstance})
		if err != nil {
			return out, err
		}
		s.audit("softDeletePurged", "vault", in.Vault, "instance", in.Name, "job", j.ID)
		out = append(out, j)
	}
	rps, err := s.Store.ListPurgeableRecoveryPoints(ctx, now)
	if err != nil {
		return out, err
	}
	byInstance := map[[2]string][]string{}
	busy := map[[2]string]bool{} // instances with a deletion job queued or running
	for _, rp := range rps {
		k := [2]string{rp.Vault, rp.Instance}
		if purged[rp.Vault+"/"+rp.Instance] {
			continue // the instance's job removes it
		}
		if in, err := s.Store.GetInstance(ctx, rp.Vault, rp.Instance); err == nil && in.ProtectionState == store.ProtectionSoftDeleted {
			continue // purged with its instance, later
		}
		if rp.State == store.RPDeleting {
			// Purged before: queued again only when no deletion job of
			// its instance is pending (its job failed to remove it).
			b, ok := busy[k]
			if !ok {
				if b, err = s.retentionPending(ctx, rp.Vault, rp.Instance); err != nil {
					return out, err
				}
				busy[k] = b
			}
			if b {
				continue
			}
		} else {
			rp.State = store.RPDeleting
			if err := s.Store.UpdateRecoveryPoint(ctx, rp); err != nil {
				return out, fmt.Errorf("purge recovery point %s: %w", rp.ID, err)
			}
		}
		byInstance[k] = append(byInstance[k], rp.ID)
	}
	keys := make([][2]string, 0, len(byInstance))
	for k := range byInstance {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+"/"+keys[i][1] < keys[j][0]+"/"+keys[j][1] })
	for _, k := range keys {
		j, err := s.queueRetention(ctx, k[0], k[1], jobs.RetentionParams{RecoveryPoints: byInstance[k]})
		if err != nil {
			return out, err
		}
		s.audit("softDeletePurged", "vault", k[0], "instance", k[1], "recoveryPoints", byInstance[k], "job", j.ID)
		out = append(out, j)
	}
	return out, nil
}

// retentionPending reports whether a Retention job of the instance is
// queued or running.
func (s *Service) retentionPending(ctx context.Context, vault, instance string) (bool, error) {
	for _, st := range []string{store.JobQueued, store.JobInProgress} {
		js, err := s.Store.ListJobs(ctx, store.JobFilter{Vault: vault, Instance: instance, Type: store.JobRetention, State: st, Limit: 1})
		if err != nil || len(js) > 0 {
			return len(js) > 0, err
		}
	}
	return false, nil
}

// Usage is a vault's storage figures from its catalog: what its
// recovery points hold, soft-deleted ones included (their data is still
// stored until purged).
type Usage struct {
	RecoveryPoints            int   `json:"recoveryPoints"`
	Bytes                     int64 `json:"bytes"` // every point, soft-deleted included
	SoftDeletedRecoveryPoints int   `json:"softDeletedRecoveryPoints"`
	SoftDeletedBytes          int64 `json:"softDeletedBytes"`
	// StoredBytes is the storage used: the sum of what each point's
	// backup added to the repository after dedup and compression (points
	// of unknown stored size count 0). Prune frees packs without
	// subtracting them per point, so it is an approximation.
	StoredBytes int64 `json:"storedBytes"`
	// Instances are the same figures per instance, by name.
	Instances []InstanceUsage `json:"instances"`
}

// InstanceUsage is one instance's storage figures.
type InstanceUsage struct {
	Instance       string `json:"instance"`
	RecoveryPoints int    `json:"recoveryPoints"`
	Bytes          int64  `json:"bytes"`
	StoredBytes    int64  `json:"storedBytes"`
	// DedupRatio is the logical bytes divided by the stored bytes of the
	// points that have both; nil (unknown) when none has.
	DedupRatio *float64 `json:"dedupRatio"`
	// logical and stored of the points with a known stored size.
	knownLogical, knownStored int64
}

// VaultUsage sums a vault's storage figures, in total and per instance.
func (s *Service) VaultUsage(ctx context.Context, vault string) (*Usage, error) {
	rps, err := s.ListRecoveryPointsWith(ctx, vault, "", "include")
	if err != nil {
		return nil, err
	}
	u := &Usage{Instances: []InstanceUsage{}}
	byName := map[string]*InstanceUsage{}
	for _, rp := range rps {
		u.RecoveryPoints++
		u.Bytes += rp.Bytes
		u.StoredBytes += rp.StoredBytes
		if rp.State == store.RPSoftDeleted {
			u.SoftDeletedRecoveryPoints++
			u.SoftDeletedBytes += rp.Bytes
		}
		iu := byName[rp.Instance]
		if iu == nil {
			iu = &InstanceUsage{Instance: rp.Instance}
			byName[rp.Instance] = iu
		}
		iu.RecoveryPoints++
		iu.Bytes += rp.Bytes
		iu.StoredBytes += rp.StoredBytes
		if rp.StoredBytes > 0 && rp.Bytes > 0 {
			iu.knownLogical += rp.Bytes
			iu.knownStored += rp.StoredBytes
		}
	}
	for _, iu := range byName {
		if iu.knownStored > 0 {
			r := float64(iu.knownLogical) / float64(iu.knownStored)
			iu.DedupRatio = &r
		}
		u.Instances = append(u.Instances, *iu)
	}
	sort.Slice(u.Instances, func(i, j int) bool { return u.Instances[i].Instance < u.Instances[j].Instance })
	return u, nil
}

// ListInstancesWith lists one page of a vault's instances, of one policy
// when set, by name; deleted selects soft-deleted ones as for
// ListRecoveryPointsWith ("" : not listed).
func (s *Service) ListInstancesWith(ctx context.Context, vault, policyName, deleted string, p store.Page) ([]*store.Instance, error) {
	keep := func(in *store.Instance) bool { return in.ProtectionState != store.ProtectionSoftDeleted }
	switch deleted {
	case "", "false":
	case "include", "true":
		keep = func(*store.Instance) bool { return true }
	case "only":
		keep = func(in *store.Instance) bool { return in.ProtectionState == store.ProtectionSoftDeleted }
	default:
		return nil, InvalidField("InvalidValue", "deleted", deleted, "want include or only (left out: soft-deleted instances are not listed)")
	}
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	// Pages of the store, filtered, until the page asked for is full: a
	// short page still means the end of the list.
	out := []*store.Instance{}
	for {
		ins, err := s.Store.ListInstancesPage(ctx, vault, policyName, p)
		if err != nil {
			return nil, err
		}
		for _, in := range ins {
			if keep(in) {
				out = append(out, in)
				if p.Limit > 0 && len(out) == p.Limit {
					return out, nil
				}
			}
		}
		if p.Limit == 0 || len(ins) < p.Limit {
			return out, nil
		}
		p.After = ins[len(ins)-1].Name
	}
}

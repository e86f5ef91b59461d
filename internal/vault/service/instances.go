package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/scheduler"
	"github.com/arca-backup/arca/internal/vault/store"
)

// InstanceSpec is a backup instance as a caller writes it.
type InstanceSpec struct {
	Name             string          `json:"name"`
	Cluster          string          `json:"cluster"`
	Policy           string          `json:"policy"`
	Config           json.RawMessage `json:"backupConfiguration"`
	StorageLocation  string          `json:"storageLocation"`
	SnapshotLocation string          `json:"snapshotLocation"`
}

const locations = "file:///path, azure://account/container[/prefix] or s3://bucket[/prefix]?endpoint=…"

// check validates an instance's fields in vault and returns its policy;
// an empty backup configuration becomes {}.
func (s *Service) check(ctx context.Context, vault string, b *InstanceSpec) (*store.Policy, error) {
	if err := CheckName("cluster", b.Cluster); err != nil {
		return nil, err
	}
	if b.Policy == "" {
		return nil, InvalidField("MissingField", "policy", "", "required")
	}
	p, err := s.Store.GetPolicy(ctx, vault, b.Policy)
	if errors.Is(err, store.ErrNotFound) {
		return nil, InvalidField("UnknownReference", "policy", b.Policy, "create the policy first or name an existing one",
			"policy %q does not exist in vault %q", b.Policy, vault)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case b.StorageLocation == "":
		return nil, InvalidField("MissingField", "storageLocation", "", "required ("+locations+")")
	case !strings.HasPrefix(b.StorageLocation, "file:///") && !strings.HasPrefix(b.StorageLocation, "azure://") && !strings.HasPrefix(b.StorageLocation, "s3://"):
		return nil, InvalidField("InvalidStorageLocation", "storageLocation", b.StorageLocation, "want "+locations)
	case len(b.StorageLocation) > 2048 || len(b.SnapshotLocation) > 253:
		return nil, InvalidField("InvalidValue", "storageLocation", "", "at most 2048 characters (snapshotLocation: 253)",
			"storageLocation or snapshotLocation too long")
	}
	if len(bytes.TrimSpace(b.Config)) == 0 || string(bytes.TrimSpace(b.Config)) == "null" {
		b.Config = json.RawMessage(`{}`)
	}
	var cfg v1alpha1.BackupConfiguration
	if err := decodeStrict(b.Config, &cfg); err != nil {
		return nil, InvalidField("InvalidBackupConfiguration", "backupConfiguration", "", err.Error())
	}
	if err := cfg.Validate(); err != nil {
		return nil, InvalidField("InvalidBackupConfiguration", "backupConfiguration", "", err.Error())
	}
	return p, nil
}

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// ListInstances lists one page of a vault's instances, of one policy when
// set, by name.
func (s *Service) ListInstances(ctx context.Context, vault, policyName string, p store.Page) ([]*store.Instance, error) {
	return s.ListInstancesWith(ctx, vault, policyName, "", p)
}

// Prerequisites checks an instance about to be created against its
// cluster; it returns a ChecksFailed *Error when a prerequisite is not met.
type Prerequisites func(ctx context.Context, in *store.Instance) error

// CreateInstance creates a backup instance, protected from now on: its
// schedule is armed. caller and the vault's identities must hold the
// backup's requirements (BackupRequirements); prereq, when set, runs
// then and can refuse.
func (s *Service) CreateInstance(ctx context.Context, caller, vault string, b InstanceSpec, prereq Prerequisites) (*store.Instance, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	if err := CheckName("name", b.Name); err != nil {
		return nil, err
	}
	p, err := s.check(ctx, vault, &b)
	if err != nil {
		return nil, err
	}
	in := &store.Instance{Vault: vault, Name: b.Name, Cluster: b.Cluster, Policy: b.Policy, Config: b.Config,
		StorageLocation: b.StorageLocation, SnapshotLocation: b.SnapshotLocation, ProtectionState: store.ProtectionConfigured}
	if err := s.Require(ctx, BackupRequirements(caller, in)); err != nil {
		return nil, err
	}
	if prereq != nil {
		if err := prereq(ctx, in); err != nil {
			return nil, err
		}
	}
	if err := s.Store.CreateInstance(ctx, in); err != nil {
		return nil, err
	}
	if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, p.Schedule, s.now().Now()); err != nil {
		return nil, err
	}
	return in, nil
}

// GetInstance returns a backup instance.
func (s *Service) GetInstance(ctx context.Context, vault, name string) (*store.Instance, error) {
	return s.Store.GetInstance(ctx, vault, name)
}

// UpdateInstance changes an instance's policy, configuration and
// locations; name and cluster are immutable. The changed instance's
// backup requirements must hold for caller and the vault's identities.
func (s *Service) UpdateInstance(ctx context.Context, caller, vault, name string, expected int64, b InstanceSpec) (*store.Instance, error) {
	in, err := s.Store.GetInstance(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if (b.Name != "" && b.Name != in.Name) || (b.Cluster != "" && b.Cluster != in.Cluster) {
		return nil, InvalidField("ImmutableField", "cluster", b.Cluster, "create a new instance",
			"name and cluster of a backup instance cannot be changed; create a new instance")
	}
	b.Cluster = in.Cluster
	if err := Precondition(expected, in.Version); err != nil {
		return nil, err
	}
	p, err := s.check(ctx, vault, &b)
	if err != nil {
		return nil, err
	}
	policyChanged := b.Policy != in.Policy
	var short []string
	v, err := s.Store.GetVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if policyChanged && (v.Immutable() || v.ResourceGuard) {
		if short, err = s.shortenedBy(ctx, in, b.Policy); err != nil {
			return nil, err
		}
	}
	if len(short) > 0 && v.Immutable() {
		return nil, Conflictf(CodeImmutableRetention, "vault %q is immutable (%s): moving instance %s from policy %s to %s shortens retention (%s); pick a policy whose rules are at least as long",
			v.Name, v.Immutability, in.Name, in.Policy, b.Policy, strings.Join(short, ", "))
	}
	in.Policy, in.Config, in.StorageLocation, in.SnapshotLocation = b.Policy, b.Config, b.StorageLocation, b.SnapshotLocation
	if err := s.Require(ctx, BackupRequirements(caller, in)); err != nil {
		return nil, err
	}
	update := func() error { return fromStore(s.Store.UpdateInstance(ctx, in), expected) }
	if len(short) > 0 {
		err = s.guarded(ctx, v, OpShortenRetention, in.Name, update)
	} else {
		err = update()
	}
	if err != nil {
		return nil, err
	}
	if policyChanged && in.ProtectionState == store.ProtectionConfigured {
		if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, p.Schedule, s.now().Now()); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// DeleteInstance deletes an instance whose protection is stopped and that
// has no recovery points left, soft-deleted ones included. Guarded by the
// resource guard.
func (s *Service) DeleteInstance(ctx context.Context, vault, name string, expected int64) error {
	v, err := s.Store.GetVault(ctx, vault)
	if err != nil {
		return err
	}
	in, err := s.stoppedInstance(ctx, vault, name)
	if err != nil {
		return err
	}
	rps, err := s.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: in.Vault, Instance: in.Name, IncludeDeleted: true})
	if err != nil {
		return err
	}
	if len(rps) > 0 {
		return Conflictf("RecoveryPointsRemain",
			"backup instance %q still has %d recovery point(s), soft-deleted ones included: stop protection with mode delete-data to remove them, or wait until retention expires them and soft delete purges them", in.Name, len(rps))
	}
	return s.guarded(ctx, v, OpDeleteInstance, in.Name, func() error {
		if err := s.Store.DeleteInstance(ctx, in.Vault, in.Name, expected); err != nil {
			return fromStore(err, expected)
		}
		_ = s.Store.DeleteTrigger(ctx, in.Vault, in.Name) // normally gone already
		return nil
	})
}

// instancePoints lists every point of an instance, soft-deleted included.
func (s *Service) instancePoints(ctx context.Context, in *store.Instance) ([]*store.RecoveryPoint, error) {
	return s.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: in.Vault, Instance: in.Name, IncludeDeleted: true})
}

func (s *Service) stoppedInstance(ctx context.Context, vault, name string) (*store.Instance, error) {
	in, err := s.Store.GetInstance(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if in.ProtectionState == store.ProtectionSoftDeleted {
		return nil, Conflictf(CodeInstanceSoftDeleted, "backup instance %q is soft-deleted already; it is purged at %s (arca instance undelete %s brings it back)", in.Name, fmtTime(in.PurgeAt), in.Name)
	}
	if in.ProtectionState != store.ProtectionStopped {
		return nil, Conflictf("ProtectionActive", "backup instance %q is protected: stop protection first (stop-protection)", in.Name)
	}
	return in, nil
}

// DeleteInstanceWithData deletes a stopped instance together with its
// recovery points. In a vault with soft delete the instance and its
// points are soft-deleted (nil job); otherwise its stop mode becomes
// delete-data and a Retention job is queued that removes every point
// (data, then catalog entry) and then the instance, and the job is
// returned. Refused in an immutable vault while a point has not
// expired; guarded by the resource guard.
func (s *Service) DeleteInstanceWithData(ctx context.Context, vault, name string, expected int64) (*store.Job, error) {
	v, err := s.Store.GetVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	in, err := s.stoppedInstance(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if err := Precondition(expected, in.Version); err != nil {
		return nil, err
	}
	rps, err := s.instancePoints(ctx, in)
	if err != nil {
		return nil, err
	}
	if err := s.immutableDelete(v, "deleting instance "+in.Name+" with its data", rps); err != nil {
		return nil, err
	}
	var j *store.Job
	err = s.guarded(ctx, v, OpDeleteInstance, in.Name, func() error {
		if v.SoftDeleteDays > 0 {
			return s.softDeleteInstance(ctx, v, in, true, expected)
		}
		if in.StopMode != store.StopDeleteData {
			in.StopMode = store.StopDeleteData
			if err := s.Store.UpdateInstance(ctx, in); err != nil {
				return fromStore(err, expected)
			}
		}
		var err error
		j, err = s.queueRetention(ctx, in.Vault, in.Name, jobs.RetentionParams{DeleteAll: true, DeleteInstance: true})
		return err
	})
	return j, err
}

// StopProtection stops an instance's protection with a mode. With
// delete-data the removal of every recovery point (in its cluster and
// repository, then the catalog) is queued as a Retention job that the job
// runner runs; the job is returned (nil for the other modes).
func (s *Service) StopProtection(ctx context.Context, vault, name string, expected int64, mode string) (*store.Instance, *store.Job, error) {
	switch mode {
	case store.StopRetainForever, store.StopRetainPerPolicy, store.StopDeleteData:
	default:
		return nil, nil, InvalidField("InvalidStopMode", "mode", mode, "want retain-forever, retain-per-policy or delete-data",
			"mode %q: want retain-forever, retain-per-policy or delete-data", mode)
	}
	in, err := s.Store.GetInstance(ctx, vault, name)
	if err != nil {
		return nil, nil, err
	}
	if in.ProtectionState == store.ProtectionSoftDeleted {
		return nil, nil, Conflictf(CodeInstanceSoftDeleted, "backup instance %q is soft-deleted; it is purged at %s (arca instance undelete %s brings it back)", in.Name, fmtTime(in.PurgeAt), in.Name)
	}
	if in.ProtectionState == store.ProtectionStopped && in.StopMode == mode {
		return nil, nil, Conflictf("AlreadyStopped", "protection of %q is already stopped with mode %s", in.Name, in.StopMode)
	}
	if err := Precondition(expected, in.Version); err != nil {
		return nil, nil, err
	}
	if mode == store.StopDeleteData {
		return s.stopDeleteData(ctx, in, expected)
	}
	// State first (version-checked), then the trigger: a scheduled job the
	// scheduler creates in between is cancelled by the runner, which checks
	// the protection state before starting a ScheduledBackup.
	in.ProtectionState, in.StopMode = store.ProtectionStopped, mode
	if err := s.Store.UpdateInstance(ctx, in); err != nil {
		return nil, nil, fromStore(err, expected)
	}
	if err := s.Store.DeleteTrigger(ctx, in.Vault, in.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	if mode == store.StopRetainForever {
		return in, nil, s.retention().RetainForever(ctx, in.Vault, in.Name)
	}
	return in, nil, nil
}

// stopDeleteData stops protection and deletes every point: soft-deleted
// with the instance in a vault with soft delete, else by a queued job.
// Refused in an immutable vault while a point has not expired; guarded
// by the resource guard.
func (s *Service) stopDeleteData(ctx context.Context, in *store.Instance, expected int64) (*store.Instance, *store.Job, error) {
	v, err := s.Store.GetVault(ctx, in.Vault)
	if err != nil {
		return nil, nil, err
	}
	rps, err := s.instancePoints(ctx, in)
	if err != nil {
		return nil, nil, err
	}
	if err := s.immutableDelete(v, "stopping protection of "+in.Name+" with delete-data", rps); err != nil {
		return nil, nil, err
	}
	var j *store.Job
	err = s.guarded(ctx, v, OpStopDeleteData, in.Name, func() error {
		if v.SoftDeleteDays > 0 {
			if err := s.softDeleteInstance(ctx, v, in, false, expected); err != nil {
				return err
			}
		} else {
			in.ProtectionState, in.StopMode = store.ProtectionStopped, store.StopDeleteData
			if err := s.Store.UpdateInstance(ctx, in); err != nil {
				return fromStore(err, expected)
			}
		}
		if err := s.Store.DeleteTrigger(ctx, in.Vault, in.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if v.SoftDeleteDays > 0 {
			return nil
		}
		var err error
		j, err = s.queueRetention(ctx, in.Vault, in.Name, jobs.RetentionParams{DeleteAll: true})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return in, j, nil
}

// shortenedBy lists what moving in to policy to shortens (see shortened).
func (s *Service) shortenedBy(ctx context.Context, in *store.Instance, to string) ([]string, error) {
	_, from, err := s.policyOf(ctx, in)
	if err != nil {
		return nil, err
	}
	np, err := s.Store.GetPolicy(ctx, in.Vault, to)
	if err != nil {
		return nil, err
	}
	next, err := policy.ParseJSON(np.Schedule, np.Retention)
	if err != nil {
		return nil, err
	}
	return shortened(from, next), nil
}

// policyOf returns an instance's policy, stored and parsed.
func (s *Service) policyOf(ctx context.Context, in *store.Instance) (*store.Policy, *policy.Policy, error) {
	pol, err := s.Store.GetPolicy(ctx, in.Vault, in.Policy)
	if err != nil {
		return nil, nil, err
	}
	p, err := policy.ParseJSON(pol.Schedule, pol.Retention)
	return pol, p, err
}

// ResumeProtection configures protection again: retention is reapplied
// to points kept forever and the schedule armed.
func (s *Service) ResumeProtection(ctx context.Context, vault, name string, expected int64) (*store.Instance, error) {
	in, err := s.Store.GetInstance(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if in.ProtectionState == store.ProtectionSoftDeleted {
		return nil, Conflictf(CodeInstanceSoftDeleted, "backup instance %q is soft-deleted: undelete it first (arca instance undelete %s), then resume", in.Name, in.Name)
	}
	if in.ProtectionState != store.ProtectionStopped {
		return nil, Conflictf("NotStopped", "protection of %q is not stopped", in.Name)
	}
	if err := Precondition(expected, in.Version); err != nil {
		return nil, err
	}
	pol, p, err := s.policyOf(ctx, in)
	if err != nil {
		return nil, err
	}
	wasForever := in.StopMode == store.StopRetainForever
	in.ProtectionState, in.StopMode = store.ProtectionConfigured, ""
	if err := s.Store.UpdateInstance(ctx, in); err != nil {
		return nil, fromStore(err, expected)
	}
	if wasForever {
		if err := s.retention().Reapply(ctx, p, in.Vault, in.Name); err != nil {
			return nil, err
		}
	}
	if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, pol.Schedule, s.now().Now()); err != nil {
		return nil, err
	}
	return in, nil
}

// BackupNow queues an on-demand backup of a protected instance, asked for
// by caller (who, like the vault's identities, must hold its requirements
// now and when the job runs).
func (s *Service) BackupNow(ctx context.Context, caller, vault, name string, b jobs.BackupParams) (*store.Job, error) {
	if b.Retention != "" {
		d, err := policy.ParseDuration(b.Retention)
		if err != nil {
			return nil, InvalidField("InvalidValue", "retention", b.Retention, err.Error())
		}
		if d.Less(policy.MinRetention) || policy.MaxRetention.Less(d) {
			return nil, InvalidField("InvalidValue", "retention", b.Retention, "must be between P1D and P10Y")
		}
	}
	in, err := s.Store.GetInstance(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if in.ProtectionState != store.ProtectionConfigured {
		return nil, Conflictf("ProtectionStopped", "protection of %q is stopped: resume it before backing up", in.Name)
	}
	if err := s.Require(ctx, BackupRequirements(caller, in)); err != nil {
		return nil, err
	}
	j := &store.Job{Vault: in.Vault, Type: store.JobOnDemandBackup, Instance: in.Name, State: store.JobQueued, Params: withRequester(b, caller)}
	if err := s.Store.CreateJob(ctx, j); err != nil {
		return nil, err
	}
	s.created(j)
	return j, nil
}

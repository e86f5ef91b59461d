package service

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Where a backup or a restore may act is decided by role assignments at
// the cluster, storage-location and snapshot-location scopes, for the
// caller and for the identities that act for the vault (the trust model
// of docs/security.md): the vault itself (vault:V) reads the cluster and
// its snapshot location, the cluster (cluster:C) takes snapshots at the
// snapshot location, and the cluster's extension (extension:C) reads and
// writes the repository. They are checked when an instance is created or
// updated, when a backup or a restore is started, and again by the job
// runner before the job acts (AuthorizeBackup, AuthorizeRestore): a role
// removed after the job was queued stops it.

// Requirement is one action a principal must hold at a scope.
type Requirement struct {
	Principal string
	Action    string
	Scope     string
	Role      string // the built-in role to assign for it
	Why       string // what needs it
}

// BackupRequirements are what backing up in to its cluster needs; caller
// is empty for a scheduled backup (nobody asked for it now).
func BackupRequirements(caller string, in *store.Instance) []Requirement {
	c, vault, cl, ext := in.Cluster, rbac.VaultIdentity(in.Vault), rbac.ClusterIdentity(in.Cluster), rbac.ExtensionIdentity(in.Cluster)
	why := fmt.Sprintf("to back up cluster %s into %s", c, in.StorageLocation)
	var out []Requirement
	if caller != "" {
		out = append(out,
			Requirement{caller, rbac.ClustersBackup, rbac.ClusterScope(c), rbac.BackupOperator, why},
			Requirement{caller, rbac.StorageWrite, rbac.StorageScope(in.StorageLocation), rbac.StorageContributor, why})
	}
	out = append(out,
		Requirement{vault, rbac.ClustersRead, rbac.ClusterScope(c), rbac.Reader, why},
		Requirement{ext, rbac.StorageWrite, rbac.StorageScope(in.StorageLocation), rbac.StorageContributor, why})
	if in.SnapshotLocation != "" {
		at := rbac.SnapshotScope(in.SnapshotLocation)
		why := fmt.Sprintf("to snapshot the volumes of cluster %s with %s", c, in.SnapshotLocation)
		if caller != "" {
			out = append(out, Requirement{caller, rbac.SnapshotsWrite, at, rbac.Contributor, why})
		}
		out = append(out, Requirement{vault, rbac.SnapshotsRead, at, rbac.Reader, why},
			Requirement{cl, rbac.SnapshotsWrite, at, rbac.Contributor, why})
	}
	return out
}

// RestoreRequirements are what restoring a point of in into target needs.
func RestoreRequirements(caller string, in *store.Instance, target string) []Requirement {
	vault, ext := rbac.VaultIdentity(in.Vault), rbac.ExtensionIdentity(target)
	why := fmt.Sprintf("to restore from %s into cluster %s", in.StorageLocation, target)
	var out []Requirement
	if caller != "" {
		out = append(out,
			Requirement{caller, rbac.ClustersRestore, rbac.ClusterScope(target), rbac.BackupOperator, why},
			Requirement{caller, rbac.StorageRead, rbac.StorageScope(in.StorageLocation), rbac.StorageContributor, why})
	}
	out = append(out,
		Requirement{vault, rbac.ClustersRead, rbac.ClusterScope(target), rbac.Reader, why},
		Requirement{ext, rbac.StorageRead, rbac.StorageScope(in.StorageLocation), rbac.StorageContributor, why})
	if in.SnapshotLocation != "" {
		at := rbac.SnapshotScope(in.SnapshotLocation)
		if caller != "" {
			out = append(out, Requirement{caller, rbac.SnapshotsRead, at, rbac.Reader, why})
		}
		out = append(out, Requirement{vault, rbac.SnapshotsRead, at, rbac.Reader, why})
	}
	return out
}

// CodeRoleMissing is the error code of a requirement not met.
const CodeRoleMissing = "RoleAssignmentMissing"

// Require checks every requirement and refuses (Forbidden, code
// RoleAssignmentMissing) with the first one not met, naming who lacks
// what where, why, and the assignment that grants it.
func (s *Service) Require(ctx context.Context, needs []Requirement) error {
	for _, n := range needs {
		ok, err := s.Can(ctx, n.Principal, n.Action, n.Scope)
		if err != nil {
			return err
		}
		if !ok {
			e := ForbiddenTo(n.Action, n.Scope, "%s may not %s at %s, which it needs %s: an Owner of that scope grants it with arca role assign --principal %s --role %q --scope '%s'",
				n.Principal, n.Action, n.Scope, n.Why, n.Principal, n.Role, n.Scope)
			e.Code = CodeRoleMissing
			return e
		}
	}
	return nil
}

// requested is who asked for a job, recorded with its parameters.
type requested struct {
	RequestedBy string `json:"requestedBy,omitempty"`
}

// withRequester adds the requesting principal to a job's parameters.
func withRequester(params any, caller string) json.RawMessage {
	b, _ := json.Marshal(params)
	if caller == "" {
		return b
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if m == nil {
		m = map[string]any{}
	}
	m["requestedBy"] = caller
	b, _ = json.Marshal(m)
	return b
}

func requesterOf(j *store.Job) string {
	var r requested
	_ = json.Unmarshal(j.Params, &r)
	return r.RequestedBy
}

var (
	_ jobs.Authorizer         = (*Service)(nil)
	_ jobs.FallbackAuthorizer = (*Service)(nil)
)

// AuthorizeBackup implements jobs.Authorizer: the job's backup
// requirements, for whoever asked for it, still hold — and, when the
// job's point is to be copied (the runner put copyTo in its parameters),
// the extension and the requester may write to the secondary location
// too, as to the primary.
func (s *Service) AuthorizeBackup(ctx context.Context, j *store.Job, in *store.Instance) error {
	needs := BackupRequirements(requesterOf(j), in)
	var bp jobs.BackupParams
	_ = json.Unmarshal(j.Params, &bp)
	if bp.CopyTo != "" {
		needs = append(needs, CopyRequirements(requesterOf(j), in, bp.CopyTo)...)
	}
	return s.Require(ctx, needs)
}

// CopyRequirements are what copying in's points to copyTo needs: the
// extension of its cluster writes there (and the requester, when a
// principal asked for the backup).
func CopyRequirements(caller string, in *store.Instance, copyTo string) []Requirement {
	why := fmt.Sprintf("to copy the vault-tier recovery points of %s to %s (the policy's copyTo)", in.Name, copyTo)
	var out []Requirement
	if caller != "" {
		out = append(out, Requirement{caller, rbac.StorageWrite, rbac.StorageScope(copyTo), rbac.StorageContributor, why})
	}
	return append(out, Requirement{rbac.ExtensionIdentity(in.Cluster), rbac.StorageWrite, rbac.StorageScope(copyTo), rbac.StorageContributor, why})
}

// AuthorizeFallback implements jobs.FallbackAuthorizer: a restore into
// target may read the point's copy at location when the target's
// extension (and the requester) may read there, as for the primary.
func (s *Service) AuthorizeFallback(ctx context.Context, j *store.Job, in *store.Instance, target, location string) error {
	why := fmt.Sprintf("to restore from the copy in %s when %s is unreachable", location, in.StorageLocation)
	var needs []Requirement
	if c := requesterOf(j); c != "" {
		needs = append(needs, Requirement{c, rbac.StorageRead, rbac.StorageScope(location), rbac.StorageContributor, why})
	}
	needs = append(needs, Requirement{rbac.ExtensionIdentity(target), rbac.StorageRead, rbac.StorageScope(location), rbac.StorageContributor, why})
	return s.Require(ctx, needs)
}

// AuthorizeRestore implements jobs.Authorizer.
func (s *Service) AuthorizeRestore(ctx context.Context, j *store.Job, in *store.Instance, target string) error {
	return s.Require(ctx, RestoreRequirements(requesterOf(j), in, target))
}

// CheckSkipValidation allows ?skipValidation=true to principal only when
// it is Owner at the vault: creating an instance whose prerequisites were
// not checked is an Owner's decision (and is audited by the caller).
func (s *Service) CheckSkipValidation(ctx context.Context, principal, vault string) error {
	p, err := s.Permissions(ctx, principal, rbac.VaultScope(vault))
	if err != nil {
		return err
	}
	if ok, err := rbac.Covers(p.Actions, rbac.Owner); err != nil || ok {
		return err
	}
	e := ForbiddenTo(rbac.RoleAssignmentsWrite, rbac.VaultScope(vault),
		"skipValidation=true needs Owner at %s, and %s is not: create the instance without it (its prerequisite checks must pass; arca instance validate shows them), or ask an Owner of the vault to create it",
		rbac.VaultScope(vault), principal)
	e.Code = "SkipValidationForbidden"
	return e
}

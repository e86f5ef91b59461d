package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/prereq"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// storeAccess is prereq.Access over the vault's own store, for the
// request's principal: what the CLI gets through the API, without the
// round trips.
type storeAccess struct {
	s *Server
	r *http.Request
}

func scopePath(at prereq.Scope) string {
	switch at.Kind {
	case prereq.VaultScope:
		return rbac.VaultScope(at.Name)
	case prereq.ClusterScope:
		return rbac.ClusterScope(at.Name)
	case prereq.StorageLocationScope:
		return rbac.StorageScope(at.Name)
	case prereq.SnapshotLocationScope:
		return rbac.SnapshotScope(at.Name)
	}
	return "/" + at.Kind + "/" + at.Name
}

// roleGranted reports whether principal's assignments at or above scope
// grant every action of role.
func (a storeAccess) roleGranted(ctx context.Context, principal, role, scope string) (bool, error) {
	need, ok := rbac.FindRole(role)
	if !ok {
		return false, fmt.Errorf("unknown role %q", role)
	}
	as, err := a.s.assignments(ctx, principal)
	if err != nil {
		return false, err
	}
	for _, act := range need.Actions {
		if !rbac.Decide(as, principal, act, scope).Allowed {
			return false, nil
		}
	}
	return true, nil
}

func (a storeAccess) HasRole(ctx context.Context, who prereq.Identity, role string, at prereq.Scope) (bool, error) {
	if err := a.s.require(a.r, rbac.RoleAssignmentsRead, scopePath(at)); err != nil {
		return false, err
	}
	return a.roleGranted(ctx, who.Kind+":"+who.Name, role, scopePath(at))
}

func (a storeAccess) CallerHasRole(ctx context.Context, role string, at prereq.Scope) (bool, error) {
	return a.roleGranted(ctx, Principal(a.r.Context()), role, scopePath(at))
}

func (a storeAccess) Assign(ctx context.Context, who prereq.Identity, role string, at prereq.Scope) error {
	scope := scopePath(at)
	if err := a.s.require(a.r, rbac.RoleAssignmentsWrite, scope); err != nil {
		return err
	}
	ra, err := a.s.Service.AssignRole(ctx, Principal(ctx), who.Kind+":"+who.Name, role, scope)
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil
	}
	if err != nil {
		return err
	}
	a.s.Log.Info("audit", "event", "roleAssigned", "principal", ra.CreatedBy, "assignee", ra.Principal, "role", ra.Role, "scope", ra.Scope, "id", ra.ID, "via", "assign-missing-roles")
	return nil
}

func (a storeAccess) AssignCommand(who prereq.Identity, role string, at prereq.Scope) string {
	return fmt.Sprintf("arca role assign --principal %s:%s --role %q --scope '%s'", who.Kind, who.Name, role, scopePath(at))
}

func (a storeAccess) Connection(ctx context.Context, cluster string) (*prereq.Connection, error) {
	c, err := a.s.Service.GetCluster(ctx, cluster)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := &prereq.Connection{State: c.State, Message: c.Message, Namespace: c.Namespace, ServiceAccount: c.ServiceAccount}
	if c.TokenExpiresAt != nil {
		s := c.TokenExpiresAt.Unix()
		out.TokenExpiresAt = &s
	}
	return out, nil
}

// validateBackup checks an instance's prerequisites from the vault, with
// the vault's trusted-access identity in the cluster. The storage probe is
// the extension's (its StorageLocation status): the vault holds no storage
// credentials.
func (s *Server) validateBackup(r *http.Request, in *store.Instance) (*prereq.Report, error) {
	ctx := r.Context()
	target := fmt.Sprintf("instance %s/%s on cluster %s", in.Vault, in.Name, in.Cluster)
	c, err := s.Service.GetCluster(ctx, in.Cluster)
	if errors.Is(err, store.ErrNotFound) {
		return prereq.NotConnected("backup", target, in.Cluster), nil
	}
	if err != nil {
		return nil, err
	}
	var cfg v1alpha1.BackupConfiguration
	if len(in.Config) > 0 {
		if err := json.Unmarshal(in.Config, &cfg); err != nil {
			return nil, err
		}
	}
	acc := storeAccess{s: s, r: r}
	return prereq.ValidateBackup(ctx, prereq.BackupInput{Vault: in.Vault, Instance: in.Name,
		Cluster: prereq.Cluster{Name: in.Cluster, Config: trustedaccess.RestConfig(c), AsVault: true}, Config: cfg,
		StorageLocation: in.StorageLocation, SnapshotLocation: in.SnapshotLocation,
		Access: acc, Connections: acc, Now: s.Clock.Now}), nil
}

// ValidationResult is the body of a validation response.
type ValidationResult struct {
	*prereq.Report
	Assignments []prereq.Assignment `json:"assignments,omitempty"`
}

// validateInstanceRoute: POST …/instances/{instance}/validate
// [?assignMissingRoles=true]. 200 with the report whether it passed or not.
func (s *Server) validateInstanceRoute(w http.ResponseWriter, r *http.Request) {
	in, err := s.Service.GetInstance(r.Context(), r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	rep, err := s.validateBackup(r, in)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := ValidationResult{Report: rep}
	if r.URL.Query().Get("assignMissingRoles") == "true" {
		out.Assignments = prereq.AssignMissing(r.Context(), rep, storeAccess{s: s, r: r})
	}
	writeJSON(w, http.StatusOK, out)
}

// contentChecks are the restore checks that need the recovery point's
// content, which the vault's catalog does not hold.
var contentChecks = []string{"NamespaceConflicts", "StorageClasses", "APIVersionsServed"}

// validateRestore checks a restore's prerequisites on the target cluster
// from the vault, with its trusted-access identity there. Without
// repository credentials the vault can neither probe the storage location
// (the extension's StorageLocation status is checked instead) nor read
// what the recovery point holds: those checks are Skipped and say so.
func (s *Server) validateRestore(r *http.Request, rp *store.RecoveryPoint, in *store.Instance, target string, crit v1alpha1.RestoreCriteria) (*prereq.Report, error) {
	ctx := r.Context()
	c, err := s.Service.GetCluster(ctx, target)
	if errors.Is(err, store.ErrNotFound) {
		return prereq.NotConnected("restore", fmt.Sprintf("recovery point %s to cluster %s", rp.ID, target), target), nil
	}
	if err != nil {
		return nil, err
	}
	acc := storeAccess{s: s, r: r}
	rep := prereq.ValidateRestore(ctx, prereq.RestoreInput{Vault: rp.Vault, RecoveryPoint: rp.ID,
		Target: prereq.Cluster{Name: target, Config: trustedaccess.RestConfig(c), AsVault: true}, Criteria: crit,
		StorageLocation: in.StorageLocation, Access: acc, Connections: acc, Now: s.Clock.Now})
	for _, id := range contentChecks {
		if ch := rep.Find(id); ch != nil && ch.Result == prereq.Skipped {
			ch.Message = "the vault's catalog does not hold the recovery point's content (namespaces, resource types, storage classes) and the vault has no repository password to read it"
			ch.Remedy = "run arca restore validate --recovery-point " + rp.ID + " --target-cluster " + target + " --kubeconfig K --password-file F to check it"
		}
	}
	if ch := rep.Find("StorageLocation"); ch != nil && ch.Result == prereq.Skipped {
		ch.Message = "the vault holds no storage credentials; the target extension's own probe (ExtensionStorageLocation) covers the location"
	}
	return rep, nil
}

// validateRestoreRoute: POST /api/v1/vaults/{vault}/restores/validate
// [?assignMissingRoles=true], with the body of POST …/restores. 200 with
// the report whether it passed or not.
func (s *Server) validateRestoreRoute(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b jobs.RestoreParams
	if !decoded(w, r, &b) {
		return
	}
	rs, err := s.Service.CheckRestore(ctx, r.PathValue("vault"), b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	in, err := s.Service.RestoreInstance(ctx, rs)
	if err != nil {
		writeError(w, r, err)
		return
	}
	rep, err := s.validateRestore(r, rs.Point, in, b.TargetCluster, rs.Criteria)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := ValidationResult{Report: rep}
	if r.URL.Query().Get("assignMissingRoles") == "true" {
		out.Assignments = prereq.AssignMissing(ctx, rep, storeAccess{s: s, r: r})
	}
	writeJSON(w, http.StatusOK, out)
}

// prerequisites runs the backup checks before an instance is created and
// refuses it (ChecksFailed, with the report) when one fails.
func (s *Server) prerequisites(r *http.Request) service.Prerequisites {
	return func(_ context.Context, in *store.Instance) error {
		rep, err := s.validateBackup(r, in)
		if err != nil || rep.Passed {
			return err
		}
		var failed []string
		for _, c := range rep.Failures() {
			failed = append(failed, fmt.Sprintf("%s: %s → %s", c.Code, c.Message, c.Remedy))
		}
		return &service.Error{Kind: service.ChecksFailed, Code: "ValidationFailed", Report: rep,
			Message: fmt.Sprintf("%d prerequisite(s) not met (create with skipValidation=true, then arca instance validate shows every check): %s",
				len(failed), strings.Join(failed, "; "))}
	}
}

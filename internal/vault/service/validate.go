package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Clusters is how the vault reaches its clusters: a driver per cluster
// for the job runner, the prerequisite checks of a backup or a restore,
// and the upkeep of the credentials it holds. Package clusterdriver
// implements it over clusters registered through trusted access; the
// vault itself never builds a Kubernetes client.
type Clusters interface {
	jobs.Drivers
	// ValidateBackup checks an instance's prerequisites on its cluster,
	// with the vault's identity there.
	ValidateBackup(ctx context.Context, c BackupCheck) (*Validation, error)
	// ValidateRestore checks a restore's prerequisites on its target.
	ValidateRestore(ctx context.Context, c RestoreCheck) (*Validation, error)
	// Maintain keeps the vault's cluster credentials fresh, checking
	// every interval, until ctx ends.
	Maintain(ctx context.Context, every time.Duration)
}

// BackupCheck is what the backup prerequisites are checked on.
type BackupCheck struct {
	Instance *store.Instance
	// Roles answers the role checks for the principal validating.
	Roles Roles
	// AssignMissing creates the missing role assignments the principal
	// may create (Owner at their scope).
	AssignMissing bool
	Now           func() time.Time
}

// RestoreCheck is what the restore prerequisites are checked on.
type RestoreCheck struct {
	Point         *store.RecoveryPoint
	Instance      *store.Instance // the point's instance
	Target        string          // cluster restored to
	Criteria      v1alpha1.RestoreCriteria
	Roles         Roles
	AssignMissing bool
	Now           func() time.Time
}

// Validation is the outcome of prerequisite checks.
type Validation struct {
	Passed bool
	// Failures are the failed checks, each "code: message → remedy".
	Failures []string
	// Body is the report as the API answers it (checks, and the
	// assignments made when asked to).
	Body any
}

// Roles answers role questions for one principal over the vault's own
// store: what the CLI gets through the API (package prereq/vaultaccess
// maps the trust model's identities and scopes onto it, once for both).
type Roles interface {
	// ListRoleAssignments lists principal's assignments effective at scope.
	ListRoleAssignments(ctx context.Context, scope, principal string) ([]*store.RoleAssignment, error)
	// CallerActions lists the actions the validating principal holds at scope.
	CallerActions(ctx context.Context, scope string) ([]string, error)
	// AssignRole creates an assignment as the validating principal.
	AssignRole(ctx context.Context, principal, role, scope string) error
	// Cluster returns a cluster's registration; nil, nil when not registered.
	Cluster(ctx context.Context, name string) (*store.Cluster, error)
}

// RolesOf returns the Roles of principal. audit, when set, is called for
// every assignment created.
func (s *Service) RolesOf(principal string, audit func(*store.RoleAssignment)) Roles {
	return &principalRoles{s: s, principal: principal, audit: audit}
}

type principalRoles struct {
	s         *Service
	principal string
	audit     func(*store.RoleAssignment)
}

func (p *principalRoles) require(ctx context.Context, action, scope string) error {
	ok, err := p.s.Can(ctx, p.principal, action, scope)
	if err != nil {
		return err
	}
	if !ok {
		return Refused(p.principal, action, scope)
	}
	return nil
}

func (p *principalRoles) ListRoleAssignments(ctx context.Context, scope, principal string) ([]*store.RoleAssignment, error) {
	if err := p.require(ctx, rbac.RoleAssignmentsRead, scope); err != nil {
		return nil, err
	}
	return p.s.ListRoleAssignments(ctx, principal, scope)
}

func (p *principalRoles) CallerActions(ctx context.Context, scope string) ([]string, error) {
	perm, err := p.s.Permissions(ctx, p.principal, scope)
	if err != nil {
		return nil, err
	}
	return perm.Actions, nil
}

func (p *principalRoles) AssignRole(ctx context.Context, principal, role, scope string) error {
	if err := p.require(ctx, rbac.RoleAssignmentsWrite, scope); err != nil {
		return err
	}
	ra, err := p.s.AssignRole(ctx, p.principal, principal, role, scope)
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.audit != nil {
		p.audit(ra)
	}
	return nil
}

func (p *principalRoles) Cluster(ctx context.Context, name string) (*store.Cluster, error) {
	c, err := p.s.Store.GetCluster(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return c, err
}

var errNoClusters = &Error{Kind: Unavailable, Code: "NoClusterAccess",
	Message: "this vault process was started without cluster access, so it cannot check a cluster: run it with arca vault serve"}

// ValidateInstance checks an instance's prerequisites on its cluster for
// principal (whose roles the role checks see); the report passes or not.
func (s *Service) ValidateInstance(ctx context.Context, vault, name string, roles Roles, assignMissing bool) (*Validation, error) {
	in, err := s.Store.GetInstance(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if s.Clusters == nil {
		return nil, errNoClusters
	}
	return s.Clusters.ValidateBackup(ctx, BackupCheck{Instance: in, Roles: roles, AssignMissing: assignMissing, Now: s.now().Now})
}

// ValidateRestore checks a restore's prerequisites on its target cluster.
func (s *Service) ValidateRestore(ctx context.Context, vault string, b jobs.RestoreParams, roles Roles, assignMissing bool) (*Validation, error) {
	rs, err := s.CheckRestore(ctx, vault, b)
	if err != nil {
		return nil, err
	}
	in, err := s.RestoreInstance(ctx, rs)
	if err != nil {
		return nil, err
	}
	if s.Clusters == nil {
		return nil, errNoClusters
	}
	return s.Clusters.ValidateRestore(ctx, RestoreCheck{Point: rs.Point, Instance: in, Target: b.TargetCluster, Criteria: rs.Criteria,
		Roles: roles, AssignMissing: assignMissing, Now: s.now().Now})
}

// BackupPrerequisites runs the backup checks, for roles, before an
// instance is created and refuses it (ChecksFailed, with the report) when
// one fails.
func (s *Service) BackupPrerequisites(roles Roles) Prerequisites {
	return func(ctx context.Context, in *store.Instance) error {
		if s.Clusters == nil {
			return errNoClusters
		}
		v, err := s.Clusters.ValidateBackup(ctx, BackupCheck{Instance: in, Roles: roles, Now: s.now().Now})
		if err != nil || v.Passed {
			return err
		}
		return &Error{Kind: ChecksFailed, Code: "ValidationFailed", Report: v.Body,
			Message: fmt.Sprintf("%d prerequisite(s) not met (create with skipValidation=true, then arca instance validate shows every check): %s",
				len(v.Failures), strings.Join(v.Failures, "; "))}
	}
}

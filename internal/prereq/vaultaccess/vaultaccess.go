// Package vaultaccess implements prereq.Access and prereq.Connections over
// a vault, mapping the trust model's identities and scopes to the vault's
// principals ("vault:V", "cluster:C", "extension:C") and scope paths. The
// same mapping and role arithmetic serve the CLI (the vault reached
// through its API, API) and the vault itself (its own store, for the
// principal validating: service.Roles).
package vaultaccess

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/arca-backup/arca/internal/prereq"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Vault is what validation asks a vault, for the principal validating
// (service.Roles has the same methods).
type Vault interface {
	// ListRoleAssignments lists principal's assignments effective at scope.
	ListRoleAssignments(ctx context.Context, scope, principal string) ([]*store.RoleAssignment, error)
	// CallerActions lists the actions the validating principal holds at scope.
	CallerActions(ctx context.Context, scope string) ([]string, error)
	// AssignRole creates an assignment as the validating principal.
	AssignRole(ctx context.Context, principal, role, scope string) error
	// Cluster returns a cluster's registration; nil, nil when not registered.
	Cluster(ctx context.Context, name string) (*store.Cluster, error)
}

// Access answers the trust model's role and connection questions from a
// Vault.
type Access struct {
	V Vault
}

var (
	_ prereq.Access      = (*Access)(nil)
	_ prereq.Connections = (*Access)(nil)
)

// API is Access over the vault's API with the caller's token.
func API(c *client.Client) *Access { return &Access{V: api{c}} }

// Principal maps an identity to a vault principal.
func Principal(who prereq.Identity) string { return who.Kind + ":" + who.Name }

// ScopePath maps a scope to a vault scope path.
func ScopePath(at prereq.Scope) string {
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

// HasRole implements prereq.Access: assignments of who at the scope or
// above it, taken together, grant every action of role.
func (a *Access) HasRole(ctx context.Context, who prereq.Identity, role string, at prereq.Scope) (bool, error) {
	scope := ScopePath(at)
	as, err := a.V.ListRoleAssignments(ctx, scope, Principal(who))
	if err != nil {
		return false, err
	}
	var held []string
	for _, x := range as {
		if rbac.Contains(x.Scope, scope) {
			held = append(held, x.Role)
		}
	}
	return rbac.Covers(rbac.ActionsOf(held), role)
}

// CallerHasRole implements prereq.Access with the caller's permissions.
func (a *Access) CallerHasRole(ctx context.Context, role string, at prereq.Scope) (bool, error) {
	actions, err := a.V.CallerActions(ctx, ScopePath(at))
	if err != nil {
		return false, err
	}
	return rbac.Covers(actions, role)
}

// Assign implements prereq.Access.
func (a *Access) Assign(ctx context.Context, who prereq.Identity, role string, at prereq.Scope) error {
	return a.V.AssignRole(ctx, Principal(who), role, ScopePath(at))
}

// AssignCommand implements prereq.Access.
func (a *Access) AssignCommand(who prereq.Identity, role string, at prereq.Scope) string {
	return fmt.Sprintf("arca role assign --principal %s --role %q --scope '%s'", Principal(who), role, ScopePath(at))
}

// Connection implements prereq.Connections.
func (a *Access) Connection(ctx context.Context, cluster string) (*prereq.Connection, error) {
	c, err := a.V.Cluster(ctx, cluster)
	if err != nil || c == nil {
		return nil, err
	}
	out := &prereq.Connection{State: c.State, Message: c.Message, Namespace: c.Namespace, ServiceAccount: c.ServiceAccount}
	if c.TokenExpiresAt != nil {
		s := c.TokenExpiresAt.Unix()
		out.TokenExpiresAt = &s
	}
	return out, nil
}

// api is a Vault over the API.
type api struct{ c *client.Client }

func (v api) ListRoleAssignments(ctx context.Context, scope, principal string) ([]*store.RoleAssignment, error) {
	return v.c.ListRoleAssignments(ctx, scope, principal)
}

func (v api) CallerActions(ctx context.Context, scope string) ([]string, error) {
	p, err := v.c.MyPermissions(ctx, scope)
	if err != nil {
		return nil, err
	}
	return p.Actions, nil
}

func (v api) AssignRole(ctx context.Context, principal, role, scope string) error {
	_, err := v.c.AssignRole(ctx, principal, role, scope)
	return err
}

func (v api) Cluster(ctx context.Context, name string) (*store.Cluster, error) {
	c, err := v.c.GetCluster(ctx, name)
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		return nil, nil
	}
	return c, err
}

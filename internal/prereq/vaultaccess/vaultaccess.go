// Package vaultaccess implements prereq.Access and prereq.Connections over
// the vault API, mapping the trust model's identities and scopes to the
// vault's principals ("vault:V", "cluster:C", "extension:C") and scope
// paths.
package vaultaccess

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/arca-backup/arca/internal/prereq"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/rbac"
)

// Vault is a vault reached through its API with the caller's token.
type Vault struct {
	C *client.Client
}

var (
	_ prereq.Access      = (*Vault)(nil)
	_ prereq.Connections = (*Vault)(nil)
)

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

// grants reports whether the roles held grant every action of want.
func grants(held []string, want string) bool {
	need, ok := rbac.FindRole(want)
	if !ok {
		return false
	}
	have := map[string]bool{}
	for _, h := range held {
		if r, ok := rbac.FindRole(h); ok {
			for _, a := range r.Actions {
				have[a] = true
			}
		}
	}
	for _, a := range need.Actions {
		if !have[a] {
			return false
		}
	}
	return true
}

// HasRole implements prereq.Access: assignments of who at the scope or
// above it, taken together, grant every action of role.
func (v *Vault) HasRole(ctx context.Context, who prereq.Identity, role string, at prereq.Scope) (bool, error) {
	scope := ScopePath(at)
	as, err := v.C.ListRoleAssignments(ctx, scope, Principal(who))
	if err != nil {
		return false, err
	}
	var held []string
	for _, a := range as {
		if rbac.Contains(a.Scope, scope) {
			held = append(held, a.Role)
		}
	}
	return grants(held, role), nil
}

// CallerHasRole implements prereq.Access with the caller's permissions.
func (v *Vault) CallerHasRole(ctx context.Context, role string, at prereq.Scope) (bool, error) {
	p, err := v.C.MyPermissions(ctx, ScopePath(at))
	if err != nil {
		return false, err
	}
	need, ok := rbac.FindRole(role)
	if !ok {
		return false, fmt.Errorf("unknown role %q", role)
	}
	have := map[string]bool{}
	for _, a := range p.Actions {
		have[a] = true
	}
	for _, a := range need.Actions {
		if !have[a] {
			return false, nil
		}
	}
	return true, nil
}

// Assign implements prereq.Access.
func (v *Vault) Assign(ctx context.Context, who prereq.Identity, role string, at prereq.Scope) error {
	_, err := v.C.AssignRole(ctx, Principal(who), role, ScopePath(at))
	return err
}

// AssignCommand implements prereq.Access.
func (v *Vault) AssignCommand(who prereq.Identity, role string, at prereq.Scope) string {
	return fmt.Sprintf("arca role assign --principal %s --role %q --scope '%s'", Principal(who), role, ScopePath(at))
}

// Connection implements prereq.Connections.
func (v *Vault) Connection(ctx context.Context, cluster string) (*prereq.Connection, error) {
	c, err := v.C.GetCluster(ctx, cluster)
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
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

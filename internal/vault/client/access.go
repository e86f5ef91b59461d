package client

import (
	"context"
	"net/url"
	"time"

	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Roles lists the built-in roles.
func (c *Client) Roles(ctx context.Context) ([]rbac.Role, error) {
	var out struct{ Items []rbac.Role }
	_, err := c.Do(ctx, "GET", "/api/v1/roles", nil, &out, "")
	return out.Items, err
}

// Permissions is the caller's effective access at a scope.
type Permissions struct {
	Principal   string                  `json:"principal"`
	Scope       string                  `json:"scope"`
	Actions     []string                `json:"actions"`
	Assignments []*store.RoleAssignment `json:"assignments"`
}

// MyPermissions returns the caller's effective actions at scope.
func (c *Client) MyPermissions(ctx context.Context, scope string) (*Permissions, error) {
	var out Permissions
	_, err := c.Do(ctx, "GET", "/api/v1/permissions?scope="+url.QueryEscape(scope), nil, &out, "")
	return &out, err
}

// ListRoleAssignments lists the assignments effective at scope ("" = /),
// of one principal when set.
func (c *Client) ListRoleAssignments(ctx context.Context, scope, principal string) ([]*store.RoleAssignment, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	if principal != "" {
		q.Set("principal", principal)
	}
	var out struct{ Items []*store.RoleAssignment }
	_, err := c.Do(ctx, "GET", "/api/v1/role-assignments?"+q.Encode(), nil, &out, "")
	return out.Items, err
}

// AssignRole grants role to principal at scope.
func (c *Client) AssignRole(ctx context.Context, principal, role, scope string) (*store.RoleAssignment, error) {
	var out store.RoleAssignment
	_, err := c.Do(ctx, "POST", "/api/v1/role-assignments", map[string]string{"principal": principal, "role": role, "scope": scope}, &out, "")
	return &out, err
}

// RemoveRoleAssignment deletes an assignment by ID.
func (c *Client) RemoveRoleAssignment(ctx context.Context, id string) error {
	_, err := c.Do(ctx, "DELETE", "/api/v1/role-assignments/"+esc(id), nil, nil, "")
	return err
}

// RegisterCluster registers a cluster (trusted access); when it exists
// already its connection is replaced.
func (c *Client) RegisterCluster(ctx context.Context, in service.ClusterRegistration) (*store.Cluster, error) {
	var out store.Cluster
	_, err := c.Do(ctx, "POST", "/api/v1/clusters", in, &out, "")
	if ce, ok := err.(*Error); ok && ce.Code == "AlreadyExists" {
		p := "/api/v1/clusters/" + esc(in.Name)
		_, err = c.update(ctx, "PUT", p, p, in, &out)
	}
	return &out, err
}

// GetCluster shows a registered cluster.
func (c *Client) GetCluster(ctx context.Context, name string) (*store.Cluster, error) {
	var out store.Cluster
	_, err := c.Do(ctx, "GET", "/api/v1/clusters/"+esc(name), nil, &out, "")
	return &out, err
}

// ListClusters lists registered clusters.
func (c *Client) ListClusters(ctx context.Context) ([]*store.Cluster, error) {
	var out struct{ Items []*store.Cluster }
	_, err := c.Do(ctx, "GET", "/api/v1/clusters", nil, &out, "")
	return out.Items, err
}

// DeleteCluster unregisters a cluster.
func (c *Client) DeleteCluster(ctx context.Context, name string) error {
	p := "/api/v1/clusters/" + esc(name)
	_, err := c.update(ctx, "DELETE", p, p, nil, nil)
	return err
}

// IssuedToken is a token just created: the token itself, shown once, and
// its record.
type IssuedToken struct {
	Token     string     `json:"token"`
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Principal string     `json:"principal"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// CreateToken creates an API token named name for principal (empty: the
// name), expiring after expiresIn (an ISO 8601 duration; empty: the
// vault's default lifetime).
func (c *Client) CreateToken(ctx context.Context, name, principal, expiresIn string) (*IssuedToken, error) {
	var out IssuedToken
	body := map[string]string{"name": name, "principal": principal}
	if expiresIn != "" {
		body["expiresIn"] = expiresIn
	}
	_, err := c.Do(ctx, "POST", "/api/v1/tokens", body, &out, "")
	return &out, err
}

// ListTokens lists the vault's API tokens (never the tokens themselves).
func (c *Client) ListTokens(ctx context.Context) ([]*store.Token, error) {
	var out struct{ Items []*store.Token }
	_, err := c.Do(ctx, "GET", "/api/v1/tokens", nil, &out, "")
	return out.Items, err
}

// RevokeToken deletes a token by ID.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.Do(ctx, "DELETE", "/api/v1/tokens/"+esc(id), nil, nil, "")
	return err
}

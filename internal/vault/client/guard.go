package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// UpdateVault changes a vault's description and settings; nil fields are
// kept.
func (c *Client) UpdateVault(ctx context.Context, name string, u service.VaultUpdate) (*store.Vault, error) {
	var out store.Vault
	p := "/api/v1/vaults/" + esc(name)
	_, err := c.update(ctx, "PUT", p, p, u, &out)
	return &out, err
}

// VaultUsage returns a vault's storage figures.
func (c *Client) VaultUsage(ctx context.Context, vault string) (*service.Usage, error) {
	var out service.Usage
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/usage", nil, &out, "")
	return &out, err
}

// ListRecoveryPointsDeleted lists recovery points with soft-deleted ones
// selected by deleted: "include" or "only" ("" as ListRecoveryPoints).
func (c *Client) ListRecoveryPointsDeleted(ctx context.Context, vault, instance, deleted string) ([]*store.RecoveryPoint, error) {
	var l list[*store.RecoveryPoint]
	q := url.Values{}
	if instance != "" {
		q.Set("instance", instance)
	}
	if deleted != "" {
		q.Set("deleted", deleted)
	}
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/recovery-points?"+q.Encode(), nil, &l, "")
	return l.Items, err
}

// ListInstancesDeleted lists instances with soft-deleted ones selected
// by deleted: "include" or "only".
func (c *Client) ListInstancesDeleted(ctx context.Context, vault, deleted string) ([]*store.Instance, error) {
	var l list[*store.Instance]
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/instances?deleted="+url.QueryEscape(deleted), nil, &l, "")
	return l.Items, err
}

func rpPath(vault, id string) string {
	return "/api/v1/vaults/" + esc(vault) + "/recovery-points/" + esc(id)
}

// DeleteRecoveryPoint deletes a recovery point: the soft-deleted point,
// or, in a vault without soft delete, the path of the deletion job.
func (c *Client) DeleteRecoveryPoint(ctx context.Context, vault, id string) (*store.RecoveryPoint, string, error) {
	var out store.RecoveryPoint
	resp, err := c.update(ctx, "DELETE", rpPath(vault, id), rpPath(vault, id), nil, &out)
	if err != nil {
		return nil, "", err
	}
	if resp.Status == http.StatusAccepted {
		return nil, resp.Location, nil
	}
	return &out, "", nil
}

// UndeleteRecoveryPoint brings a soft-deleted point back.
func (c *Client) UndeleteRecoveryPoint(ctx context.Context, vault, id string) (*store.RecoveryPoint, error) {
	var out store.RecoveryPoint
	_, err := c.Do(ctx, "POST", rpPath(vault, id)+"/undelete", nil, &out, "")
	return &out, err
}

// UndeleteInstance brings a soft-deleted instance back.
func (c *Client) UndeleteInstance(ctx context.Context, vault, name string) (*store.Instance, error) {
	var out store.Instance
	_, err := c.update(ctx, "POST", instancePath(vault, name)+"/undelete", instancePath(vault, name), nil, &out)
	return &out, err
}

// ListApprovals lists a vault's approval requests; state filters.
func (c *Client) ListApprovals(ctx context.Context, vault, state string) ([]*store.Approval, error) {
	var l list[*store.Approval]
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/approvals?state="+url.QueryEscape(state), nil, &l, "")
	return l.Items, err
}

// DecideApproval approves or rejects a request.
func (c *Client) DecideApproval(ctx context.Context, vault, id string, approve bool, reason string) (*store.Approval, error) {
	var out store.Approval
	verb := "/reject"
	if approve {
		verb = "/approve"
	}
	_, err := c.Do(ctx, "POST", "/api/v1/vaults/"+esc(vault)+"/approvals/"+esc(id)+verb, map[string]string{"reason": reason}, &out, "")
	return &out, err
}

// AddSubscription subscribes a webhook.
func (c *Client) AddSubscription(ctx context.Context, vault string, in service.SubscriptionSpec) (*store.Subscription, error) {
	var out store.Subscription
	_, err := c.Do(ctx, "POST", "/api/v1/vaults/"+esc(vault)+"/notifications", in, &out, "")
	return &out, err
}

// ListSubscriptions lists a vault's webhook subscriptions.
func (c *Client) ListSubscriptions(ctx context.Context, vault string) ([]*store.Subscription, error) {
	var l list[*store.Subscription]
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/notifications", nil, &l, "")
	return l.Items, err
}

// DeleteSubscription removes a webhook subscription.
func (c *Client) DeleteSubscription(ctx context.Context, vault, id string) error {
	_, err := c.Do(ctx, "DELETE", "/api/v1/vaults/"+esc(vault)+"/notifications/"+esc(id), nil, nil, "")
	return err
}

// ListDeliveries lists webhook deliveries, newest first.
func (c *Client) ListDeliveries(ctx context.Context, vault, subscription string) ([]*store.Delivery, error) {
	var l list[*store.Delivery]
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/deliveries?subscription="+url.QueryEscape(subscription), nil, &l, "")
	return l.Items, err
}

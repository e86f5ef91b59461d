package service

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/arca-backup/arca/internal/vault/store"
)

// SubscriptionSpec is a webhook subscription as a caller writes it.
type SubscriptionSpec struct {
	URL    string   `json:"url"`
	Secret string   `json:"secret"`
	Events []string `json:"events"`
}

// Bounds of a subscription.
const (
	MinWebhookSecret = 16
	MaxWebhookSecret = 512
	MaxSubscriptions = 100 // per vault
)

// AddSubscription subscribes a webhook to some of a vault's events.
func (s *Service) AddSubscription(ctx context.Context, vault string, b SubscriptionSpec) (*store.Subscription, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	u, err := url.Parse(b.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(b.URL) > 2048 || u.User != nil {
		return nil, InvalidField("InvalidWebhookURL", "url", b.URL, "an absolute https:// (or http://) URL without user information, at most 2048 characters")
	}
	if n := len(b.Secret); n < MinWebhookSecret || n > MaxWebhookSecret {
		return nil, InvalidField("InvalidWebhookSecret", "secret", "", "a shared secret of 16-512 characters (e.g. head -c 32 /dev/urandom | base64 > secret)",
			"secret: %d characters; want 16-512 (e.g. head -c 32 /dev/urandom | base64 > secret)", n)
	}
	if len(b.Events) == 0 {
		return nil, InvalidField("InvalidEvents", "events", "", "name at least one of "+strings.Join(store.EventTypes(), ", "))
	}
	var events []string
	for _, e := range b.Events {
		if !slices.Contains(store.EventTypes(), e) {
			return nil, InvalidField("InvalidEvents", "events", e, "want "+strings.Join(store.EventTypes(), ", "))
		}
		if !slices.Contains(events, e) {
			events = append(events, e)
		}
	}
	have, err := s.Store.ListSubscriptions(ctx, vault)
	if err != nil {
		return nil, err
	}
	if len(have) >= MaxSubscriptions {
		return nil, TooLargef("TooManySubscriptions", "vault %q has %d webhook subscriptions, the most allowed: remove one first", vault, len(have))
	}
	sub := &store.Subscription{Vault: vault, URL: b.URL, Secret: b.Secret, Events: events, CreatedBy: CallerOf(ctx)}
	if err := s.Store.CreateSubscription(ctx, sub); err != nil {
		return nil, err
	}
	return sub, nil
}

// ListSubscriptions lists a vault's webhook subscriptions.
func (s *Service) ListSubscriptions(ctx context.Context, vault string) ([]*store.Subscription, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	return s.Store.ListSubscriptions(ctx, vault)
}

// GetSubscription returns one subscription (its secret is never encoded).
func (s *Service) GetSubscription(ctx context.Context, vault, id string) (*store.Subscription, error) {
	return s.Store.GetSubscription(ctx, vault, id)
}

// DeleteSubscription removes a subscription; its deliveries stay recorded.
func (s *Service) DeleteSubscription(ctx context.Context, vault, id string) error {
	return s.Store.DeleteSubscription(ctx, vault, id)
}

// ListDeliveries lists a vault's webhook deliveries, newest first, of one
// subscription when set, at most limit (1-1000; empty: 100).
func (s *Service) ListDeliveries(ctx context.Context, vault, subscription, limit string) ([]*store.Delivery, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	n := 100
	if limit != "" {
		var err error
		if n, err = strconv.Atoi(limit); err != nil || n < 1 || n > MaxJobs {
			return nil, InvalidField("InvalidValue", "limit", limit, "want 1-1000")
		}
	}
	return s.Store.ListDeliveries(ctx, vault, subscription, n)
}

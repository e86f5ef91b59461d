// Package notify delivers the vault's events (store.Event: a job failed
// or ended with warnings, a verification failed, a scheduled backup was
// missed) to the webhooks subscribed to them.
//
// Notify records one Pending delivery per matching subscription and
// returns at once; Tick (run by one vault replica at a time, under the
// background lease) POSTs every due delivery. The body is the event as
// JSON, signed with the subscription's shared secret:
//
//	X-Arca-Signature: sha256=<hex of HMAC-SHA256(secret, body)>
//
// with X-Arca-Event (the type) and X-Arca-Delivery (the delivery ID). A
// 2xx answer delivers it; anything else (another status, a timeout, a
// refused connection) is retried with backoff (Backoff) until
// MaxAttempts, then the delivery is Failed. Every attempt's status and
// error are recorded (GET /vaults/{vault}/deliveries). Deliveries are
// stored, so a restarted vault retries what was pending.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Headers of a delivery.
const (
	HeaderSignature = "X-Arca-Signature"
	HeaderEvent     = "X-Arca-Event"
	HeaderDelivery  = "X-Arca-Delivery"
)

// DefaultBackoff is the wait before each retry: the n-th retry waits
// DefaultBackoff[n-1] after the attempt before it.
var DefaultBackoff = []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}

// Sign returns the X-Arca-Signature value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature under secret (constant
// time): what a receiver does.
func Verify(secret string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

// Webhooks is the vault's Notifier.
type Webhooks struct {
	Store store.NotificationStore
	Clock clock.Clock
	HTTP  *http.Client // nil: one with a 10 s timeout that follows no redirect
	Log   *slog.Logger
	// Backoff between attempts (nil: DefaultBackoff); the number of
	// attempts is len(Backoff)+1.
	Backoff []time.Duration
	// OnAttempt, when set, is told the outcome of every attempt
	// (metrics): delivered or not.
	OnAttempt func(d *store.Delivery, delivered bool)
	// kick wakes Run when a delivery is recorded.
	kick chan struct{}
}

func (w *Webhooks) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

func (w *Webhooks) backoff() []time.Duration {
	if w.Backoff == nil {
		return DefaultBackoff
	}
	return w.Backoff
}

func (w *Webhooks) client() *http.Client {
	if w.HTTP == nil {
		// A redirect is an answer (3xx: not delivered), not a new target:
		// following it would send the signed event where the subscriber
		// never named.
		return &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return w.HTTP
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Notify records a delivery of e for every subscription of e.Vault to
// e.Type. A failure to record is logged: an event never fails the work
// that raised it.
func (w *Webhooks) Notify(ctx context.Context, e store.Event) {
	if e.ID == "" {
		e.ID = "ev-" + newID()
	}
	if e.Time.IsZero() {
		e.Time = w.Clock.Now().UTC()
	}
	subs, err := w.Store.ListSubscriptions(ctx, e.Vault)
	if err != nil {
		w.log().Error("notification not recorded", "vault", e.Vault, "event", e.Type, "err", err)
		return
	}
	n := 0
	for _, s := range subs {
		if !slices.Contains(s.Events, e.Type) {
			continue
		}
		d := &store.Delivery{Vault: e.Vault, Subscription: s.ID, Event: e, State: store.DeliveryPending}
		if err := w.Store.CreateDelivery(ctx, d); err != nil {
			w.log().Error("notification not recorded", "vault", e.Vault, "subscription", s.ID, "event", e.Type, "err", err)
			continue
		}
		n++
	}
	if n > 0 && w.kick != nil {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// due reports whether a pending delivery's next attempt is due at now.
func (w *Webhooks) due(d *store.Delivery, now time.Time) bool {
	if d.Attempts == 0 {
		return true
	}
	b := w.backoff()
	return !now.Before(d.UpdatedAt.Add(b[min(d.Attempts-1, len(b)-1)]))
}

// Tick attempts every pending delivery that is due and returns how many
// it attempted.
func (w *Webhooks) Tick(ctx context.Context) (int, error) {
	ds, err := w.Store.PendingDeliveries(ctx)
	if err != nil {
		return 0, err
	}
	now := w.Clock.Now()
	subs := map[string]*store.Subscription{}
	n := 0
	for _, d := range ds {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if !w.due(d, now) {
			continue
		}
		key := d.Vault + "/" + d.Subscription
		sub, ok := subs[key]
		if !ok {
			if sub, err = w.Store.GetSubscription(ctx, d.Vault, d.Subscription); err != nil {
				sub = nil // removed: the delivery fails below
			}
			subs[key] = sub
		}
		n++
		w.attempt(ctx, d, sub)
	}
	return n, nil
}

func (w *Webhooks) attempt(ctx context.Context, d *store.Delivery, sub *store.Subscription) {
	d.Attempts++
	delivered := false
	if sub == nil {
		d.State, d.LastStatus, d.LastError = store.DeliveryFailed, 0, "the subscription was removed"
	} else {
		d.LastStatus, d.LastError = w.post(ctx, d, sub)
		switch {
		case d.LastStatus >= 200 && d.LastStatus < 300:
			now := w.Clock.Now().UTC()
			d.State, d.DeliveredAt, d.LastError, delivered = store.DeliveryDelivered, &now, "", true
		case d.Attempts > len(w.backoff()):
			d.State = store.DeliveryFailed
		}
	}
	if err := w.Store.UpdateDelivery(ctx, d); err != nil {
		w.log().Error("delivery not recorded", "delivery", d.ID, "err", err)
	}
	if w.OnAttempt != nil {
		w.OnAttempt(d, delivered)
	}
	w.log().Info("webhook delivery", "vault", d.Vault, "subscription", d.Subscription, "delivery", d.ID, "event", d.Event.Type,
		"attempt", d.Attempts, "status", d.LastStatus, "state", d.State, "err", d.LastError)
}

// post sends one attempt: the HTTP status (0 when there was no answer)
// and what went wrong.
func (w *Webhooks) post(ctx context.Context, d *store.Delivery, sub *store.Subscription) (int, string) {
	body, err := json.Marshal(d.Event)
	if err != nil {
		return 0, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "arca-vault")
	req.Header.Set(HeaderEvent, d.Event.Type)
	req.Header.Set(HeaderDelivery, d.ID)
	req.Header.Set(HeaderSignature, Sign(sub.Secret, body))
	resp, err := w.client().Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Sprintf("the receiver answered %s", resp.Status)
	}
	return resp.StatusCode, ""
}

// Run attempts due deliveries every interval, and soon after Notify
// records one, until ctx ends.
func (w *Webhooks) Run(ctx context.Context, interval time.Duration) {
	if w.kick == nil {
		w.kick = make(chan struct{}, 1)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := w.Tick(ctx); err != nil && ctx.Err() == nil {
			w.log().Error("webhook deliveries", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
	}
}

// Start prepares Run's wake-up channel; call it before Notify can run
// concurrently with Run.
func (w *Webhooks) Start() {
	if w.kick == nil {
		w.kick = make(chan struct{}, 1)
	}
}

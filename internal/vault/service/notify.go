package service

import (
	"context"

	"github.com/arca-backup/arca/internal/vault/store"
)

// Notifier sends the vault's events (store.Event: a job failed or ended
// with warnings, a verification failed, a scheduled backup was missed) to
// whoever subscribed to them; package notify delivers them to webhooks.
// Notify must not block the caller for long: delivery and its retries
// happen elsewhere, and a failure to deliver is recorded there, never
// returned to the operation that raised the event.
type Notifier interface {
	Notify(ctx context.Context, e store.Event)
}

// notify sends e through s.Notifier, if any, stamping its time.
func (s *Service) notify(ctx context.Context, e store.Event) {
	if s.Notifier == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.now().Now().UTC()
	}
	s.Notifier.Notify(ctx, e)
}

// Notify sends an event raised outside an operation (the job runner, the
// verification job) through the service's Notifier; without one it does
// nothing.
func (s *Service) Notify(ctx context.Context, e store.Event) { s.notify(ctx, e) }

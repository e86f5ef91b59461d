package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/notify"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

var ctx = context.Background()

const secret = "0123456789abcdef-shared"

// receiver is a webhook endpoint that checks each signature with the
// shared secret, as a user's would, and answers the statuses queued.
type receiver struct {
	mu       sync.Mutex
	statuses []int // answered in order; 200 once used up
	got      []store.Event
	badSigs  int
	headers  []http.Header
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.headers = append(r.headers, req.Header.Clone())
	if !notify.Verify(secret, body, req.Header.Get(notify.HeaderSignature)) {
		r.badSigs++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status := http.StatusOK
	if len(r.statuses) > 0 {
		status, r.statuses = r.statuses[0], r.statuses[1:]
	}
	if status == http.StatusOK {
		var e store.Event
		if err := json.Unmarshal(body, &e); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.got = append(r.got, e)
	}
	w.WriteHeader(status)
}

func setup(t *testing.T) (*notify.Webhooks, *clock.Fake, store.Store) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &notify.Webhooks{Store: st, Clock: clk, Backoff: []time.Duration{time.Minute, 5 * time.Minute}}, clk, st
}

func deliveries(t *testing.T, st store.Store) []*store.Delivery {
	t.Helper()
	ds, err := st.ListDeliveries(ctx, "v", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// A subscribed receiver gets the events it asked for, signed with the
// shared secret; a 500 is retried after the backoff, and the delivery
// records every attempt. A receiver that never succeeds ends Failed after
// the last attempt; one with another secret sees bad signatures.
func TestWebhookReceiverGetsSignedEventsRetriedAfter500(t *testing.T) {
	w, clk, st := setup(t)
	rcv := &receiver{statuses: []int{http.StatusInternalServerError}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	sub := &store.Subscription{Vault: "v", URL: srv.URL + "/hook", Secret: secret, Events: []string{store.EventJobFailed, store.EventScheduleMissed}}
	if err := st.CreateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}

	w.Notify(ctx, store.Event{Type: store.EventJobFailed, Vault: "v", Instance: "shop", Job: "j1", Message: "backup failed"})
	w.Notify(ctx, store.Event{Type: store.EventJobWarning, Vault: "v", Job: "j2"}) // not subscribed
	w.Notify(ctx, store.Event{Type: store.EventJobFailed, Vault: "other", Job: "j3"})
	if ds := deliveries(t, st); len(ds) != 1 || ds[0].State != store.DeliveryPending {
		t.Fatalf("recorded deliveries: %+v", ds)
	}

	if n, err := w.Tick(ctx); err != nil || n != 1 {
		t.Fatalf("first tick: %d %v", n, err)
	}
	d := deliveries(t, st)[0]
	if d.State != store.DeliveryPending || d.Attempts != 1 || d.LastStatus != 500 || d.LastError == "" {
		t.Fatalf("after a 500: %+v", d)
	}
	if n, _ := w.Tick(ctx); n != 0 {
		t.Fatal("retried before the backoff")
	}
	clk.Advance(time.Minute)
	if n, _ := w.Tick(ctx); n != 1 {
		t.Fatal("not retried after the backoff")
	}
	d = deliveries(t, st)[0]
	if d.State != store.DeliveryDelivered || d.Attempts != 2 || d.LastStatus != 200 || d.DeliveredAt == nil {
		t.Fatalf("after the retry: %+v", d)
	}
	rcv.mu.Lock()
	if len(rcv.got) != 1 || rcv.got[0].Job != "j1" || rcv.got[0].Type != store.EventJobFailed || rcv.got[0].ID == "" || rcv.badSigs != 0 {
		t.Fatalf("receiver got %+v (bad signatures %d)", rcv.got, rcv.badSigs)
	}
	h := rcv.headers[len(rcv.headers)-1]
	if h.Get(notify.HeaderEvent) != store.EventJobFailed || h.Get(notify.HeaderDelivery) != d.ID {
		t.Fatalf("headers: %v", h)
	}
	rcv.mu.Unlock()

	// A subscription whose secret is not the receiver's: the receiver
	// finds every signature wrong and refuses; after the last attempt the
	// delivery is Failed and no more attempts are made.
	other := &receiver{}
	srv2 := httptest.NewServer(other)
	defer srv2.Close()
	if err := st.CreateSubscription(ctx, &store.Subscription{Vault: "v", URL: srv2.URL, Secret: "another secret entirely", Events: []string{store.EventScheduleMissed}}); err != nil {
		t.Fatal(err)
	}
	w.Notify(ctx, store.Event{Type: store.EventScheduleMissed, Vault: "v", Instance: "shop"})
	for range 3 {
		if _, err := w.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
	}
	if n, _ := w.Tick(ctx); n != 0 {
		t.Fatal("attempted after the last one")
	}
	var failed, delivered int
	for _, d := range deliveries(t, st) {
		switch {
		case d.State == store.DeliveryFailed && d.Attempts == 3:
			failed++
		case d.State == store.DeliveryDelivered:
			delivered++
		}
	}
	// The first subscription also got schedule-missed, signed right.
	if failed != 1 || delivered != 2 {
		t.Fatalf("failed %d (want 1 after 3 attempts), delivered %d (want 2)", failed, delivered)
	}
	if other.badSigs != 3 || len(other.got) != 0 {
		t.Fatalf("receiver with another secret: %d bad signatures, %d accepted", other.badSigs, len(other.got))
	}
}

// A receiver that redirects is not followed: the signed event goes only
// to the URL subscribed, and the 3xx counts as not delivered.
func TestRedirectNotFollowed(t *testing.T) {
	w, _, st := setup(t)
	var elsewhere int
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere++ }))
	defer target.Close()
	redir := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redir.Close()
	if err := st.CreateSubscription(ctx, &store.Subscription{Vault: "v", URL: redir.URL, Secret: secret, Events: []string{store.EventJobFailed}}); err != nil {
		t.Fatal(err)
	}
	w.Notify(ctx, store.Event{Type: store.EventJobFailed, Vault: "v"})
	if _, err := w.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if d := deliveries(t, st)[0]; d.State != store.DeliveryPending || d.LastStatus != http.StatusTemporaryRedirect || elsewhere != 0 {
		t.Fatalf("redirect: %+v, %d calls elsewhere", d, elsewhere)
	}
}

func TestSignature(t *testing.T) {
	body := []byte(`{"type":"job-failed"}`)
	sig := notify.Sign("k", body)
	// echo -n '{"type":"job-failed"}' | openssl dgst -sha256 -hmac k
	if sig != "sha256=1717175b93c7690edc317ca3557142576c30c17658eba5ee34cf483987577deb" || !notify.Verify("k", body, sig) {
		t.Fatal(sig)
	}
	if notify.Verify("k", append(body, ' '), sig) || notify.Verify("K", body, sig) {
		t.Fatal("a changed body or key verified")
	}
}

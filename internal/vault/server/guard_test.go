package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/notify"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// The permissions issue 17 adds are refused where they should be: a
// Backup Operator cannot delete or undelete points, a Backup Reader cannot
// add webhooks, an Owner cannot approve guarded operations, and a
// Resource Guard Approver can do nothing but read the vault and decide
// requests.
func TestGuardPermissionsRefused(t *testing.T) {
	e := fixture(t)
	rp := &store.RecoveryPoint{Vault: "a", ID: "rp-1", Instance: "shop", Time: e.clk.Now(), Tag: "default"}
	if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
		t.Fatal(err)
	}
	hook := map[string]any{"url": "https://hooks.example/x", "secret": strings.Repeat("s", 16), "events": []string{"job-failed"}}
	op := e.as(t, "user:otto", rbac.BackupOperator+"@/vaults/a")
	rd := e.as(t, "user:rita", rbac.BackupReader+"@/vaults/a")
	gd := e.as(t, "user:gina", rbac.ResourceGuardApprover+"@/vaults/a")
	for _, c := range []struct {
		who                  *env
		method, path, action string
		body                 any
	}{
		{op, "DELETE", "/api/v1/vaults/a/recovery-points/rp-1", rbac.RecoveryPointsDelete, nil},
		{op, "POST", "/api/v1/vaults/a/recovery-points/rp-1/undelete", rbac.RecoveryPointsUndelete, nil},
		{op, "POST", "/api/v1/vaults/a/instances/shop/undelete", rbac.InstancesUndelete, nil},
		{op, "POST", "/api/v1/vaults/a/approvals/mua-x/approve", rbac.ApprovalsApprove, nil},
		{rd, "POST", "/api/v1/vaults/a/notifications", rbac.NotificationsWrite, hook},
		{rd, "GET", "/api/v1/vaults/a/notifications", rbac.NotificationsRead, nil},
		{rd, "GET", "/api/v1/vaults/a/approvals", rbac.ApprovalsRead, nil},
		{e, "POST", "/api/v1/vaults/a/approvals/mua-x/approve", rbac.ApprovalsApprove, nil}, // admin: Owner at /
		{gd, "DELETE", "/api/v1/vaults/a/recovery-points/rp-1", rbac.RecoveryPointsDelete, nil},
		{gd, "GET", "/api/v1/vaults/a/instances", rbac.InstancesRead, nil},
		{gd, "PUT", "/api/v1/vaults/a", rbac.VaultsWrite, map[string]any{"resourceGuard": false}},
	} {
		im := ""
		if c.method == "DELETE" || c.method == "PUT" {
			im = "*"
		}
		out := c.who.want(t, c.method, c.path, c.body, im, 403, "Forbidden")
		if !strings.Contains(out["message"].(string), c.action) {
			t.Errorf("%s %s: refusal names no %s: %v", c.method, c.path, c.action, out["message"])
		}
	}
	// The same calls pass for the roles that grant them.
	gd.want(t, "GET", "/api/v1/vaults/a/approvals", nil, "", 200, "")
	e.as(t, "user:bea", rbac.BackupContributor+"@/vaults/a").want(t, "POST", "/api/v1/vaults/a/notifications", hook, "", 201, "")
}

// Over HTTP, with the resource guard on: a Backup Contributor's delete is
// refused naming the request, a Resource Guard Approver approves it, the
// retry soft-deletes the point, undelete brings it back; request,
// approval and use are in the audit log.
func TestResourceGuardOverHTTP(t *testing.T) {
	e := fixture(t)
	rp := &store.RecoveryPoint{Vault: "a", ID: "rp-1", Instance: "shop", Time: e.clk.Now(), Tag: "default"}
	if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
		t.Fatal(err)
	}
	alice := e.as(t, "user:alice", rbac.BackupContributor+"@/vaults/a")
	carol := e.as(t, "user:carol", rbac.ResourceGuardApprover+"@/vaults/a")
	v := alice.want(t, "PUT", "/api/v1/vaults/a", map[string]any{"resourceGuard": true, "immutability": "unlocked"}, "*", 200, "")
	if v["resourceGuard"] != true || v["immutability"] != "unlocked" || v["softDeleteDays"] != float64(14) {
		t.Fatalf("vault settings: %v", v)
	}
	alice.want(t, "PUT", "/api/v1/vaults/a", map[string]any{"immutability": "bogus"}, "*", 400, "InvalidImmutability")
	// Immutable: refused before the guard is even asked.
	alice.want(t, "DELETE", "/api/v1/vaults/a/recovery-points/rp-1", nil, "*", 409, "ImmutableVaultDeleteRefused")
	alice.want(t, "PUT", "/api/v1/vaults/a", map[string]any{"immutability": "disabled"}, "*", 403, "ApprovalRequired")
	pending := carol.want(t, "GET", "/api/v1/vaults/a/approvals?state=Pending", nil, "", 200, "")["items"].([]any)
	id := pending[0].(map[string]any)["id"].(string)
	alice.want(t, "POST", "/api/v1/vaults/a/approvals/"+id+"/approve", nil, "", 403, "Forbidden") // no approver role
	carol.want(t, "POST", "/api/v1/vaults/a/approvals/"+id+"/approve", map[string]any{"reason": "ticket 9"}, "", 200, "")
	alice.want(t, "PUT", "/api/v1/vaults/a", map[string]any{"immutability": "disabled"}, "*", 200, "")

	out := alice.want(t, "DELETE", "/api/v1/vaults/a/recovery-points/rp-1", nil, "*", 403, "ApprovalRequired")
	pending = carol.want(t, "GET", "/api/v1/vaults/a/approvals?state=Pending", nil, "", 200, "")["items"].([]any)
	id = pending[0].(map[string]any)["id"].(string)
	if !strings.Contains(out["message"].(string), id) {
		t.Fatalf("refusal does not name request %s: %v", id, out["message"])
	}
	carol.want(t, "POST", "/api/v1/vaults/a/approvals/"+id+"/approve", nil, "", 200, "")
	got := alice.want(t, "DELETE", "/api/v1/vaults/a/recovery-points/rp-1", nil, "*", 200, "")
	if got["state"] != store.RPSoftDeleted {
		t.Fatalf("approved delete: %v", got)
	}
	if l := alice.want(t, "GET", "/api/v1/vaults/a/recovery-points", nil, "", 200, "")["items"].([]any); len(l) != 0 {
		t.Fatalf("soft-deleted point listed: %v", l)
	}
	if l := alice.want(t, "GET", "/api/v1/vaults/a/recovery-points?deleted=only", nil, "", 200, "")["items"].([]any); len(l) != 1 {
		t.Fatalf("deleted=only: %v", l)
	}
	alice.want(t, "POST", "/api/v1/vaults/a/recovery-points/rp-1/undelete", nil, "", 200, "")
	for _, ev := range []string{"approvalRequested", "approvalApproved", "approvalUsed"} {
		if !strings.Contains(e.log.String(), `"event":"`+ev+`"`) {
			t.Errorf("audit log has no %s", ev)
		}
	}
}

// hookReceiver checks signatures with the shared secret and answers 500
// once, then 200.
type hookReceiver struct {
	mu     sync.Mutex
	secret string
	calls  int
	events []store.Event
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if !notify.Verify(h.secret, body, r.Header.Get(notify.HeaderSignature)) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if h.calls == 1 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var ev store.Event
	_ = json.Unmarshal(body, &ev)
	h.events = append(h.events, ev)
}

// A failed job reaches a webhook subscribed through the API, signed, after
// a retry; the deliveries list shows both attempts.
func TestJobFailureWebhook(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &syncBuf{}
	srv, _ := server.New(st, server.Options{Clock: clk, Log: slog.New(slog.NewJSONHandler(logs, nil)), NotifyBackoff: []time.Duration{time.Second}})
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	tok, _, err := server.CreateAdminToken(ctx, st, "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, st: st, clk: clk, url: ts.URL, log: logs, c: &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}}
	e.trust(t, []string{"a"}, []string{"prod-1"})
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "a"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/a/policies", pol, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/a/instances", instanceBody("shop"), "", 201, "")

	rcv := &hookReceiver{secret: "a-shared-secret-of-32-characters"}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	e.want(t, "POST", "/api/v1/vaults/a/notifications", map[string]any{"url": hook.URL, "secret": rcv.secret, "events": []string{"job-failed"}}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/a/notifications", map[string]any{"url": "ftp://x", "secret": rcv.secret, "events": []string{"job-failed"}}, "", 400, "InvalidWebhookURL")
	e.want(t, "POST", "/api/v1/vaults/a/notifications", map[string]any{"url": hook.URL, "secret": "short", "events": []string{"job-failed"}}, "", 400, "InvalidWebhookSecret")
	e.want(t, "POST", "/api/v1/vaults/a/notifications", map[string]any{"url": hook.URL, "secret": rcv.secret, "events": []string{"job-exploded"}}, "", 400, "InvalidEvents")

	j := e.want(t, "POST", "/api/v1/vaults/a/instances/shop/backup", map[string]any{}, "", 202, "")
	if err := srv.Runner.Tick(ctx); err != nil { // no driver for prod-1: the job fails
		t.Fatal(err)
	}
	if got := e.want(t, "GET", "/api/v1/vaults/a/jobs/"+j["id"].(string), nil, "", 200, ""); got["state"] != store.JobFailed {
		t.Fatalf("job: %v", got)
	}
	if n, err := srv.DeliverWebhooks(ctx); err != nil || n != 1 {
		t.Fatalf("first attempt: %d %v", n, err)
	}
	clk.Advance(time.Second)
	if n, err := srv.DeliverWebhooks(ctx); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	rcv.mu.Lock()
	if rcv.calls != 2 || len(rcv.events) != 1 || rcv.events[0].Type != store.EventJobFailed || rcv.events[0].Job != j["id"] {
		t.Fatalf("receiver: %d calls, events %+v", rcv.calls, rcv.events)
	}
	rcv.mu.Unlock()
	ds := e.want(t, "GET", "/api/v1/vaults/a/deliveries", nil, "", 200, "")["items"].([]any)
	if len(ds) != 1 || ds[0].(map[string]any)["state"] != store.DeliveryDelivered || ds[0].(map[string]any)["attempts"] != float64(2) {
		t.Fatalf("deliveries: %v", ds)
	}
	subs := e.want(t, "GET", "/api/v1/vaults/a/notifications", nil, "", 200, "")["items"].([]any)
	if _, shown := subs[0].(map[string]any)["secret"]; shown || len(subs) != 1 {
		t.Fatalf("subscriptions (the secret must never be shown): %v", subs)
	}
	resp, err := ts.Client().Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`arca_vault_events_total{type="job-failed"} 1`, `arca_vault_webhook_attempts_total{result="delivered"} 1`, `arca_vault_webhook_attempts_total{result="failed"} 1`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics has no %s", m)
		}
	}
}

// Through the server's own wiring (server.New, as arca vault serve): a
// point soft-deleted over the API stays through a retention pass before
// its period, is queued for deletion by the pass after it and removed by
// the job runner; and the scheduler New returns raises schedule-missed,
// which reaches a subscribed webhook.
func TestPurgeAndMissedScheduleThroughServerWiring(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, sch := server.New(st, server.Options{Clock: clk, Log: slog.New(slog.DiscardHandler)})
	ts := httptest.NewTLSServer(srv.Handler())
	defer ts.Close()
	tok, _, _ := server.CreateAdminToken(ctx, st, "admin", "admin")
	e := &env{srv: srv, st: st, clk: clk, url: ts.URL, c: &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}}
	e.trust(t, []string{"v"}, []string{"prod-1"})
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/policies", pol, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/instances", instanceBody("shop"), "", 201, "")
	for _, id := range []string{"rp-old", "rp-new"} {
		if err := st.CreateRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: id, Instance: "shop", Time: clk.Now(), Tag: "default"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
	}
	rcv := &hookReceiver{secret: "a-shared-secret-of-32-characters"}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	e.want(t, "POST", "/api/v1/vaults/v/notifications", map[string]any{"url": hook.URL, "secret": rcv.secret, "events": []string{"schedule-missed"}}, "", 201, "")
	rcv.calls = 1 // answer 200 at once

	e.want(t, "DELETE", "/api/v1/vaults/v/recovery-points/rp-old", nil, "*", 200, "")
	retention := func() []any {
		t.Helper()
		return e.want(t, "GET", "/api/v1/vaults/v/jobs?type=Retention", nil, "", 200, "")["items"].([]any)
	}
	clk.Advance(13 * 24 * time.Hour)
	srv.RetentionPass(ctx)
	if js := retention(); len(js) != 0 {
		t.Fatalf("a pass before the period queued %v", js)
	}
	clk.Advance(24 * time.Hour)
	srv.RetentionPass(ctx)
	js := retention()
	if len(js) != 1 || js[0].(map[string]any)["state"] != store.JobQueued {
		t.Fatalf("the pass after the period: %v", js)
	}
	if err := srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetRecoveryPoint(ctx, "v", "rp-old"); err == nil {
		t.Fatal("rp-old is still in the catalog after its purge job ran")
	}
	if _, err := st.GetRecoveryPoint(ctx, "v", "rp-new"); err != nil {
		t.Fatalf("rp-new: %v", err)
	}

	// The scheduler was not ticked for 14 days: its claim is a missed
	// schedule, delivered to the webhook.
	if _, err := sch.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.DeliverWebhooks(ctx); err != nil || n != 1 {
		t.Fatalf("deliveries: %d %v", n, err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.events) != 1 || rcv.events[0].Type != store.EventScheduleMissed || rcv.events[0].Instance != "shop" {
		t.Fatalf("receiver: %+v", rcv.events)
	}
}

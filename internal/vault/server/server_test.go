package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

var ctx = context.Background()

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type env struct {
	srv *server.Server
	st  store.Store
	clk *clock.Fake
	c   *client.Client // authenticated
	url string
	log *syncBuf
}

func setup(t *testing.T) *env {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &syncBuf{}
	srv, _ := server.New(st, server.Options{Clock: clk, Log: slog.New(slog.NewJSONHandler(logs, nil))})
	srv.MaxBody = 64 << 10
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.StartTLS() // real HTTPS on a loopback listener
	t.Cleanup(ts.Close)
	tok, _, err := server.CreateAdminToken(ctx, st, "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, st: st, clk: clk, c: &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}, url: ts.URL, log: logs}
	e.trust(t, []string{"a", "b", "v", "v1", "w"}, []string{"prod-1", "dr"})
	return e
}

// trust gives the identities that act for the vaults (vault:V) and in the
// clusters (extension:C) what backups and restores need of them,
// everywhere (Reader and Storage Contributor at /): the tests that are not
// about scopes run as a prepared installation does. The scope tests
// (TestVaultScopes) start without them.
func (e *env) trust(t *testing.T, vaults, clusters []string) {
	t.Helper()
	for _, v := range vaults {
		if _, err := e.c.AssignRole(ctx, "vault:"+v, "Reader", "/"); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clusters {
		if _, err := e.c.AssignRole(ctx, "extension:"+c, "Storage Contributor", "/"); err != nil {
			t.Fatal(err)
		}
	}
}

// call sends a request and returns status, decoded body and ETag.
func (e *env) call(t *testing.T, method, path string, body any, ifMatch string) (int, map[string]any, string) {
	t.Helper()
	var out map[string]any
	resp, err := e.c.Do(ctx, method, path, body, &out, ifMatch)
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status, map[string]any{"code": ce.Code, "message": ce.Message, "details": ce.Details}, resp.ETag
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.Status, out, resp.ETag
}

func (e *env) want(t *testing.T, method, path string, body any, ifMatch string, status int, code string) map[string]any {
	t.Helper()
	got, out, _ := e.call(t, method, path, body, ifMatch)
	if got != status || (code != "" && out["code"] != code) {
		t.Fatalf("%s %s: got %d %v, want %d %s", method, path, got, out, status, code)
	}
	return out
}

var pol = map[string]any{
	"name": "p4h", "schedule": "R/2026-01-01T02:00:00Z/PT4H",
	"retention": map[string]any{"default": map[string]any{"duration": "P7D"}, "weekly": map[string]any{"duration": "P4W", "datastore": "vault"}},
}

func instanceBody(name string) map[string]any {
	return map[string]any{"name": name, "cluster": "prod-1", "policy": "p4h", "storageLocation": "file:///srv/arca/repo",
		"backupConfiguration": map[string]any{"includedNamespaces": []string{"shop"}}}
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(server.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	s := &server.Server{}
	routes := map[string]bool{}
	for _, r := range s.Routes() {
		routes[r[0]+" "+r[1]] = true
		if _, ok := doc.Paths[r[1]][strings.ToLower(r[0])]; !ok {
			t.Errorf("route %s %s missing from openapi.json", r[0], r[1])
		}
	}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			if !routes[strings.ToUpper(m)+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the server does not serve", strings.ToUpper(m), path)
			}
		}
	}
}

func TestAuthAndPublicEndpoints(t *testing.T) {
	e := setup(t)
	anon := &client.Client{BaseURL: e.url, HTTP: e.c.HTTP}
	_, err := anon.ListVaults(ctx)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 401 || ce.Code != "Unauthenticated" {
		t.Fatalf("no token: %v", err)
	}
	bad := &client.Client{BaseURL: e.url, Token: "arca_wrong", HTTP: e.c.HTTP}
	if _, err := bad.ListVaults(ctx); !errors.As(err, &ce) || ce.Status != 401 || ce.Code != "InvalidToken" {
		t.Fatalf("bad token: %v", err)
	}
	for _, p := range []string{"/healthz", "/api/v1/openapi.json"} {
		if _, err := anon.Do(ctx, "GET", p, nil, nil, ""); err != nil {
			t.Fatalf("%s must be public: %v", p, err)
		}
	}
	// An expired token is refused.
	past := e.clk.Now().Add(-time.Minute)
	old, _, err := server.CreateToken(ctx, e.st, "old", "old", &past)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&client.Client{BaseURL: e.url, Token: old, HTTP: e.c.HTTP}).ListVaults(ctx); !errors.As(err, &ce) || ce.Status != 401 {
		t.Fatalf("expired token: %v", err)
	}
	// Tokens are stored hashed: the clear token appears nowhere in the store.
	toks, _ := e.st.ListTokens(ctx)
	for _, tk := range toks {
		if tk.Hash == e.c.Token || !strings.HasPrefix(e.c.Token, server.TokenPrefix) {
			t.Fatal("token stored in clear")
		}
	}
	// Token API: a new token works, is shown once, can be revoked.
	out := e.want(t, "POST", "/api/v1/tokens", map[string]any{"name": "ci", "expiresIn": "P30D"}, "", 201, "")
	ci := &client.Client{BaseURL: e.url, Token: out["token"].(string), HTTP: e.c.HTTP}
	if _, err := ci.ListVaults(ctx); err != nil {
		t.Fatalf("new token: %v", err)
	}
	e.want(t, "DELETE", "/api/v1/tokens/"+out["id"].(string), nil, "", 204, "")
	if _, err := ci.ListVaults(ctx); !errors.As(err, &ce) || ce.Status != 401 {
		t.Fatalf("revoked token still works: %v", err)
	}

	resp, err := e.c.HTTP.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `arca_vault_http_requests_total{code="401",method="GET",route="GET /api/v1/vaults"}`) {
		t.Fatalf("metrics missing request counter:\n%s", body)
	}
	if !strings.Contains(e.log.String(), `"msg":"access"`) || !strings.Contains(e.log.String(), `"route":"GET /api/v1/vaults"`) {
		t.Fatalf("no structured access log: %s", e.log.String())
	}
	e.want(t, "GET", "/api/v1/nothing", nil, "", 404, "RouteNotFound")
}

func TestVaultsAndPolicies(t *testing.T) {
	e := setup(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "Bad_Name"}, "", 400, "InvalidName")
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v1", "bogus": 1}, "", 400, "InvalidBody")
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v1", "description": "prod"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v1"}, "", 409, "AlreadyExists")
	e.want(t, "GET", "/api/v1/vaults/nope", nil, "", 404, "NotFound")
	e.want(t, "POST", "/api/v1/vaults/nope/policies", pol, "", 404, "NotFound")

	big := map[string]any{"name": "v2", "description": strings.Repeat("x", 100<<10)}
	e.want(t, "POST", "/api/v1/vaults", big, "", 413, "RequestTooLarge")

	bad := map[string]any{"name": "p", "schedule": "R/2026-01-01T00:00:00Z/PT30M", "retention": map[string]any{"default": map[string]any{"duration": "7 days"}}}
	out := e.want(t, "POST", "/api/v1/vaults/v1/policies", bad, "", 400, "InvalidPolicy")
	details, _ := json.Marshal(out["details"])
	for _, field := range []string{`"field":"schedule"`, `"field":"retention.default.duration"`} {
		if !strings.Contains(string(details), field) {
			t.Errorf("details %s lack %s", details, field)
		}
	}
	status, created, etag := e.call(t, "POST", "/api/v1/vaults/v1/policies", pol, "")
	if status != 201 || etag != `"1"` {
		t.Fatalf("create policy: %d %v etag %s", status, created, etag)
	}
	ret, _ := json.Marshal(created["retention"])
	var spec policy.RetentionSpec
	if err := json.Unmarshal(ret, &spec); err != nil || spec.Default.Datastore != "operational" || spec.Weekly.Datastore != "vault" {
		t.Fatalf("retention not normalised: %s", ret)
	}
	upd := map[string]any{"schedule": "0 3 * * *", "retention": pol["retention"]}
	status, _, etag = e.call(t, "PUT", "/api/v1/vaults/v1/policies/p4h", upd, `"1"`)
	if status != 200 || etag != `"2"` {
		t.Fatalf("update with current ETag: %d %s", status, etag)
	}
	e.want(t, "PUT", "/api/v1/vaults/v1/policies/p4h", upd, `"1"`, 412, "PreconditionFailed")
	e.want(t, "PUT", "/api/v1/vaults/v1/policies/p4h", upd, `nonsense`, 400, "InvalidIfMatch")
	// Without If-Match an update or delete is 428 and changes nothing;
	// the error names the header and where the ETag comes from.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"PUT", "/api/v1/vaults/v1/policies/p4h", map[string]any{"schedule": "0 4 * * *", "retention": pol["retention"]}},
		{"DELETE", "/api/v1/vaults/v1/policies/p4h", nil},
		{"PUT", "/api/v1/vaults/v1", map[string]any{"description": "changed"}},
	} {
		out := e.want(t, c.method, c.path, c.body, "", 428, "PreconditionRequired")
		if msg, _ := out["message"].(string); !strings.Contains(msg, "If-Match") || !strings.Contains(msg, "GET "+c.path) || !strings.Contains(msg, "ETag") {
			t.Fatalf("%s %s: 428 message %q should name If-Match and how to get the ETag", c.method, c.path, msg)
		}
	}
	if p, err := e.c.GetPolicy(ctx, "v1", "p4h"); err != nil || p.Schedule != "0 3 * * *" || p.Version != 2 {
		t.Fatalf("a refused update changed the policy: %+v %v", p, err)
	}
	if v, err := e.c.GetVault(ctx, "v1"); err != nil || v.Description == "changed" {
		t.Fatalf("a refused update changed the vault: %+v %v", v, err)
	}
	e.want(t, "DELETE", "/api/v1/vaults/v1/policies/p4h", nil, `"1"`, 412, "PreconditionFailed")

	ps, err := e.c.ListPolicies(ctx, "v1")
	if err != nil || len(ps) != 1 || ps[0].Schedule != "0 3 * * *" {
		t.Fatalf("list policies: %v %v", ps, err)
	}
	e.want(t, "DELETE", "/api/v1/vaults/v1", nil, "*", 409, "VaultNotEmpty")
	e.want(t, "DELETE", "/api/v1/vaults/v1/policies/p4h", nil, `"2"`, 204, "")
	e.want(t, "DELETE", "/api/v1/vaults/v1", nil, "*", 204, "")
}

func TestInstancesJobsAndRecoveryPoints(t *testing.T) {
	e := setup(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/policies", pol, "", 201, "")

	unknown := instanceBody("shop")
	unknown["policy"] = "nope"
	e.want(t, "POST", "/api/v1/vaults/v/instances", unknown, "", 400, "UnknownReference")
	badLoc := instanceBody("shop")
	badLoc["storageLocation"] = "ftp://x"
	e.want(t, "POST", "/api/v1/vaults/v/instances", badLoc, "", 400, "InvalidStorageLocation")
	badCfg := instanceBody("shop")
	badCfg["backupConfiguration"] = map[string]any{"includeNamespaces": []string{"typo"}}
	e.want(t, "POST", "/api/v1/vaults/v/instances", badCfg, "", 400, "InvalidBackupConfiguration")
	e.want(t, "POST", "/api/v1/vaults/v/instances", instanceBody("shop"), "", 201, "")

	tr, err := e.st.GetTrigger(ctx, "v", "shop")
	if err != nil || !tr.NextRun.Equal(time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("protection did not arm the schedule: %+v %v", tr, err)
	}
	e.want(t, "POST", "/api/v1/vaults/v/policies/p4h", nil, "", 405, "MethodNotAllowed")
	e.want(t, "DELETE", "/api/v1/vaults/v/policies/p4h", nil, "*", 409, "PolicyInUse")

	// On-demand backup: Queued, then failed by the runner: no cluster driver.
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop/backup", map[string]any{"retention": "P2H"}, "", 400, "InvalidValue")
	job := e.want(t, "POST", "/api/v1/vaults/v/instances/shop/backup", map[string]any{"retention": "P30D"}, "", 202, "")
	if job["state"] != "Queued" || job["type"] != "OnDemandBackup" {
		t.Fatalf("backup job: %v", job)
	}
	if err := e.srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.want(t, "GET", "/api/v1/vaults/v/jobs/"+job["id"].(string), nil, "", 200, "")
	errs, _ := json.Marshal(got["errors"])
	if got["state"] != "Failed" || !strings.Contains(string(errs), `"code":"ClusterNotConnected"`) {
		t.Fatalf("job without driver: %v", got)
	}
	e.want(t, "POST", "/api/v1/vaults/v/jobs/"+job["id"].(string)+"/cancel", nil, "", 409, "JobFinished")
	queued := e.want(t, "POST", "/api/v1/vaults/v/instances/shop/backup", nil, "", 202, "")
	cancelled := e.want(t, "POST", "/api/v1/vaults/v/jobs/"+queued["id"].(string)+"/cancel", nil, "", 200, "")
	if cancelled["state"] != "Cancelled" {
		t.Fatalf("cancel: %v", cancelled)
	}
	list := e.want(t, "GET", "/api/v1/vaults/v/jobs?instance=shop&state=Cancelled", nil, "", 200, "")
	if n := len(list["items"].([]any)); n != 1 {
		t.Fatalf("filtered job list: %d", n)
	}
	e.want(t, "GET", "/api/v1/vaults/v/jobs?limit=0", nil, "", 400, "InvalidValue")

	// Recovery points (recorded directly: no cluster driver exists yet).
	exp := e.clk.Now().AddDate(0, 0, 7)
	for i, ts := range []time.Time{e.clk.Now().Add(-2 * time.Hour), e.clk.Now().Add(-time.Hour)} {
		rp := &store.RecoveryPoint{Vault: "v", ID: []string{"rp-a", "rp-b"}[i], Instance: "shop", Time: ts, Tag: "default", Datastore: "operational", ExpiresAt: &exp}
		if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	rps := e.want(t, "GET", "/api/v1/vaults/v/recovery-points?instance=shop", nil, "", 200, "")
	if n := len(rps["items"].([]any)); n != 2 {
		t.Fatalf("recovery points: %d", n)
	}
	rp := e.want(t, "GET", "/api/v1/vaults/v/recovery-points/rp-b", nil, "", 200, "")
	if rp["tag"] != "default" || rp["expiresAt"] == nil {
		t.Fatalf("recovery point: %v", rp)
	}

	// Restores.
	e.want(t, "POST", "/api/v1/vaults/v/restores", map[string]any{"recoveryPoint": "nope", "targetCluster": "dr"}, "", 400, "UnknownReference")
	e.want(t, "POST", "/api/v1/vaults/v/restores", map[string]any{"recoveryPoint": "rp-a", "targetCluster": "dr",
		"restoreCriteria": map[string]any{"conflictPolicy": "Overwrite"}}, "", 400, "InvalidRestoreCriteria")
	restore := e.want(t, "POST", "/api/v1/vaults/v/restores", map[string]any{"recoveryPoint": "rp-a", "targetCluster": "dr",
		"restoreCriteria": map[string]any{"conflictPolicy": "Skip", "namespaceMappings": map[string]string{"shop": "shop-restored"}}}, "", 202, "")
	if restore["type"] != "Restore" || restore["state"] != "Queued" {
		t.Fatalf("restore job: %v", restore)
	}

	// Stop protection.
	e.want(t, "DELETE", "/api/v1/vaults/v/instances/shop", nil, "*", 409, "ProtectionActive")
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop/stop-protection", map[string]any{"mode": "pause"}, "*", 400, "InvalidStopMode")
	st := e.want(t, "POST", "/api/v1/vaults/v/instances/shop/stop-protection", map[string]any{"mode": "retain-forever"}, "*", 200, "")
	if st["protectionState"] != "ProtectionStopped" {
		t.Fatalf("stop: %v", st)
	}
	if _, err := e.st.GetTrigger(ctx, "v", "shop"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("trigger survives stop: %v", err)
	}
	if rp, _ := e.st.GetRecoveryPoint(ctx, "v", "rp-a"); rp.ExpiresAt != nil {
		t.Fatal("retain-forever kept an expiry")
	}
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop/backup", nil, "", 409, "ProtectionStopped")
	e.want(t, "DELETE", "/api/v1/vaults/v/instances/shop", nil, "*", 409, "RecoveryPointsRemain")

	// Resume re-arms the schedule and gives points their expiry back.
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop/resume-protection", nil, "*", 200, "")
	if rp, _ := e.st.GetRecoveryPoint(ctx, "v", "rp-a"); rp.ExpiresAt == nil {
		t.Fatal("resume did not reapply retention")
	}
	if _, err := e.st.GetTrigger(ctx, "v", "shop"); err != nil {
		t.Fatalf("resume did not arm the schedule: %v", err)
	}
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop/resume-protection", nil, "*", 409, "NotStopped")

	// Update with a stale ETag, then a good one.
	status, cur, etag := e.call(t, "GET", "/api/v1/vaults/v/instances/shop", nil, "")
	if status != 200 {
		t.Fatal(cur)
	}
	upd := instanceBody("shop")
	upd["storageLocation"] = "s3://bucket/arca?endpoint=127.0.0.1:9000"
	e.want(t, "PUT", "/api/v1/vaults/v/instances/shop", upd, `"1"`, 412, "PreconditionFailed")
	e.want(t, "PUT", "/api/v1/vaults/v/instances/shop", upd, etag, 200, "")
	upd["cluster"] = "other"
	e.want(t, "PUT", "/api/v1/vaults/v/instances/shop", upd, "*", 400, "ImmutableField")

	// delete-data queues a Retention job (202, its Location) that the job
	// runner runs: it removes every point. (With soft delete off: with it
	// on, the default, the instance is soft-deleted first; guard_test.go.)
	e.want(t, "PUT", "/api/v1/vaults/v", map[string]any{"softDeleteDays": 0}, "*", 200, "")
	resp, err := e.c.Do(ctx, "POST", "/api/v1/vaults/v/instances/shop/stop-protection", map[string]any{"mode": "delete-data"}, nil, "*")
	if err != nil || resp.Status != 202 || !strings.HasPrefix(resp.Location, "/api/v1/vaults/v/jobs/") {
		t.Fatalf("delete-data: %+v %v", resp, err)
	}
	if rps, _ := e.st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "shop"}); len(rps) == 0 {
		t.Fatal("delete-data deleted inside the request")
	}
	e.want(t, "DELETE", "/api/v1/vaults/v/instances/shop", nil, "*", 409, "RecoveryPointsRemain")
	if err := e.srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if j := e.want(t, "GET", resp.Location, nil, "", 200, ""); j["state"] != store.JobCompleted {
		t.Fatalf("deletion job: %v", j)
	}
	if rps, _ := e.st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "shop"}); len(rps) != 0 {
		t.Fatalf("delete-data left %d points", len(rps))
	}
	ret := e.want(t, "GET", "/api/v1/vaults/v/jobs?type=Retention", nil, "", 200, "")
	if n := len(ret["items"].([]any)); n != 1 {
		t.Fatalf("retention jobs: %d", n)
	}
	e.want(t, "DELETE", "/api/v1/vaults/v/instances/shop", nil, "*", 204, "")
	e.want(t, "GET", "/api/v1/vaults/v/instances/shop", nil, "", 404, "NotFound")

	// A stopped instance with points is deleted with them by a job.
	e.want(t, "POST", "/api/v1/vaults/v/instances", instanceBody("shop2"), "", 201, "")
	if err := e.st.CreateRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: "rp-z", Instance: "shop2", Time: e.clk.Now(), Tag: "default", Datastore: policy.Operational, State: store.RPAvailable}); err != nil {
		t.Fatal(err)
	}
	e.want(t, "DELETE", "/api/v1/vaults/v/instances/shop2?deleteData=true", nil, "*", 409, "ProtectionActive")
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop2/stop-protection", map[string]any{"mode": "retain-per-policy"}, "*", 200, "")
	del := e.want(t, "DELETE", "/api/v1/vaults/v/instances/shop2?deleteData=true", nil, "*", 202, "")
	if del["type"] != store.JobRetention || del["state"] != store.JobQueued {
		t.Fatalf("delete with data: %v", del)
	}
	e.want(t, "GET", "/api/v1/vaults/v/instances/shop2", nil, "", 200, "")
	if err := e.srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.want(t, "GET", "/api/v1/vaults/v/instances/shop2", nil, "", 404, "NotFound")
	if !strings.Contains(e.log.String(), `"msg":"audit"`) {
		t.Fatal("no audit log lines for mutations")
	}
}

func TestScheduledJobsThroughServerWiring(t *testing.T) {
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
	c := &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}
	(&env{c: c}).trust(t, []string{"v"}, []string{"prod-1"})
	if _, err := c.CreateVault(ctx, "v", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePolicy(ctx, "v", client.PolicyInput{Name: "p4h", Schedule: "R/2026-01-01T02:00:00Z/PT4H",
		Retention: policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P7D"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, "POST", "/api/v1/vaults/v/instances", instanceBody("shop"), nil, ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 24*12; i++ { // one day in 5-minute ticks
		clk.Advance(5 * time.Minute)
		if _, err := sch.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var l struct{ Items []store.Job }
	if _, err := c.Do(ctx, "GET", "/api/v1/vaults/v/jobs?type=ScheduledBackup", nil, &l, ""); err != nil {
		t.Fatal(err)
	}
	// From 00:30 to 00:30 next day: 02, 06, 10, 14, 18, 22.
	if len(l.Items) != 6 {
		t.Fatalf("%d scheduled jobs in a day, want 6", len(l.Items))
	}
}

func TestRealListenerInitAndServe(t *testing.T) {
	dir := t.TempDir()
	opts := server.Options{DataDir: dir, Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)}
	res, err := server.Init(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Token, server.TokenPrefix) || res.CertFile != filepath.Join(dir, "tls", "tls.crt") || len(res.Fingerprint) != 64 {
		t.Fatalf("init: %+v", res)
	}
	if _, err := server.Init(ctx, opts); !errors.Is(err, server.ErrInitialized) {
		t.Fatalf("second init: %v", err)
	}
	addr := make(chan string, 1)
	opts.Ready = func(a string) { addr <- a }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- server.Run(runCtx, opts) }()
	var a string
	select {
	case a = <-addr:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("vault did not start")
	}
	c, err := client.New("https://"+a, res.Token, client.TLSOptions{CAFile: res.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVault(ctx, "v", "through the real listener"); err != nil {
		t.Fatal(err)
	}
	vs, err := c.ListVaults(ctx)
	if err != nil || len(vs) != 1 {
		t.Fatalf("list: %v %v", vs, err)
	}
	// Without trusting the generated certificate the connection is refused.
	untrusting, _ := client.New("https://"+a, res.Token, client.TLSOptions{})
	if _, err := untrusting.ListVaults(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed certificate accepted without trust: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestCatalogSync: POST …/instances/{instance}/sync re-creates the records
// of recovery points found in the repository, with their old IDs, tags
// from the policy in time order, and leaves known ones alone.
func TestCatalogSync(t *testing.T) {
	e := setup(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/policies", pol, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/instances", instanceBody("shop"), "", 201, "")
	t1 := time.Date(2026, 1, 5, 2, 0, 0, 0, time.UTC) // a Monday
	t2 := t1.Add(4 * time.Hour)
	aaaa, bbbb, cccc := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	pts := []map[string]any{
		{"repositoryId": bbbb, "vault": "v", "instance": "shop", "time": t2, "jobId": "job-2", "items": 7, "bytes": 700},
		{"repositoryId": aaaa, "vault": "v", "instance": "shop", "time": t1, "jobId": "job-1", "items": 5, "bytes": 500, "vaultTier": true},
		{"repositoryId": cccc, "vault": "v", "instance": "shop", "time": t2.Add(time.Hour), "items": 1, "bytes": 10}, // not from a vault job
	}
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop/sync", map[string]any{"recoveryPoints": []map[string]any{{"repositoryId": "x"}}}, "", 400, "InvalidRecoveryPointID")
	e.want(t, "POST", "/api/v1/vaults/v/instances/shop/sync", map[string]any{"recoveryPoints": []map[string]any{
		{"repositoryId": "latest", "vault": "v", "instance": "shop", "time": t1}}}, "", 400, "InvalidRecoveryPointID")
	e.want(t, "POST", "/api/v1/vaults/v/instances/nope/sync", map[string]any{"recoveryPoints": pts}, "", 404, "NotFound")
	out := e.want(t, "POST", "/api/v1/vaults/v/instances/shop/sync", map[string]any{"recoveryPoints": pts}, "", 200, "")
	if created, _ := out["created"].([]any); len(created) != 3 || out["existing"] != float64(0) {
		t.Fatalf("first sync: %v", out)
	}
	rps, err := e.st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	byRepo := map[string]*store.RecoveryPoint{}
	for _, rp := range rps {
		byRepo[rp.RepoID] = rp
	}
	a, b, c := byRepo[aaaa], byRepo[bbbb], byRepo[cccc]
	if a == nil || b == nil || c == nil || a.ID != "rp-job-1" || b.ID != "rp-job-2" || a.JobID != "job-1" || c.ID == "" ||
		a.Tag != "weekly" || a.Tiers.Vault == nil || b.Tag != "default" || b.Tiers.Vault != nil || a.Items != 5 || b.Bytes != 700 || a.ExpiresAt == nil || !a.Time.Equal(t1) {
		t.Fatalf("synced points: %+v %+v %+v", a, b, c)
	}
	out = e.want(t, "POST", "/api/v1/vaults/v/instances/shop/sync", map[string]any{"recoveryPoints": pts}, "", 200, "")
	if created, _ := out["created"].([]any); len(created) != 0 || out["existing"] != float64(3) {
		t.Fatalf("second sync: %v", out)
	}
}

// TestListPages walks policies and instances page by page with limit and
// after; a list without limit stays whole; a bad limit is refused.
func TestListPages(t *testing.T) {
	e := setup(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v1"}, "", 201, "")
	var names []string
	for _, n := range []string{"p4", "p1", "p5", "p3", "p2"} {
		p := map[string]any{"name": n, "schedule": pol["schedule"], "retention": pol["retention"]}
		e.want(t, "POST", "/api/v1/vaults/v1/policies", p, "", 201, "")
		in := instanceBody("i-" + n)
		in["policy"] = n
		e.want(t, "POST", "/api/v1/vaults/v1/instances", in, "", 201, "")
	}
	walk := func(path string) (names []string, requests int) {
		after := ""
		for {
			requests++
			out := e.want(t, "GET", path+"?limit=2&after="+after, nil, "", 200, "")
			for _, it := range out["items"].([]any) {
				names = append(names, it.(map[string]any)["name"].(string))
			}
			next, _ := out["next"].(string)
			if next == "" {
				return names, requests
			}
			after = next
		}
	}
	names, n := walk("/api/v1/vaults/v1/policies")
	if fmt.Sprint(names) != "[p1 p2 p3 p4 p5]" || n != 3 {
		t.Fatalf("policies by pages of 2: %v in %d requests, want [p1 … p5] in 3", names, n)
	}
	names, n = walk("/api/v1/vaults/v1/instances")
	if fmt.Sprint(names) != "[i-p1 i-p2 i-p3 i-p4 i-p5]" || n != 3 {
		t.Fatalf("instances by pages of 2: %v in %d requests", names, n)
	}
	if out := e.want(t, "GET", "/api/v1/vaults/v1/policies?limit=5", nil, "", 200, ""); out["next"] != "p5" {
		t.Fatalf("a full last page names its last item as next: %v", out["next"])
	}
	if out := e.want(t, "GET", "/api/v1/vaults/v1/instances", nil, "", 200, ""); len(out["items"].([]any)) != 5 || out["next"] != nil {
		t.Fatalf("without limit: %v", out)
	}
	for _, bad := range []string{"0", "1001", "x"} {
		out := e.want(t, "GET", "/api/v1/vaults/v1/policies?limit="+bad, nil, "", 400, "InvalidValue")
		if !strings.Contains(out["message"].(string), "after=") {
			t.Fatalf("limit=%s: %v does not say how to page", bad, out["message"])
		}
	}
}

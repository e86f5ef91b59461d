package clusterdriver_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// vaultEnv is a vault with trusted access (as arca vault serve runs it)
// behind real HTTPS, and an admin client.
type vaultEnv struct {
	st  store.Store
	clk *clock.Fake
	c   *client.Client
	url string
}

func startVault(t *testing.T) *vaultEnv {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, _ := server.New(st, server.Options{Clock: clk, Log: slog.New(slog.DiscardHandler), Clusters: clusterdriver.NewTrustedAccess})
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	tok, _, err := server.CreateAdminToken(ctx, st, "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	return &vaultEnv{st: st, clk: clk, c: &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}, url: ts.URL}
}

// as returns the env with a token of principal, holding the grants
// ("Role@scope").
func (e *vaultEnv) as(t *testing.T, principal string, grants ...string) *vaultEnv {
	t.Helper()
	tok, _, err := server.CreateToken(context.Background(), e.st, principal, principal, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		role, scope, _ := strings.Cut(g, "@")
		if _, err := e.c.AssignRole(context.Background(), principal, role, scope); err != nil {
			t.Fatalf("assign %s: %v", g, err)
		}
	}
	cp := *e
	cp.c = &client.Client{BaseURL: e.url, Token: tok, HTTP: e.c.HTTP}
	return &cp
}

// want sends a request and checks status and error code.
func (e *vaultEnv) want(t *testing.T, method, path string, body any, status int, code string) map[string]any {
	t.Helper()
	var out map[string]any
	resp, err := e.c.Do(context.Background(), method, path, body, &out, "")
	var ce *client.Error
	if errors.As(err, &ce) {
		out = map[string]any{"code": ce.Code, "message": ce.Message}
	} else if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	got := 0
	if ce != nil {
		got = ce.Status
	} else {
		got = resp.Status
	}
	if got != status || (code != "" && out["code"] != code) {
		t.Fatalf("%s %s: got %d %v, want %d %s", method, path, got, out, status, code)
	}
	return out
}

type checkOut struct {
	ID, Result, Code, Message, Remedy string
}

type reportOut struct {
	Operation   string
	Passed      bool
	Checks      []checkOut
	Assignments []struct {
		Done   bool
		Reason string
	}
}

func (r reportOut) find(id string) checkOut {
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	return checkOut{}
}

// TestRestoreValidationRoute: POST …/restores/validate over HTTPS, the
// vault checking through its trusted access (package clusterdriver). No
// cluster runs here: the target is unregistered, then registered at an
// address nothing listens on, which exercises the vault's own access
// (role checks, trusted-access registration) and the content checks the
// vault cannot run.
func TestRestoreValidationRoute(t *testing.T) {
	ctx := context.Background()
	e := startVault(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "a"}, 201, "")
	for _, ra := range [][3]string{{"vault:a", "Reader", "/clusters/prod-1"}, {"extension:prod-1", "Storage Contributor", "/"}} {
		if _, err := e.c.AssignRole(ctx, ra[0], ra[1], ra[2]); err != nil {
			t.Fatal(err)
		}
	}
	e.want(t, "POST", "/api/v1/vaults/a/policies", map[string]any{"name": "p4h", "schedule": "R/2026-01-01T02:00:00Z/PT4H",
		"retention": map[string]any{"default": map[string]any{"duration": "P7D"}}}, 201, "")
	e.want(t, "POST", "/api/v1/vaults/a/instances?skipValidation=true", map[string]any{"name": "shop", "cluster": "prod-1", "policy": "p4h",
		"storageLocation": "file:///srv/arca/repo"}, 201, "")
	rp := &store.RecoveryPoint{Vault: "a", ID: "rp-1", Instance: "shop", Time: e.clk.Now().Add(-time.Hour), Tag: "default", Datastore: "operational"}
	if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
		t.Fatal(err)
	}
	const path = "/api/v1/vaults/a/restores/validate"
	body := map[string]any{"recoveryPoint": "rp-1", "targetCluster": "c1"}

	// Refusals before any check: as for starting a restore.
	e.want(t, "POST", path, map[string]any{"recoveryPoint": "rp-none", "targetCluster": "c1"}, 400, "UnknownReference")
	e.want(t, "POST", path, map[string]any{"recoveryPoint": "rp-1", "targetCluster": "C1"}, 400, "InvalidName")
	e.want(t, "POST", path, map[string]any{"recoveryPoint": "rp-1", "targetCluster": "c1", "restoreCriteria": map[string]any{"bogus": 1}}, 400, "InvalidRestoreCriteria")
	e.want(t, "POST", "/api/v1/vaults/zz/restores/validate", body, 404, "NotFound")

	// Authorized like starting a restore (restores/action at the vault).
	rd := e.as(t, "user:rita", "Reader@/vaults/a")
	if out := rd.want(t, "POST", path, body, 403, "Forbidden"); !strings.Contains(out["message"].(string), "restores/action") {
		t.Fatalf("denial must name restores/action: %v", out)
	}
	op := e.as(t, "user:otto", "Backup Operator@/vaults/a")
	op.want(t, "POST", path, body, 200, "")

	// Target not registered through trusted access.
	var rep reportOut
	if _, err := e.c.Do(ctx, "POST", path, body, &rep, ""); err != nil {
		t.Fatal(err)
	}
	if rep.Operation != "restore" || rep.Passed || rep.find("TrustedAccess").Code != "TrustedAccessNotEnabled" {
		t.Fatalf("unregistered target: %+v", rep)
	}

	// Registered, unreachable: the cluster checks fail, the content checks
	// are skipped with the CLI command that runs them, the role checks
	// of the target's trust model run against the vault's store.
	e.want(t, "POST", "/api/v1/clusters", map[string]any{"name": "c1", "server": "https://127.0.0.1:1", "namespace": "arca-system", "serviceAccount": "arca-vault-a", "token": "t"}, 201, "")
	rep = reportOut{}
	if _, err := e.c.Do(ctx, "POST", path, body, &rep, ""); err != nil {
		t.Fatal(err)
	}
	if rep.Passed || rep.find("KubernetesVersion").Code != "ClusterUnreachable" {
		t.Fatalf("unreachable target: %+v", rep)
	}
	for _, id := range []string{"NamespaceConflicts", "StorageClasses", "APIVersionsServed"} {
		c := rep.find(id)
		if c.Result != "Skipped" || !strings.Contains(c.Message, "catalog does not hold") || !strings.Contains(c.Remedy, "arca restore validate --recovery-point rp-1 --target-cluster c1") {
			t.Errorf("%s: %+v", id, c)
		}
	}
	if c := rep.find("RoleVaultReaderOnCluster"); c.Result != "Failed" || c.Code != "RoleAssignmentMissing" {
		t.Fatalf("role check on the target: %+v", c)
	}
	// ?assignMissingRoles=true creates it (the admin is Owner at /).
	rep = reportOut{}
	if _, err := e.c.Do(ctx, "POST", path+"?assignMissingRoles=true", body, &rep, ""); err != nil {
		t.Fatal(err)
	}
	if len(rep.Assignments) == 0 || !rep.Assignments[0].Done {
		t.Fatalf("assignments: %+v", rep.Assignments)
	}
	as, err := e.c.ListRoleAssignments(ctx, "/clusters/c1", "vault:a")
	if err != nil || len(as) != 1 || as[0].Role != "Reader" {
		t.Fatalf("vault:a on /clusters/c1: %+v %v", as, err)
	}
}

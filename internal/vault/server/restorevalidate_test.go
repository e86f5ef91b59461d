package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

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

// TestRestoreValidationRoute: POST …/restores/validate over HTTPS. No
// cluster runs here: the target is unregistered, then registered at an
// address nothing listens on, which exercises the vault's own access
// (role checks, trusted-access registration) and the content checks the
// vault cannot run.
func TestRestoreValidationRoute(t *testing.T) {
	e := fixture(t)
	rp := &store.RecoveryPoint{Vault: "a", ID: "rp-1", Instance: "shop", Time: e.clk.Now().Add(-time.Hour), Tag: "default", Datastore: "operational"}
	if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
		t.Fatal(err)
	}
	const path = "/api/v1/vaults/a/restores/validate"
	body := map[string]any{"recoveryPoint": "rp-1", "targetCluster": "c1"}

	// Refusals before any check: as for starting a restore.
	e.want(t, "POST", path, map[string]any{"recoveryPoint": "rp-none", "targetCluster": "c1"}, "", 400, "UnknownReference")
	e.want(t, "POST", path, map[string]any{"recoveryPoint": "rp-1", "targetCluster": "C1"}, "", 400, "InvalidName")
	e.want(t, "POST", path, map[string]any{"recoveryPoint": "rp-1", "targetCluster": "c1", "restoreCriteria": map[string]any{"bogus": 1}}, "", 400, "InvalidRestoreCriteria")
	e.want(t, "POST", "/api/v1/vaults/zz/restores/validate", body, "", 404, "NotFound")

	// Authorized like starting a restore (restores/action at the vault).
	rd := e.as(t, "user:rita", "Reader@/vaults/a")
	if out := rd.want(t, "POST", path, body, "", 403, "Forbidden"); !strings.Contains(out["message"].(string), "restores/action") {
		t.Fatalf("denial must name restores/action: %v", out)
	}
	op := e.as(t, "user:otto", "Backup Operator@/vaults/a")
	op.want(t, "POST", path, body, "", 200, "")

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
	e.want(t, "POST", "/api/v1/clusters", map[string]any{"name": "c1", "server": "https://127.0.0.1:1", "namespace": "arca-system", "serviceAccount": "arca-vault-a", "token": "t"}, "", 201, "")
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

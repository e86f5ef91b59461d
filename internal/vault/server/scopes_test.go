package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// refused checks a 403 RoleAssignmentMissing whose message names who
// lacks what where, and the assignment that fixes it.
func refused(t *testing.T, out map[string]any, who, action, scope, role string) {
	t.Helper()
	msg, _ := out["message"].(string)
	for _, w := range []string{who + " may not " + action + " at " + scope, "arca role assign --principal " + who + ` --role "` + role + `" --scope '` + scope + "'"} {
		if !strings.Contains(msg, w) {
			t.Fatalf("refusal %q does not say %q", msg, w)
		}
	}
}

// TestVaultScopes: cluster, storage-location and snapshot-location scopes
// are enforced on the caller and on the identities that act for the vault
// (vault:V, cluster:C, extension:C), at instance create and update, backup
// now and restore start, and again when the job runs; skipValidation needs
// Owner. Each refusal is checked for what it says and for what did not
// happen, over the real API.
func TestVaultScopes(t *testing.T) {
	e := setup(t)
	const storage, other, snap = "file:///srv/team-s", "file:///srv/team-t", "csi-snap"
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "s"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/s/policies", pol, "", 201, "")
	body := map[string]any{"name": "shop", "cluster": "east", "policy": "p4h", "storageLocation": storage, "snapshotLocation": snap}
	cara := e.as(t, "user:cara", "Backup Contributor@/vaults/s")
	assign := func(who, role, scope string) string {
		t.Helper()
		a, err := e.c.AssignRole(ctx, who, role, scope)
		if err != nil {
			t.Fatal(err)
		}
		return a.ID
	}
	gone := func(path string) {
		t.Helper()
		e.want(t, "GET", path, nil, "", 404, "NotFound")
	}

	// Create: each missing assignment refuses, names itself, creates nothing.
	var ids = map[string]string{}
	for _, step := range []struct{ who, action, scope, role string }{
		{"user:cara", rbac.ClustersBackup, "/clusters/east", rbac.BackupOperator},
		{"user:cara", rbac.StorageWrite, rbac.StorageScope(storage), rbac.StorageContributor},
		{"vault:s", rbac.ClustersRead, "/clusters/east", rbac.Reader},
		{"extension:east", rbac.StorageWrite, rbac.StorageScope(storage), rbac.StorageContributor},
		{"user:cara", rbac.SnapshotsWrite, rbac.SnapshotScope(snap), rbac.Contributor},
		{"vault:s", rbac.SnapshotsRead, rbac.SnapshotScope(snap), rbac.Reader},
		{"cluster:east", rbac.SnapshotsWrite, rbac.SnapshotScope(snap), rbac.Contributor},
	} {
		out := cara.want(t, "POST", "/api/v1/vaults/s/instances", body, "", 403, "RoleAssignmentMissing")
		refused(t, out, step.who, step.action, step.scope, step.role)
		gone("/api/v1/vaults/s/instances/shop")
		ids[step.who+" "+step.action] = assign(step.who, step.role, step.scope)
	}
	cara.want(t, "POST", "/api/v1/vaults/s/instances", body, "", 201, "")

	// Update: moving the instance to a repository cara may not write is
	// refused and changes nothing.
	moved := map[string]any{"policy": "p4h", "storageLocation": other, "snapshotLocation": snap}
	out := cara.want(t, "PUT", "/api/v1/vaults/s/instances/shop", moved, "*", 403, "RoleAssignmentMissing")
	refused(t, out, "user:cara", rbac.StorageWrite, rbac.StorageScope(other), rbac.StorageContributor)
	if in, _, err := e.c.GetInstance(ctx, "s", "shop"); err != nil || in.StorageLocation != storage {
		t.Fatalf("refused update changed the instance: %+v %v", in, err)
	}

	// Backup now: the extension's storage role removed → refused, no job.
	if err := e.c.RemoveRoleAssignment(ctx, ids["extension:east "+rbac.StorageWrite]); err != nil {
		t.Fatal(err)
	}
	out = cara.want(t, "POST", "/api/v1/vaults/s/instances/shop/backup", nil, "", 403, "RoleAssignmentMissing")
	refused(t, out, "extension:east", rbac.StorageWrite, rbac.StorageScope(storage), rbac.StorageContributor)
	if js, err := e.c.ListJobs(ctx, "s", client.JobFilter{}); err != nil || len(js) != 0 {
		t.Fatalf("a refused backup queued jobs: %v %v", js, err)
	}
	assign("extension:east", rbac.StorageContributor, rbac.StorageScope(storage))

	// Queued, then cara loses the storage role: the runner re-checks before
	// the job reaches the cluster and fails it with the refusal (without
	// the re-check it would fail ClusterNotConnected: no driver here).
	cara.want(t, "POST", "/api/v1/vaults/s/instances/shop/backup", nil, "", 202, "")
	if err := e.c.RemoveRoleAssignment(ctx, ids["user:cara "+rbac.StorageWrite]); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	js, err := e.c.ListJobs(ctx, "s", client.JobFilter{})
	if err != nil || len(js) != 1 || js[0].State != store.JobFailed || len(js[0].Errors) == 0 || js[0].Errors[0].Code != "RoleAssignmentMissing" ||
		!strings.Contains(js[0].Errors[0].Message, "user:cara may not "+rbac.StorageWrite) || js[0].ExternalRef != "" {
		t.Fatalf("job after the role was removed: %+v %v", js, err)
	}
	ids["user:cara "+rbac.StorageWrite] = assign("user:cara", rbac.StorageContributor, rbac.StorageScope(storage))

	// Restore into cluster west: each missing assignment refuses, no job.
	rp := &store.RecoveryPoint{Vault: "s", ID: "rp-1", Instance: "shop", Time: e.clk.Now().Add(-time.Hour), Tag: "default", Datastore: "operational"}
	if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
		t.Fatal(err)
	}
	restore := map[string]any{"recoveryPoint": "rp-1", "targetCluster": "west"}
	for _, step := range []struct{ who, action, scope, role string }{
		{"user:cara", rbac.ClustersRestore, "/clusters/west", rbac.BackupOperator},
		{"vault:s", rbac.ClustersRead, "/clusters/west", rbac.Reader},
		{"extension:west", rbac.StorageRead, rbac.StorageScope(storage), rbac.StorageContributor},
	} {
		out := cara.want(t, "POST", "/api/v1/vaults/s/restores", restore, "", 403, "RoleAssignmentMissing")
		refused(t, out, step.who, step.action, step.scope, step.role)
		if js, _ := e.c.ListJobs(ctx, "s", client.JobFilter{Type: store.JobRestore}); len(js) != 0 {
			t.Fatalf("a refused restore queued a job: %v", js)
		}
		ids[step.who+" "+step.action] = assign(step.who, step.role, step.scope)
	}
	cara.want(t, "POST", "/api/v1/vaults/s/restores", restore, "", 202, "")
	// …and re-checked when it runs: the vault loses Reader on west.
	if err := e.c.RemoveRoleAssignment(ctx, ids["vault:s "+rbac.ClustersRead]); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	rj, err := e.c.ListJobs(ctx, "s", client.JobFilter{Type: store.JobRestore})
	if err != nil || len(rj) != 1 || rj[0].State != store.JobFailed || rj[0].Errors[0].Code != "RoleAssignmentMissing" ||
		!strings.Contains(rj[0].Errors[0].Message, "vault:s may not clusters/read at /clusters/west") {
		t.Fatalf("restore job after the vault's role was removed: %+v %v", rj, err)
	}

	// skipValidation needs Owner at the vault; refused otherwise, and
	// nothing is created. An Owner's skip is audited.
	web := map[string]any{"name": "web", "cluster": "east", "policy": "p4h", "storageLocation": storage}
	out = cara.want(t, "POST", "/api/v1/vaults/s/instances?skipValidation=true", web, "", 403, "SkipValidationForbidden")
	if msg := out["message"].(string); !strings.Contains(msg, "skipValidation=true needs Owner at /vaults/s") || !strings.Contains(msg, "arca instance validate") {
		t.Fatalf("skipValidation refusal: %q", msg)
	}
	gone("/api/v1/vaults/s/instances/web")
	if strings.Contains(e.log.String(), `"validationSkipped"`) {
		t.Fatal("a refused skip was audited as done")
	}
	e.want(t, "POST", "/api/v1/vaults/s/instances?skipValidation=true", web, "", 201, "")
	if l := e.log.String(); !strings.Contains(l, `"event":"validationSkipped","principal":"admin","vault":"s","instance":"web"`) {
		t.Fatalf("an Owner's skip is not audited:\n%s", l)
	}
}

// TestRestoreNamesFullIDs: a restore names its recovery point by full ID
// (no latest, no prefix), and a catalog entry whose repository ID is not
// whole is refused rather than sent to a cluster, where it could resolve
// to another instance's point in a shared repository. No job is queued.
func TestRestoreNamesFullIDs(t *testing.T) {
	e := setup(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/policies", pol, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/instances", instanceBody("shop"), "", 201, "")
	full := strings.Repeat("e", 64)
	for id, repoID := range map[string]string{"rp-job-1": full, "rp-short": "eeee"} {
		if err := e.st.CreateRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: id, Instance: "shop", RepoID: repoID,
			Time: e.clk.Now().Add(-time.Hour), Tag: "default", Datastore: "operational"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ref := range []string{"latest", "rp-job", "rp"} {
		out := e.want(t, "POST", "/api/v1/vaults/v/restores", map[string]any{"recoveryPoint": ref, "targetCluster": "dr"}, "", 400, "UnknownReference")
		if !strings.Contains(out["message"].(string), "named by full ID only") {
			t.Fatalf("restore of %q: %v", ref, out)
		}
	}
	out := e.want(t, "POST", "/api/v1/vaults/v/restores", map[string]any{"recoveryPoint": "rp-short", "targetCluster": "dr"}, "", 400, "InvalidRecoveryPointID")
	if !strings.Contains(out["message"].(string), `names repository point "eeee", which is not a full repository ID`) {
		t.Fatalf("restore of a point with a partial repository ID: %v", out)
	}
	if js, _ := e.c.ListJobs(ctx, "v", client.JobFilter{Type: store.JobRestore}); len(js) != 0 {
		t.Fatalf("refused restores queued jobs: %v", js)
	}
	e.want(t, "POST", "/api/v1/vaults/v/restores", map[string]any{"recoveryPoint": "rp-job-1", "targetCluster": "dr"}, "", 202, "")
}

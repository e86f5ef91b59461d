package clusterdriver_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// TestVaultTierTrustPolicyThroughVault: the cluster owner's ClusterTrustPolicy
// bounds the vault tier on the vault's whole path (real API server, the
// extension in this process). A policy without vaultTier (as one written
// before the field existed) fails a scheduled backup that a vault
// datastore rule sends to the vault tier with PolicyDeniesVaultTier, and a
// restore asking for vault-tier data likewise; the vault's job carries the
// code and the fix. Once the owner allows it, the policy no longer refuses
// (the backup then fails only because file:// storage takes no vault-tier
// data, VaultTierUnavailable).
func TestVaultTierTrustPolicyThroughVault(t *testing.T) {
	ctx := context.Background()
	cp, c := newCluster(t, v1alpha1.ExtensionNamespace, "shop")
	cfg := cp.Config()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "shop"}, Data: map[string]string{"a": "b"}}))
	url, _ := runExtension(t, cfg, c)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	must(err)
	t.Cleanup(func() { st.Close() })
	g, err := trustedaccess.Enable(ctx, cfg, trustedaccess.EnableOptions{Vault: "v", Cluster: "c1", TokenTTL: 15 * time.Minute})
	must(err)
	if !g.Policy.VaultTier {
		t.Fatalf("enable wrote %+v: want vaultTier on in a new policy", g.Policy)
	}
	// The policy as it was before the field existed.
	pol := &v1alpha1.ClusterTrustPolicy{}
	must(c.Get(ctx, client.ObjectKey{Name: "v"}, pol))
	pol.Spec.VaultTier = false
	must(c.Update(ctx, pol))

	must(st.CreateCluster(ctx, &store.Cluster{Name: "c1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
		ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt, State: store.ClusterConnected}))
	bcfg, _ := json.Marshal(v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"shop"}})
	must(st.CreateVault(ctx, &store.Vault{Name: "v"}))
	must(st.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: "R/2026-01-01T02:00:00Z/PT4H",
		Retention: json.RawMessage(`{"default":{"duration":"P7D","datastore":"operational"},"daily":{"duration":"P30D","datastore":"vault"}}`)}))
	must(st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "shop", Cluster: "c1", Policy: "p", Config: bcfg, StorageLocation: url,
		ProtectionState: store.ProtectionConfigured}))
	must(st.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: rbac.VaultIdentity("v"), Role: rbac.Reader, Scope: rbac.ClusterScope("c1")}))
	must(st.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: rbac.ExtensionIdentity("c1"), Role: rbac.StorageContributor, Scope: rbac.StorageScope(url)}))
	srv, _ := vaultServer(t, st)
	run := func(j *store.Job) *store.Job {
		t.Helper()
		must(st.CreateJob(ctx, j))
		deadline := time.Now().Add(2 * time.Minute)
		for {
			must(srv.Runner.Tick(ctx))
			got, err := st.GetJob(ctx, "v", j.ID)
			must(err)
			if store.JobStateTerminal(got.State) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("vault job still %+v", got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	hasCode := func(j *store.Job, code string) bool {
		return len(j.Errors) > 0 && j.Errors[0].Code == code
	}

	// A scheduled backup, the first of the day: the vault rule sends it to
	// the vault tier, and the policy refuses it.
	got := run(&store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "shop", State: store.JobQueued})
	if got.State != store.JobFailed || !hasCode(got, v1alpha1.CodePolicyDeniesVaultTier) ||
		!strings.Contains(got.Errors[0].Message, "--allow-vault-tier") || !strings.Contains(got.Errors[0].Message, "spec.vaultTier") {
		t.Fatalf("scheduled vault-tier backup under a policy without vaultTier: %+v", got)
	}
	var bp jobs.BackupParams
	must(json.Unmarshal(got.Params, &bp))
	if bp.VaultRule != "daily" {
		t.Fatalf("the scheduled backup was not a vault-tier one: params %s", got.Params)
	}
	bjs := &v1alpha1.BackupJobList{}
	must(c.List(ctx, bjs, client.InNamespace(v1alpha1.ExtensionNamespace)))
	if len(bjs.Items) != 1 || !bjs.Items[0].Spec.VaultTier || bjs.Items[0].Status.RecoveryPointID != "" {
		t.Fatalf("BackupJobs %+v: want one vault-tier job, refused without a point", bjs.Items)
	}

	// An operational backup is not the policy's business; a restore of it
	// that asks for vault-tier data is.
	ok := run(&store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "shop", State: store.JobQueued})
	if ok.State != store.JobCompleted {
		t.Fatalf("operational backup: %+v", ok)
	}
	params, _ := json.Marshal(jobs.RestoreParams{RecoveryPoint: jobs.RecoveryPointID(ok.ID), TargetCluster: "c1",
		Criteria: json.RawMessage(`{"includedNamespaces":["shop"],"namespaceMappings":{"shop":"shop2"},"volumeDataSource":"Vault"}`)})
	rj := run(&store.Job{Vault: "v", Type: store.JobRestore, Params: params, State: store.JobQueued})
	if rj.State != store.JobFailed || !hasCode(rj, v1alpha1.CodePolicyDeniesVaultTier) {
		t.Fatalf("restore with volumeDataSource Vault under a policy without vaultTier: %+v", rj)
	}

	// The owner allows the vault tier: the next scheduled backup (still
	// the first of the day to reach the vault tier) passes the policy.
	must(c.Get(ctx, client.ObjectKey{Name: "v"}, pol))
	pol.Spec.VaultTier = true
	must(c.Update(ctx, pol))
	got = run(&store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "shop", State: store.JobQueued})
	if got.State != store.JobFailed || !hasCode(got, v1alpha1.CodeVaultTierUnavailable) {
		t.Fatalf("scheduled vault-tier backup once allowed: %+v (want only file storage's VaultTierUnavailable)", got)
	}
}

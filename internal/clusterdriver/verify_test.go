package clusterdriver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
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

// TestVerificationThroughVault is `arca recovery-point verify` on the
// vault's whole path against a real API server, the extension in this
// process: refused by the cluster owner's policy until it allows
// verification; then Verified, the verdict on the point in `recovery-point
// list` and `show` (and the API); then, with a pack of the repository
// changed, VerificationFailed naming the pack, a verification-failed event
// and the arca_vault_verification_* metrics.
func TestVerificationThroughVault(t *testing.T) {
	ctx := context.Background()
	cp, c := newCluster(t, v1alpha1.ExtensionNamespace, "shop")
	cfg := cp.Config()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		must(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: "shop"}, Data: map[string]string{"i": fmt.Sprint(i)}}))
	}
	url, dir := runExtension(t, cfg, c)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	must(err)
	t.Cleanup(func() { st.Close() })
	g, err := trustedaccess.Enable(ctx, cfg, trustedaccess.EnableOptions{Vault: "v", Cluster: "c1", TokenTTL: 15 * time.Minute})
	must(err)
	must(st.CreateCluster(ctx, &store.Cluster{Name: "c1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
		ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt, State: store.ClusterConnected}))
	bcfg, _ := json.Marshal(v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"shop"}})
	must(st.CreateVault(ctx, &store.Vault{Name: "v"}))
	must(st.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: "R/2026-01-01T02:00:00Z/PT4H", Retention: json.RawMessage(`{"default":{"duration":"P7D"}}`)}))
	must(st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "shop", Cluster: "c1", Policy: "p", Config: bcfg, StorageLocation: url,
		ProtectionState: store.ProtectionConfigured}))
	// The roles a restore from url into c1 needs (what validate
	// --assign-missing-roles would assign).
	must(st.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: rbac.VaultIdentity("v"), Role: rbac.Reader, Scope: rbac.ClusterScope("c1")}))
	must(st.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: rbac.ExtensionIdentity("c1"), Role: rbac.StorageContributor, Scope: rbac.StorageScope(url)}))
	srv, arca := vaultServer(t, st)
	run := func(id string) *store.Job {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			must(srv.Runner.Tick(ctx))
			got, err := st.GetJob(ctx, "v", id)
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
	bj := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "shop", State: store.JobQueued}
	must(st.CreateJob(ctx, bj))
	if got := run(bj.ID); got.State != store.JobCompleted {
		t.Fatalf("backup: %+v", got)
	}
	rpID := jobs.RecoveryPointID(bj.ID)
	verify := func(args ...string) *store.Job {
		t.Helper()
		out, err := arca(append([]string{"recovery-point", "verify", rpID, "--vault", "v", "--cluster", "c1", "--read-data-share", "100%", "-o", "json"}, args...)...)
		if err != nil {
			t.Fatalf("recovery-point verify: %v\n%s", err, out)
		}
		var j store.Job
		must(json.Unmarshal([]byte(out), &j))
		if j.Type != store.JobVerification || j.Instance != "shop" {
			t.Fatalf("queued %+v", j)
		}
		return run(j.ID)
	}

	// trusted-access enable leaves verification off.
	j := verify()
	if j.State != store.JobFailed || len(j.Errors) == 0 || j.Errors[0].Code != v1alpha1.CodePolicyDeniesVerification {
		t.Fatalf("verification the owner did not allow: %+v", j)
	}
	if out, err := arca("recovery-point", "show", rpID, "--vault", "v"); err != nil || !strings.Contains(out, "never verified") {
		t.Fatalf("show after a refused verification: %v\n%s", err, out)
	}
	pol := &v1alpha1.ClusterTrustPolicy{}
	must(c.Get(ctx, client.ObjectKey{Name: "v"}, pol))
	pol.Spec.Verification = true
	must(c.Update(ctx, pol))

	j = verify()
	if j.State != store.JobCompleted {
		t.Fatalf("clean verification: %+v", j)
	}
	out, err := arca("recovery-point", "list", "--vault", "v")
	if err != nil || !strings.Contains(out, "VERIFIED") || !strings.Contains(out, "Verified ") {
		t.Fatalf("list after a clean verification: %v\n%s", err, out)
	}
	out, err = arca("recovery-point", "show", rpID, "--vault", "v", "-o", "json")
	must(err)
	var rp store.RecoveryPoint
	must(json.Unmarshal([]byte(out), &rp))
	if v := rp.Verification; v == nil || v.Verdict != v1alpha1.VerdictVerified || v.JobID != j.ID || v.Cluster != "c1" ||
		v.ObjectsCompared < 6 || v.PacksRead == 0 || !v.CleanedUp || len(v.SandboxNamespaces) != 1 {
		t.Fatalf("verification on the point: %+v", rp.Verification)
	}

	// A changed byte in every pack: the next verification fails.
	var packs []string
	must(filepath.Walk(filepath.Join(dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			packs = append(packs, p)
		}
		return err
	}))
	for _, p := range packs {
		b, err := os.ReadFile(p)
		must(err)
		b[len(b)/2] ^= 1
		must(os.WriteFile(p, b, 0o600))
	}
	j = verify()
	if j.State != store.JobFailed {
		t.Fatalf("verification of a damaged repository: %+v", j)
	}
	out, err = arca("recovery-point", "show", rpID, "--vault", "v")
	if err != nil || !strings.Contains(out, "VerificationFailed") || !strings.Contains(out, v1alpha1.CodeVerificationDataDamaged) ||
		!strings.Contains(out, "data/"+filepath.Base(packs[0])) {
		t.Fatalf("show after a failed verification: %v\n%s", err, out)
	}
	// Metrics and the event, from the vault's /metrics.
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`arca_vault_verification_total{verdict="Verified"} 1`,
		`arca_vault_verification_total{verdict="VerificationFailed"} 1`,
		`arca_vault_events_total{type="verification-failed"} 1`,
		`arca_vault_verification_duration_seconds_count 2`,
		`arca_vault_verification_last_timestamp_seconds{instance="shop",vault="v",verdict="VerificationFailed"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

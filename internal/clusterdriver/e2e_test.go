package clusterdriver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/cli"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/scheduler"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// TestScheduledBackupEndToEnd is the vault's whole path on a real API
// server: the scheduler, on an injected clock, fires a policy trigger; the
// ScheduledBackup job goes through trusted access (the vault's own
// service-account token) to a BackupJob that the extension, run in this
// process, completes; the vault records the recovery point; a Restore job
// of that point runs the same way. The vault's job records are compared
// with the cluster's resources.
func TestScheduledBackupEndToEnd(t *testing.T) {
	ctx := context.Background()
	cp, c := newCluster(t, v1alpha1.ExtensionNamespace, "shop")
	cfg := cp.Config()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const objects = 3
	for i := range objects {
		must(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: "shop"}, Data: map[string]string{"i": fmt.Sprint(i)}}))
	}
	url, _ := runExtension(t, cfg, c)

	// The vault: its store, trusted access to cluster c1, a 4-hourly policy.
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	must(err)
	t.Cleanup(func() { st.Close() })
	g, err := trustedaccess.Enable(ctx, cfg, trustedaccess.EnableOptions{Vault: "v", Cluster: "c1", TokenTTL: 15 * time.Minute})
	must(err)
	must(st.CreateCluster(ctx, &store.Cluster{Name: "c1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
		ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt, State: store.ClusterConnected}))
	const schedule = "R/2026-01-01T02:00:00Z/PT4H"
	bcfg, _ := json.Marshal(v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"shop"}})
	must(st.CreateVault(ctx, &store.Vault{Name: "v"}))
	must(st.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: schedule, Retention: json.RawMessage(`{"default":{"duration":"P7D"}}`)}))
	must(st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "shop", Cluster: "c1", Policy: "p", Config: bcfg, StorageLocation: url,
		ProtectionState: store.ProtectionConfigured}))
	clk := clock.NewFake(time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC))
	_, err = scheduler.Arm(ctx, st, "v", "shop", schedule, clk.Now())
	must(err)
	sch := &scheduler.Scheduler{Store: st, Clock: clk}
	r := &jobs.Runner{Store: st, Clock: clk, Drivers: &clusterdriver.Registered{Store: st}, Retention: &retention.Engine{Store: st, Clock: clk}}

	// Before the slot nothing runs; at the slot exactly one job.
	if js, err := sch.Tick(ctx); err != nil || len(js) != 0 {
		t.Fatalf("before the slot: %d jobs, %v", len(js), err)
	}
	clk.Set(time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC))
	js, err := sch.Tick(ctx)
	must(err)
	if len(js) != 1 || js[0].Type != store.JobScheduledBackup {
		t.Fatalf("at the slot: %+v", js)
	}
	if again, err := sch.Tick(ctx); err != nil || len(again) != 0 {
		t.Fatalf("second tick at the slot: %d jobs, %v", len(again), err)
	}
	run := func(id string) *store.Job {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			must(r.Tick(ctx))
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
	bj := run(js[0].ID)
	if bj.State != store.JobCompleted {
		t.Fatalf("scheduled backup job: %+v", bj)
	}
	rp, err := st.GetRecoveryPoint(ctx, "v", jobs.RecoveryPointID(bj.ID))
	must(err)

	// The vault's records against the BackupJob in the cluster.
	var bjs v1alpha1.BackupJobList
	must(c.List(ctx, &bjs, client.InNamespace(v1alpha1.ExtensionNamespace)))
	if len(bjs.Items) != 1 {
		t.Fatalf("%d BackupJobs in the cluster, want 1", len(bjs.Items))
	}
	cb := bjs.Items[0]
	if bj.ExternalRef != "backupjob/"+cb.Name || cb.Labels["arca.io/vault-job"] != bj.ID || cb.Spec.Tags["arca.io/instance"] != "shop" {
		t.Errorf("vault job %s (ref %s) vs BackupJob %s labels %v tags %v", bj.ID, bj.ExternalRef, cb.Name, cb.Labels, cb.Spec.Tags)
	}
	if rp.RepoID != cb.Status.RecoveryPointID || rp.Instance != "shop" || rp.Tag != "default" || rp.ExpiresAt == nil {
		t.Errorf("recovery point %+v, BackupJob wrote %q", rp, cb.Status.RecoveryPointID)
	}
	if cb.Status.Progress == nil || rp.Items != cb.Status.Progress.ItemsDone || bj.Progress == nil || bj.Progress.ItemsDone != rp.Items {
		t.Errorf("items: recovery point %d, job %+v, BackupJob %+v", rp.Items, bj.Progress, cb.Status.Progress)
	}
	if bj.Progress == nil || !maps.Equal(bj.Progress.Counts, cb.Status.Counts) || cb.Status.Counts["configmaps"] != objects {
		t.Errorf("counts: job %+v, BackupJob %v", bj.Progress, cb.Status.Counts)
	}

	// Restore the point into another namespace.
	params, _ := json.Marshal(jobs.RestoreParams{RecoveryPoint: rp.ID, TargetCluster: "c1",
		Criteria: json.RawMessage(`{"includedNamespaces":["shop"],"namespaceMappings":{"shop":"shop-restored"}}`)})
	rj := &store.Job{Vault: "v", Type: store.JobRestore, Params: params}
	must(st.CreateJob(ctx, rj))
	rgot := run(rj.ID)
	if rgot.State != store.JobCompleted {
		t.Fatalf("restore job: %+v", rgot)
	}
	var crj v1alpha1.RestoreJob
	must(c.Get(ctx, types.NamespacedName{Namespace: v1alpha1.ExtensionNamespace, Name: rgot.ExternalRef[len("restorejob/"):]}, &crj))
	if crj.Spec.RecoveryPoint != rp.RepoID || crj.Status.Phase != v1alpha1.JobCompleted {
		t.Errorf("RestoreJob %s: spec %+v, phase %s", crj.Name, crj.Spec, crj.Status.Phase)
	}
	if rgot.Progress == nil || !maps.Equal(rgot.Progress.Counts, crj.Status.Results) {
		t.Errorf("restore counts: job %+v, RestoreJob results %v", rgot.Progress, crj.Status.Results)
	}
	var restored corev1.ConfigMapList
	must(c.List(ctx, &restored, client.InNamespace("shop-restored")))
	if len(restored.Items) != objects || crj.Status.Results["Created"] < objects || crj.Status.Results["Failed"] != 0 {
		t.Errorf("%d config maps restored, results %v; want %d created", len(restored.Items), crj.Status.Results, objects)
	}

	// Catalog rebuild: the vault loses its recovery-point records; `arca
	// vault sync` reads the repository and re-creates them, same IDs.
	before, err := st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "shop"})
	must(err)
	if len(before) != 1 {
		t.Fatalf("%d recovery points before the sync, want 1", len(before))
	}
	for _, p := range before {
		must(st.DeleteRecoveryPoint(ctx, "v", p.ID, p.Version))
	}
	arca := vaultCLI(t, st)
	pw := filepath.Join(t.TempDir(), "pw")
	must(os.WriteFile(pw, []byte("pw\n"), 0o600))
	out, err := arca("vault", "sync", "--vault", "v", "--instance", "shop", "--repo", url, "--password-file", pw)
	if err != nil || !strings.Contains(out, "1 recovery points re-created, 0 already in the vault") {
		t.Fatalf("vault sync: %v\n%s", err, out)
	}
	after, err := st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "shop"})
	must(err)
	if len(after) != 1 || after[0].ID != before[0].ID || after[0].RepoID != before[0].RepoID || after[0].JobID != bj.ID ||
		after[0].Items != before[0].Items || after[0].Tag != before[0].Tag || after[0].ExpiresAt == nil {
		t.Fatalf("after the sync %+v, before %+v", after, before)
	}
	if out, err := arca("vault", "sync", "--vault", "v", "--instance", "shop", "--repo", url, "--password-file", pw); err != nil ||
		!strings.Contains(out, "0 recovery points re-created, 1 already in the vault") {
		t.Fatalf("second vault sync: %v\n%s", err, out)
	}
}

// vaultCLI serves st's API over HTTPS and returns a runner of the arca
// command against it with an admin token.
func vaultCLI(t *testing.T, st store.Store) func(args ...string) (string, error) {
	t.Helper()
	_, arca := vaultServer(t, st)
	return arca
}

// vaultServer is vaultCLI that also returns the server (its job runner,
// metrics and notifier).
func vaultServer(t *testing.T, st store.Store) (*server.Server, func(args ...string) (string, error)) {
	t.Helper()
	srv, _ := server.New(st, server.Options{Log: slog.New(slog.DiscardHandler), Clusters: clusterdriver.NewTrustedAccess})
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, _, err := server.CreateAdminToken(context.Background(), st, "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	return srv, func(args ...string) (string, error) {
		root := cli.NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--vault-url", ts.URL, "--token", tok, "--ca-cert", ca))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
}

package clusterdriver_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// TestVaultRunnerThroughExtension: the vault's job runner, with this
// driver, runs an on-demand backup and a restore to completion through the
// extension on a real API server, and records the recovery point.
func TestVaultRunnerThroughExtension(t *testing.T) {
	ctx := context.Background()
	cp, c := newCluster(t, "arca-system", "web")
	cfg := cp.Config()
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "web"}}); err != nil {
		t.Fatal(err)
	}
	url, _ := runExtension(t, cfg, c)

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	bcfg, _ := json.Marshal(v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"web"}})
	must(st.CreateVault(ctx, &store.Vault{Name: "v"}))
	must(st.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: "R/2026-01-01T02:00:00Z/PT4H",
		Retention: json.RawMessage(`{"default":{"duration":"P7D"}}`)}))
	must(st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "web", Cluster: "c1", Policy: "p", Config: bcfg, StorageLocation: url}))
	drv, err := clusterdriver.New(cfg, "")
	must(err)
	clk := clock.Real{}
	r := &jobs.Runner{Store: st, Clock: clk, Drivers: jobs.DriverMap{"c1": drv}, Retention: &retention.Engine{Store: st, Clock: clk}}
	run := func(j *store.Job) *store.Job {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			must(r.Tick(ctx))
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

	bj := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "web"}
	must(st.CreateJob(ctx, bj))
	got := run(bj)
	if got.State != store.JobCompleted {
		t.Fatalf("backup job: %+v", got)
	}
	rp, err := st.GetRecoveryPoint(ctx, "v", jobs.RecoveryPointID(bj.ID))
	must(err)
	if rp.RepoID == "" || rp.Items == 0 {
		t.Fatalf("recovery point: %+v", rp)
	}
	if p := got.Progress; p == nil || p.ItemsDone != rp.Items || p.Counts["configmaps"] == 0 {
		t.Fatalf("backup job progress %+v, recovery point items %d", got.Progress, rp.Items)
	}

	params, _ := json.Marshal(jobs.RestoreParams{RecoveryPoint: rp.ID, TargetCluster: "c1",
		Criteria: json.RawMessage(`{"includedNamespaces":["web"],"namespaceMappings":{"web":"web-restored"}}`)})
	rj := &store.Job{Vault: "v", Type: store.JobRestore, Params: params}
	must(st.CreateJob(ctx, rj))
	rgot := run(rj)
	if rgot.State != store.JobCompleted {
		t.Fatalf("restore job: %+v", rgot)
	}
	if p := rgot.Progress; p == nil || p.Counts["Created"] == 0 {
		t.Fatalf("restore job progress %+v", rgot.Progress)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "web-restored", Name: "site"}, &corev1.ConfigMap{}); err != nil {
		t.Fatalf("restored: %v", err)
	}
}

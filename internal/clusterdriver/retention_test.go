package clusterdriver_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
	"github.com/arca-backup/arca/internal/volume"
	"github.com/arca-backup/arca/internal/volumedata"
)

// TestRetentionRemovesData: two backups of a claim through the vault, with
// the CSI stack; once both are past their expiry, vault retention has the
// extension delete the older one's retained VolumeSnapshotContent and
// forget its manifest in the repository, and removes its catalog entry.
// The newest recovery point is kept, data and all.
func TestRetentionRemovesData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and the CSI stack")
	}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	cp, c := newCluster(t, "arca-system", "db")
	csi := testenv.StartCSI(t, cp)
	cfg := cp.Config()
	class := csi.StorageClass
	must(c.Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "db"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}))
	deadline := time.Now().Add(time.Minute)
	for {
		var pvc corev1.PersistentVolumeClaim
		if err := c.Get(ctx, types.NamespacedName{Namespace: "db", Name: "data"}, &pvc); err == nil && pvc.Status.Phase == corev1.ClaimBound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("claim not bound")
		}
		time.Sleep(200 * time.Millisecond)
	}
	url, dir := runExtension(t, cfg, c)

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	must(err)
	t.Cleanup(func() { st.Close() })
	bcfg, _ := json.Marshal(v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"db"}})
	must(st.CreateVault(ctx, &store.Vault{Name: "v"}))
	must(st.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: "R/2026-01-01T02:00:00Z/PT4H",
		Retention: json.RawMessage(`{"default":{"duration":"P1D"}}`)}))
	must(st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "db", Cluster: "c1", Policy: "p", Config: bcfg, StorageLocation: url,
		SnapshotLocation: csi.SnapshotClass, ProtectionState: store.ProtectionConfigured}))
	drv, err := clusterdriver.New(cfg, "")
	must(err)
	drivers := jobs.DriverMap{"c1": drv}
	clk := clock.NewFake(time.Now().UTC())
	eng := &retention.Engine{Store: st, Clock: clk, Remover: &jobs.ClusterRemover{Store: st, Drivers: drivers, Wait: 2 * time.Minute, Poll: 200 * time.Millisecond}}
	r := &jobs.Runner{Store: st, Clock: clk, Drivers: drivers, Retention: eng}

	var points []*store.RecoveryPoint
	for range 2 {
		points = append(points, backupThroughVault(t, st, r, &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "db"}))
		time.Sleep(1100 * time.Millisecond) // distinct backup times
	}
	old, newest := points[0], points[1]

	// What each point holds outside the catalog.
	be, err := local.Open(dir)
	must(err)
	rep, err := repo.Open(ctx, be, "pw")
	must(err)
	contents := map[string]string{}
	for _, p := range points {
		m, err := rep.FindRecoveryPoint(ctx, p.RepoID)
		must(err)
		recs, err := volume.Decode(m.Volumes)
		must(err)
		if len(recs.Snapshots) != 1 || recs.Snapshots[0].Content == "" {
			t.Fatalf("volume records of %s: %+v", p.ID, recs)
		}
		contents[p.ID] = recs.Snapshots[0].Content
	}
	sc, err := snapclient.NewForConfig(cfg)
	must(err)
	contentExists := func(name string) bool {
		_, err := sc.SnapshotV1().VolumeSnapshotContents().Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	for id, name := range contents {
		if !contentExists(name) {
			t.Fatalf("content %s of %s missing before retention", name, id)
		}
	}

	// Both are past their expiry (P1D); only the older may go.
	clk.Advance(3 * 24 * time.Hour)
	js, err := eng.Run(ctx)
	must(err)
	if len(js) != 1 || js[0].State != store.JobCompleted || len(js[0].Warnings) != 0 {
		t.Fatalf("retention jobs %+v", js)
	}
	if _, err := st.GetRecoveryPoint(ctx, "v", old.ID); err == nil {
		t.Error("expired recovery point still in the catalog")
	}
	if _, err := st.GetRecoveryPoint(ctx, "v", newest.ID); err != nil {
		t.Errorf("newest recovery point: %v", err)
	}
	if contentExists(contents[old.ID]) {
		t.Errorf("VolumeSnapshotContent %s of the expired point still exists", contents[old.ID])
	}
	if !contentExists(contents[newest.ID]) {
		t.Errorf("VolumeSnapshotContent %s of the newest point was deleted", contents[newest.ID])
	}
	rep, err = repo.Open(ctx, be, "pw")
	must(err)
	left, err := rep.ListRecoveryPoints(ctx)
	must(err)
	if len(left) != 1 || left[0].ID.String() != newest.RepoID {
		t.Errorf("repository keeps %d recovery points, want only the newest %s", len(left), newest.RepoID)
	}

	// The expiry ran in the cluster as a BackupJob with
	// forgetRecoveryPoints, and pruned the repository (first expiry).
	var bjs v1alpha1.BackupJobList
	must(c.List(ctx, &bjs, client.InNamespace("arca-system"), client.MatchingLabels{"arca.io/vault-forget": "true"}))
	if len(bjs.Items) != 1 || !bjs.Items[0].Spec.Prune || len(bjs.Items[0].Spec.ForgetRecoveryPoints) != 1 ||
		bjs.Items[0].Spec.ForgetRecoveryPoints[0] != old.RepoID {
		t.Fatalf("expiry BackupJobs %+v", bjs.Items)
	}
	if cnt := bjs.Items[0].Status.Counts; cnt["recoveryPoints"] != 1 || cnt["snapshotContents"] != 1 {
		t.Errorf("expiry counts %v", cnt)
	} else if _, ok := cnt["prunedPacks"]; !ok {
		t.Errorf("expiry did not prune: counts %v", cnt)
	}

	// Nothing more expires: the last point is never deleted.
	clk.Advance(30 * 24 * time.Hour)
	if js, err := eng.Run(ctx); err != nil || len(js) != 0 {
		t.Fatalf("second retention run: %d jobs, %v", len(js), err)
	}

	// Retention per datastore: the operational tier alone expires.
	// First, a point without vault-tier data: the extension keeps its
	// snapshot (SnapshotKeptNoVaultData) rather than lose the volume.
	keepC := contents[newest.ID]
	must(c.Create(ctx, &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "expire-no-vault-data", Namespace: "arca-system"},
		Spec: v1alpha1.BackupJobSpec{StorageLocation: "default", ExpireSnapshotsOf: []string{newest.RepoID}}}))
	bj := waitBackupJob(t, c, "expire-no-vault-data")
	if bj.Status.Phase != v1alpha1.JobCompletedWithWarnings || bj.Status.Counts["snapshotContents"] != 0 || len(bj.Status.Warnings) != 1 ||
		bj.Status.Warnings[0].Code != "SnapshotKeptNoVaultData" || bj.Status.Warnings[0].Object != "db/data" {
		t.Fatalf("expiry of a point without vault data: %s %v %+v", bj.Status.Phase, bj.Status.Counts, bj.Status.Warnings)
	}
	if !contentExists(keepC) {
		t.Fatalf("content %s of a point without vault-tier data was deleted", keepC)
	}
	// Then the same point with the claim's data in the vault tier (the
	// mover's record, written here with volumedata.Backup): the catalog
	// entry's operational tier has expired, its vault tier has not.
	rep, err = repo.Open(ctx, be, "pw")
	must(err)
	m, err := rep.FindRecoveryPoint(ctx, newest.RepoID)
	must(err)
	src := t.TempDir()
	must(os.WriteFile(filepath.Join(src, "table.db"), []byte("rows"), 0o644))
	w, err := rep.NewWriter(ctx)
	must(err)
	vd, err := volumedata.Backup(ctx, w, src, volumedata.BackupOptions{Name: "db/data"})
	must(err)
	m.VolumeData = []repo.VolumeData{vd.Volume}
	vaultID, err := w.Commit(ctx, m)
	must(err)
	rp, err := st.GetRecoveryPoint(ctx, "v", newest.ID)
	must(err)
	now := clk.Now()
	opExp, vExp := now.Add(-time.Hour), now.Add(30*24*time.Hour)
	rp.RepoID, rp.ExpiresAt = vaultID.String(), &vExp
	rp.Tiers = store.Tiers{Operational: &store.Tier{Rule: "default", ExpiresAt: &opExp, State: store.TierAvailable},
		Vault: &store.Tier{Rule: "daily", ExpiresAt: &vExp, State: store.TierAvailable}}
	must(st.UpdateRecoveryPoint(ctx, rp))
	js, err = eng.Run(ctx)
	must(err)
	if len(js) != 1 || js[0].State != store.JobCompleted {
		t.Fatalf("operational-tier expiry jobs %+v", js)
	}
	var res retention.Result
	must(json.Unmarshal(js[0].Params, &res))
	if len(res.Deleted) != 0 || len(res.SnapshotsExpired) != 1 || res.SnapshotsExpired[0] != newest.ID {
		t.Fatalf("operational-tier expiry: %+v", res)
	}
	if contentExists(keepC) {
		t.Errorf("VolumeSnapshotContent %s still exists after its operational tier expired", keepC)
	}
	rp, err = st.GetRecoveryPoint(ctx, "v", newest.ID)
	must(err)
	if rp.Tiers.Operational.State != store.TierDeleted || rp.Tiers.Vault.State != store.TierAvailable {
		t.Errorf("catalog tiers after the expiry: %+v %+v", rp.Tiers.Operational, rp.Tiers.Vault)
	}
	rep, err = repo.Open(ctx, be, "pw")
	must(err)
	if kept, err := rep.FindRecoveryPoint(ctx, vaultID.String()); err != nil || len(kept.VolumeData) != 1 {
		t.Errorf("the point with vault-tier data is gone from the repository: %v", err)
	}
	must(c.List(ctx, &bjs, client.InNamespace("arca-system"), client.MatchingLabels{"arca.io/vault-forget": "true"}))
	snapJobs := 0
	for _, j := range bjs.Items {
		if len(j.Spec.ExpireSnapshotsOf) > 0 {
			snapJobs++
			if j.Spec.Prune || len(j.Spec.ForgetRecoveryPoints) != 0 || j.Spec.ExpireSnapshotsOf[0] != vaultID.String() || j.Status.Counts["snapshotContents"] != 1 {
				t.Errorf("snapshot expiry job %s: %+v, counts %v", j.Name, j.Spec, j.Status.Counts)
			}
		}
	}
	if snapJobs != 1 {
		t.Errorf("%d snapshot expiry jobs, want 1", snapJobs)
	}
}

// waitBackupJob waits for a BackupJob in arca-system to end.
func waitBackupJob(t *testing.T, c client.Client, name string) *v1alpha1.BackupJob {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		j := &v1alpha1.BackupJob{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: "arca-system", Name: name}, j); err != nil {
			t.Fatal(err)
		}
		switch j.Status.Phase {
		case v1alpha1.JobCompleted, v1alpha1.JobCompletedWithWarnings, v1alpha1.JobFailed, v1alpha1.JobCancelled:
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("BackupJob %s still %s", name, j.Status.Phase)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// backupThroughVault queues the backup job j, ticks the vault's runner
// until it ends (Completed, within 2 minutes) and returns its recovery
// point from the catalog.
func backupThroughVault(t *testing.T, st store.Store, r *jobs.Runner, j *store.Job) *store.RecoveryPoint {
	t.Helper()
	ctx := context.Background()
	if err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := r.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := st.GetJob(ctx, j.Vault, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if store.JobStateTerminal(got.State) {
			if got.State != store.JobCompleted {
				t.Fatalf("backup job %+v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backup job still %+v", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rp, err := st.GetRecoveryPoint(ctx, j.Vault, jobs.RecoveryPointID(j.ID))
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

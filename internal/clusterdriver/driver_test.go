package clusterdriver_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

// TestDriver drives the extension the way the vault's job runner does:
// start a backup (twice: harmless), follow it to Completed with a recovery
// point, restore it with a namespace mapping, and cancel a job.
func TestDriver(t *testing.T) {
	ctx := context.Background()
	cp, c := newCluster(t, "arca-system", "arca-idle", "app")
	cfg := cp.Config()
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "app"}, Data: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	url, _ := runExtension(t, cfg, c)

	d, err := clusterdriver.New(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	bcfg, _ := json.Marshal(v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"app"}})
	req := jobs.BackupRequest{Vault: "v1", Instance: "inst", JobID: "Job_0001", Cluster: "c1", Config: bcfg, StorageLocation: url}
	ref, err := d.StartBackup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := d.StartBackup(ctx, req); err != nil || again != ref {
		t.Fatalf("second start: %q %v (first %q)", again, err, ref)
	}
	st := wait(t, d, ref)
	if st.State != store.JobCompleted || st.RecoveryPoint == nil || st.RecoveryPoint.RepoID == "" || st.RecoveryPoint.Items == 0 {
		t.Fatalf("backup status %+v", st)
	}

	critJSON, _ := json.Marshal(v1alpha1.RestoreCriteria{IncludedNamespaces: []string{"app"}, NamespaceMappings: map[string]string{"app": "app-restored"}})
	rref, err := d.StartRestore(ctx, jobs.RestoreRequest{Vault: "v1", JobID: "Job_0002", TargetCluster: "c1",
		RecoveryPoint: &store.RecoveryPoint{RepoID: st.RecoveryPoint.RepoID, Instance: "inst"}, StorageLocation: url, Criteria: critJSON})
	if err != nil {
		t.Fatal(err)
	}
	if rst := wait(t, d, rref); rst.State != store.JobCompleted {
		t.Fatalf("restore status %+v", rst)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "app-restored", Name: "settings"}, &corev1.ConfigMap{}); err != nil {
		t.Fatalf("restored object: %v", err)
	}
	// A catalog entry that puts the point in another instance: the
	// RestoreJob says so (spec.vaultPoint), the point's tags say inst, and
	// the extension refuses it before writing anything.
	stolenCrit, _ := json.Marshal(v1alpha1.RestoreCriteria{IncludedNamespaces: []string{"app"}, NamespaceMappings: map[string]string{"app": "app-stolen"}})
	sref, err := d.StartRestore(ctx, jobs.RestoreRequest{Vault: "v1", JobID: "Job_0009", TargetCluster: "c1",
		RecoveryPoint: &store.RecoveryPoint{RepoID: st.RecoveryPoint.RepoID, Instance: "other"}, StorageLocation: url, Criteria: stolenCrit})
	if err != nil {
		t.Fatal(err)
	}
	if sst := wait(t, d, sref); sst.State != store.JobFailed || len(sst.Errors) == 0 || sst.Errors[0].Code != v1alpha1.CodeRecoveryPointOfAnotherInstance ||
		!strings.Contains(sst.Errors[0].Message, `instance "other"`) {
		t.Errorf("restore of instance inst's point as instance other's: %+v", sst)
	}
	if err := c.Get(ctx, types.NamespacedName{Name: "app-stolen"}, &corev1.Namespace{}); err == nil {
		t.Error("the refused restore created namespace app-stolen")
	}

	// No storage location for an unknown repository: a clear error.
	if _, err := d.StartBackup(ctx, jobs.BackupRequest{JobID: "Job_0003", StorageLocation: "s3://elsewhere"}); err == nil {
		t.Fatal("backup into an unknown storage location started")
	} else {
		t.Logf("unknown storage: %v", err)
	}

	// Cancel: a driver for a namespace no extension watches; the job waits
	// (InProgress for the vault, Queued sub-task) and carries the cancel.
	idle, err := clusterdriver.New(cfg, "arca-idle")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "arca-idle"},
		Spec: v1alpha1.StorageLocationSpec{URL: url, CredentialsSecret: "creds"}}); err != nil {
		t.Fatal(err)
	}
	iref, err := idle.StartBackup(ctx, jobs.BackupRequest{JobID: "Job_0004", StorageLocation: "default", VaultTier: true})
	if err != nil {
		t.Fatal(err)
	}
	ist, err := idle.JobStatus(ctx, iref)
	if err != nil || ist.State != store.JobInProgress || ist.SubTasks[0].State != "Queued" {
		t.Fatalf("waiting job: %+v %v", ist, err)
	}
	// Hook results the extension recorded show as sub-tasks: where each
	// command ran and how it ended.
	hooked := &v1alpha1.BackupJob{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "arca-idle", Name: "vault-job-0004"}, hooked); err != nil {
		t.Fatal(err)
	}
	// `arca backup now --to vault` reaches the cluster as spec.vaultTier.
	if !hooked.Spec.VaultTier {
		t.Errorf("BackupJob of a vault-tier request: spec %+v, want vaultTier", hooked.Spec)
	}
	// A policy's copyTo and a restore's fallback name StorageLocations by
	// URL: the cluster's location of that URL; a copyTo the cluster has no
	// location for is an error, a fallback it has none for is left out.
	if _, err := idle.StartBackup(ctx, jobs.BackupRequest{JobID: "Job_0005", StorageLocation: "default", VaultTier: true, CopyTo: url}); err != nil {
		t.Fatal(err)
	}
	copied := &v1alpha1.BackupJob{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "arca-idle", Name: "vault-job-0005"}, copied); err != nil || copied.Spec.CopyTo != "default" {
		t.Errorf("BackupJob of a copied backup: spec %+v (%v), want copyTo default", copied.Spec, err)
	}
	if _, err := idle.StartBackup(ctx, jobs.BackupRequest{JobID: "Job_0006", StorageLocation: "default", VaultTier: true, CopyTo: "s3://nowhere"}); err == nil ||
		!strings.Contains(err.Error(), "copyTo") {
		t.Errorf("copyTo without a storage location in the cluster: %v", err)
	}
	for id, fb := range map[string]string{"Job_0007": url, "Job_0008": "s3://nowhere"} {
		if _, err := idle.StartRestore(ctx, jobs.RestoreRequest{JobID: id, TargetCluster: "c1", RecoveryPoint: &store.RecoveryPoint{RepoID: "abc"},
			StorageLocation: "default", FallbackStorageLocation: fb}); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{"vault-job-0007": "default", "vault-job-0008": ""} {
		rj := &v1alpha1.RestoreJob{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "arca-idle", Name: name}, rj); err != nil || rj.Spec.FallbackStorageLocation != want {
			t.Errorf("RestoreJob %s: fallback %q (%v), want %q", name, rj.Spec.FallbackStorageLocation, err, want)
		}
	}
	zero, seven := int32(0), int32(7)
	hooked.Status.Phase = v1alpha1.JobInProgress
	hooked.Status.Hooks = []v1alpha1.HookResult{
		{Hook: "arca-system/db-freeze", Phase: "pre", Pod: "app/db-0", Command: []string{"fsfreeze"}, ExitCode: &zero, Stdout: "frozen\nmore", StartTime: metav1.Now()},
		{Hook: "arca-system/db-freeze", Phase: "post", Pod: "app/db-0", Command: []string{"thaw"}, ExitCode: &seven, Stderr: "thaw: busy", StartTime: metav1.Now()},
	}
	if err := c.Status().Update(ctx, hooked); err != nil {
		t.Fatal(err)
	}
	hst, err := idle.JobStatus(ctx, iref)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SubTask{
		{Name: "backup", State: "InProgress"},
		{Name: "hook arca-system/db-freeze pre in app/db-0", State: "Completed (exit 0): frozen …"},
		{Name: "hook arca-system/db-freeze post in app/db-0", State: "Failed (exit 7): thaw: busy"},
	}
	if !reflect.DeepEqual(hst.SubTasks, want) {
		t.Fatalf("sub-tasks with hooks:\n got %+v\nwant %+v", hst.SubTasks, want)
	}
	if err := idle.CancelJob(ctx, iref); err != nil {
		t.Fatal(err)
	}
	j := &v1alpha1.BackupJob{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "arca-idle", Name: "vault-job-0004"}, j); err != nil || !j.Spec.Cancel {
		t.Fatalf("cancelled job %v %+v", err, j.Spec)
	}
}

func wait(t *testing.T, d *clusterdriver.Driver, ref string) *jobs.Status {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := d.JobStatus(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != store.JobInProgress {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %+v", ref, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

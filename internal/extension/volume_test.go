package extension_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

// TestVolumeSnapshotsThroughJobs: a BackupJob snapshots a bound claim
// through the CSI stack and records it; a RestoreJob into a mapped
// namespace recreates the claim from the recorded snapshot.
func TestVolumeSnapshotsThroughJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own control plane and the CSI stack")
	}
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	csi := testenv.StartCSI(t, cp)
	if err := extension.InstallCRDs(context.Background(), cp.Config()); err != nil {
		t.Fatal(err)
	}
	a := newCluster(t, cp, "arca-vol")
	dir := filepath.Join(t.TempDir(), "repo")
	a.storageLocation("default", "file://"+dir, false)
	a.namespace("vol-app")
	ctx := context.Background()
	class := csi.StorageClass
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "vol-app"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if _, err := a.cs.CoreV1().PersistentVolumeClaims("vol-app").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "claim bound", time.Minute, func() bool {
		p, err := a.cs.CoreV1().PersistentVolumeClaims("vol-app").Get(ctx, "data", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.ClaimBound
	})
	a.startExtension(extension.Options{})
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: with-volumes, namespace: arca-vol}
spec:
  storageLocation: default
  includedNamespaces: [vol-app]
  snapshotClasses: [` + csi.SnapshotClass + `]
`)
	j := a.waitBackup("with-volumes", 2*time.Minute)
	if j.Status.Phase != v1alpha1.JobCompleted {
		t.Fatalf("backup: %s %s %+v %+v", j.Status.Phase, j.Status.Message, j.Status.Errors, j.Status.Warnings)
	}
	rps := recoveryPoints(t, dir)
	recs, err := volume.Decode(rps[0].Volumes)
	if err != nil || len(recs.Snapshots) != 1 || recs.Snapshots[0].PVC != "data" || recs.Snapshots[0].SnapshotClass != csi.SnapshotClass {
		t.Fatalf("volume records %+v %v", recs, err)
	}
	// The retained content is labelled with its recovery point, as `arca local backup` does (one operations path).
	snaps := snapclient.NewForConfigOrDie(cp.Config())
	content, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, recs.Snapshots[0].Content, metav1.GetOptions{})
	if err != nil || content.Labels[v1alpha1.LabelRecoveryPoint] != j.Status.RecoveryPointID[:32] {
		t.Errorf("content %s not labelled with recovery point %s: %v (%v)", recs.Snapshots[0].Content, j.Status.RecoveryPointID, content.Labels, err)
	}

	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: volumes-copy, namespace: arca-vol}
spec:
  recoveryPoint: latest
  storageLocation: default
  includedNamespaces: [vol-app]
  namespaceMappings: {vol-app: vol-copy}
`)
	r := a.waitRestore("volumes-copy", 2*time.Minute)
	if r.Status.Phase != v1alpha1.JobCompleted && r.Status.Phase != v1alpha1.JobCompletedWithWarnings {
		t.Fatalf("restore: %s %s %+v", r.Status.Phase, r.Status.Message, r.Status.Errors)
	}
	got, err := a.cs.CoreV1().PersistentVolumeClaims("vol-copy").Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ds := got.Spec.DataSource; ds == nil || ds.Kind != "VolumeSnapshot" {
		t.Errorf("restored claim's data source %+v", got.Spec.DataSource)
	}
	waitFor(t, "restored claim bound", time.Minute, func() bool {
		p, err := a.cs.CoreV1().PersistentVolumeClaims("vol-copy").Get(ctx, "data", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.ClaimBound
	})
}

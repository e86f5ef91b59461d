package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// TestCSISmoke proves the CSI stack is real: a PVC is provisioned and
// bound, a VolumeSnapshot of it becomes ready with a snapshot handle from
// the driver, a PVC restored from the snapshot is bound to a new volume,
// and deleting a claim deletes its volume.
func TestCSISmoke(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts ControlPlaneOptions
	}{
		{"with kube-controller-manager", ControlPlaneOptions{}},
		{"provisioner binds", ControlPlaneOptions{WithoutControllerManager: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			cp := StartControlPlane(t, tc.opts)
			t.Logf("control plane: %v", cp.StartupTimes)
			csiStart := time.Now()
			c := StartCSI(t, cp)
			t.Logf("CSI stack ready in %s: %v", time.Since(csiStart).Round(time.Millisecond), c.StartupTimes)
			t.Logf("environment ready in %s", time.Since(start).Round(time.Millisecond))
			csiRoundTrip(t, cp, c, !tc.opts.WithoutControllerManager)
		})
	}
}

func csiRoundTrip(t *testing.T, cp *ControlPlane, c *CSI, withKCM bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := cp.Clientset(t)
	snaps := snapclient.NewForConfigOrDie(cp.Config())
	const ns = "data"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	// No storageClassName: the default class is filled in by admission.
	start := time.Now()
	_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("source", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC: %v", err)
	}
	source := waitBound(t, ctx, cs, ns, "source")
	if got := *source.Spec.StorageClassName; got != c.StorageClass {
		t.Errorf("storage class = %q, want default %q", got, c.StorageClass)
	}
	sourcePV, err := cs.CoreV1().PersistentVolumes().Get(ctx, source.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get PV: %v", err)
	}
	if sourcePV.Spec.CSI == nil || sourcePV.Spec.CSI.Driver != c.DriverName || sourcePV.Spec.CSI.VolumeHandle == "" {
		t.Fatalf("PV %s is not a volume of %s: %+v", sourcePV.Name, c.DriverName, sourcePV.Spec.CSI)
	}
	t.Logf("PVC bound in %s (volume %s)", time.Since(start).Round(time.Millisecond), sourcePV.Spec.CSI.VolumeHandle)

	// No class: the default VolumeSnapshotClass is used.
	start = time.Now()
	vs := snapshotAndWait(t, ctx, snaps, ns, "snap", "source")
	if got := vs.Spec.VolumeSnapshotClassName; got == nil || *got != c.SnapshotClass {
		t.Errorf("snapshot class = %v, want default %q", got, c.SnapshotClass)
	}
	content, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get VolumeSnapshotContent: %v", err)
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil || *content.Status.SnapshotHandle == "" {
		t.Fatalf("VolumeSnapshotContent %s has no snapshot handle: %+v", content.Name, content.Status)
	}
	if content.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain {
		t.Errorf("deletion policy = %s, want Retain", content.Spec.DeletionPolicy)
	}
	t.Logf("VolumeSnapshot ready in %s (content %s, handle %s)", time.Since(start).Round(time.Millisecond), content.Name, *content.Status.SnapshotHandle)

	// Restore: a new claim from the snapshot gets a new volume.
	start = time.Now()
	group := "snapshot.storage.k8s.io"
	_, err = cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("restored", &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "snap"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC from snapshot: %v", err)
	}
	restored := waitBound(t, ctx, cs, ns, "restored")
	restoredPV, err := cs.CoreV1().PersistentVolumes().Get(ctx, restored.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get restored PV: %v", err)
	}
	if h := restoredPV.Spec.CSI.VolumeHandle; h == "" || h == sourcePV.Spec.CSI.VolumeHandle {
		t.Fatalf("restored volume handle %q, want a new one (source %q)", h, sourcePV.Spec.CSI.VolumeHandle)
	}
	t.Logf("PVC from snapshot bound in %s (volume %s)", time.Since(start).Round(time.Millisecond), restoredPV.Spec.CSI.VolumeHandle)

	// Restore into another namespace the way a backup tool does: a
	// pre-provisioned VolumeSnapshotContent holding the recorded handle, a
	// VolumeSnapshot bound to it, and a claim from that snapshot.
	start = time.Now()
	const ns2 = "data-restored"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns2}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	_, err = snaps.SnapshotV1().VolumeSnapshotContents().Create(ctx, &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: "imported"},
		Spec: snapv1.VolumeSnapshotContentSpec{
			Driver:                  c.DriverName,
			DeletionPolicy:          snapv1.VolumeSnapshotContentRetain,
			VolumeSnapshotClassName: &c.SnapshotClass,
			Source:                  snapv1.VolumeSnapshotContentSource{SnapshotHandle: content.Status.SnapshotHandle},
			VolumeSnapshotRef:       corev1.ObjectReference{Namespace: ns2, Name: "imported"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pre-provisioned VolumeSnapshotContent: %v", err)
	}
	contentName := "imported"
	_, err = snaps.SnapshotV1().VolumeSnapshots(ns2).Create(ctx, &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "imported"},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: &contentName}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create VolumeSnapshot for pre-provisioned content: %v", err)
	}
	_, err = cs.CoreV1().PersistentVolumeClaims(ns2).Create(ctx, claim("imported", &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "imported"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC from imported snapshot: %v", err)
	}
	imported := waitBound(t, ctx, cs, ns2, "imported")
	t.Logf("PVC from a pre-provisioned snapshot in another namespace bound in %s (PV %s)", time.Since(start).Round(time.Millisecond), imported.Spec.VolumeName)

	// deletionPolicy Delete: deleting the VolumeSnapshot deletes the
	// driver's snapshot.
	start = time.Now()
	className := c.SnapshotClassDelete
	pvcName := "source"
	_, err = snaps.SnapshotV1().VolumeSnapshots(ns).Create(ctx, &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "short-lived"},
		Spec:       snapv1.VolumeSnapshotSpec{VolumeSnapshotClassName: &className, Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvcName}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create VolumeSnapshot: %v", err)
	}
	var handle string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		vs, err := snaps.SnapshotV1().VolumeSnapshots(ns).Get(ctx, "short-lived", metav1.GetOptions{})
		if err != nil || vs.Status == nil || vs.Status.ReadyToUse == nil || !*vs.Status.ReadyToUse {
			return false, err
		}
		vsc, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		handle = *vsc.Status.SnapshotHandle
		return true, nil
	}); err != nil {
		t.Fatalf("snapshot of class %s not ready: %v", className, err)
	}
	if err := snaps.SnapshotV1().VolumeSnapshots(ns).Delete(ctx, "short-lived", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete VolumeSnapshot: %v", err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := c.Controller.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: handle})
		if err != nil {
			return false, err
		}
		return len(resp.GetEntries()) == 0, nil
	}); err != nil {
		t.Fatalf("driver snapshot %s not deleted with its VolumeSnapshot: %v", handle, err)
	}
	t.Logf("snapshot with deletionPolicy Delete created and deleted from the driver in %s", time.Since(start).Round(time.Millisecond))

	if !withKCM {
		return // claims keep their protection finalizer without kube-controller-manager
	}
	// Deleting the claim releases the volume; reclaim policy Delete removes it.
	start = time.Now()
	if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "restored", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete PVC: %v", err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().PersistentVolumes().Get(ctx, restoredPV.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("PV %s of deleted claim not deleted: %v", restoredPV.Name, err)
	}
	t.Logf("PV of deleted claim gone in %s", time.Since(start).Round(time.Millisecond))
}

func claim(name string, source *corev1.TypedLocalObjectReference) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			},
			DataSource: source,
		},
	}
}

func waitBound(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		pvc, err = cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return pvc.Status.Phase == corev1.ClaimBound, nil
	})
	if err != nil {
		t.Fatalf("PVC %s/%s not bound: %v (last seen %+v)", ns, name, err, pvc)
	}
	return pvc
}

// snapshotAndWait takes a VolumeSnapshot of claim pvc (with the default
// class) and waits until it is ready to use.
func snapshotAndWait(t *testing.T, ctx context.Context, snaps snapclient.Interface, ns, name, pvc string) *snapv1.VolumeSnapshot {
	t.Helper()
	_, err := snaps.SnapshotV1().VolumeSnapshots(ns).Create(ctx, &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create VolumeSnapshot %s/%s: %v", ns, name, err)
	}
	var vs *snapv1.VolumeSnapshot
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		vs, err = snaps.SnapshotV1().VolumeSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse, err
	}); err != nil {
		t.Fatalf("VolumeSnapshot %s/%s not ready: %v (last seen %+v)", ns, name, err, vs)
	}
	return vs
}

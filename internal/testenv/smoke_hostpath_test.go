package testenv

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/arca-backup/arca/internal/testenv/hostpath"
)

// TestHostPathCSI runs the CSI round trip of TestCSISmoke against the
// hostpath driver, then follows real bytes through the snapshot stack:
// files of every kind written into a PVC's volume, a VolumeSnapshot of it
// through snapshot-controller and csi-snapshotter, and a PVC from that
// snapshot whose volume holds the same bytes and metadata.
func TestHostPathCSI(t *testing.T) {
	start := time.Now()
	cp := StartControlPlane(t, ControlPlaneOptions{})
	c := StartHostPathCSI(t, cp)
	t.Logf("control plane + hostpath CSI stack ready in %s: %v", time.Since(start).Round(time.Millisecond), c.StartupTimes)
	if c.DriverName != HostPathDriverName || c.DataDir == "" {
		t.Fatalf("CSI = %+v, want driver %s with a data directory", c, HostPathDriverName)
	}
	csiRoundTrip(t, cp, c, true)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := cp.Clientset(t)
	snaps := snapclient.NewForConfigOrDie(cp.Config())
	const ns = "bytes"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("app-data", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC: %v", err)
	}
	source := volumeOf(t, ctx, cp, ns, "app-data")
	sourceDir := c.VolumeDir(source)
	if err := hostpath.WriteSampleTree(sourceDir); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	vs := snapshotAndWait(t, ctx, snaps, ns, "app-data-snap", "app-data")
	if got := vs.Status.RestoreSize; got == nil || got.Value() != 1<<30 {
		t.Errorf("restoreSize = %v, want the source claim's 1Gi", got)
	}
	content, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get VolumeSnapshotContent: %v", err)
	}
	snapDir := hostpath.SnapshotPath(c.DataDir, *content.Status.SnapshotHandle)
	noTreeDiffs(t, sourceDir, snapDir)
	t.Logf("VolumeSnapshot of a volume with files of every kind ready in %s", time.Since(start).Round(time.Millisecond))

	// Later writes to the claim do not reach the snapshot or its restore.
	if err := os.WriteFile(sourceDir+"/after-snapshot", []byte("not in the snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	group := snapshotGroup
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("app-data-restored",
		&corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "app-data-snap"}), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC from snapshot: %v", err)
	}
	restored := volumeOf(t, ctx, cp, ns, "app-data-restored")
	noTreeDiffs(t, snapDir, c.VolumeDir(restored))
	if _, err := os.Lstat(c.VolumeDir(restored) + "/after-snapshot"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restored volume holds a file written after the snapshot: %v", err)
	}
	t.Logf("PVC from the snapshot bound with the same bytes in %s", time.Since(start).Round(time.Millisecond))

	// Reclaim policy Delete removes the bytes; a Retain snapshot keeps them.
	if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "app-data-restored", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := snaps.SnapshotV1().VolumeSnapshots(ns).Delete(ctx, "app-data-snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := os.Lstat(c.VolumeDir(restored))
		return errors.Is(err, os.ErrNotExist), nil
	}); err != nil {
		t.Fatalf("volume %s of the deleted claim still on disk: %v", restored, err)
	}
	if _, err := os.Stat(snapDir); err != nil {
		t.Errorf("snapshot of the Retain class gone from disk with its VolumeSnapshot: %v", err)
	}
}

// volumeOf waits for the claim to be bound and returns its volume handle.
func volumeOf(t *testing.T, ctx context.Context, cp *ControlPlane, ns, name string) string {
	t.Helper()
	cs := cp.Clientset(t)
	pvc := waitBound(t, ctx, cs, ns, name)
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PV of %s/%s: %v", ns, name, err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != HostPathDriverName {
		t.Fatalf("PV %s is not a %s volume: %+v", pv.Name, HostPathDriverName, pv.Spec.CSI)
	}
	return pv.Spec.CSI.VolumeHandle
}

func noTreeDiffs(t *testing.T, a, b string) {
	t.Helper()
	diffs, err := hostpath.DiffTrees(a, b)
	if err != nil {
		t.Fatalf("compare %s and %s: %v", a, b, err)
	}
	for _, d := range diffs {
		t.Errorf("%s vs %s: %s", a, b, d)
	}
}

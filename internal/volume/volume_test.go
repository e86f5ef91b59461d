package volume_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/mem"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

var (
	cp    *testenv.ControlPlane
	csi   *testenv.CSI
	kc    kubernetes.Interface
	snaps snapclient.Interface
)

func TestMain(m *testing.M) {
	if !mayRunTests() {
		os.Exit(m.Run())
	}
	t, cleanup := testenv.NewMainT("volume")
	cp = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{})
	csi = testenv.StartCSI(t, cp)
	kc = cp.Clientset(t)
	snaps = snapclient.NewForConfigOrDie(cp.Config())
	code := m.Run()
	if code != 0 {
		testenv.MarkFailed(t)
	}
	cleanup()
	os.Exit(code)
}

// mayRunTests reports whether this run of the test binary may run a test
// that uses the cluster. hack/fuzz.sh runs it with -test.run '^$' to fuzz
// FuzzDecodeRecords, and the fuzzer re-executes it for each worker with
// -test.fuzzworker: without this, each of those processes started its own
// control plane and CSI stack for a decoder that needs neither.
func mayRunTests() bool {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return false
	}
	f := flag.Lookup("test.run")
	return f == nil || f.Value.String() != "^$"
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func createNS(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func claim(name, class string, size string, ann map[string]string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

func createPVC(t *testing.T, ctx context.Context, ns string, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	if _, err := kc.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC %s/%s: %v", ns, pvc.Name, err)
	}
}

func waitBound(t *testing.T, ctx context.Context, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		pvc, err = kc.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, nil
	})
	if err != nil {
		t.Fatalf("PVC %s/%s not Bound: %v (last: %+v)", ns, name, err, pvc)
	}
	return pvc
}

func deleteNSAndWait(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	if err := kc.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete namespace: %v", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("namespace %s not gone: %v", ns, err)
	}
}

func newRepo(t *testing.T, ctx context.Context) *repo.Repository {
	t.Helper()
	r, err := repo.Init(ctx, mem.New(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func runBackup(t *testing.T, ctx context.Context, r *repo.Repository, opts volume.SnapshotOptions, namespaces ...string) (*repo.RecoveryPoint, *volume.Records) {
	t.Helper()
	opts.Logf = t.Logf
	s, err := volume.NewSnapshotter(cp.Config(), opts)
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(ctx, cp.Config(), r, backup.Options{Config: v1alpha1.BackupConfiguration{IncludedNamespaces: namespaces}, Volumes: s})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	recs, err := volume.Decode(res.RecoveryPoint.Volumes)
	if err != nil {
		t.Fatal(err)
	}
	return res.RecoveryPoint, recs
}

func runRestore(t *testing.T, ctx context.Context, r *repo.Repository, rp *repo.RecoveryPoint, crit v1alpha1.RestoreCriteria) *restore.Result {
	t.Helper()
	recs, err := volume.Decode(rp.Volumes)
	if err != nil {
		t.Fatal(err)
	}
	return runRestoreRecords(t, ctx, r, rp, recs, crit)
}

// runRestoreRecords restores rp with the given volume records (the test may
// have changed them).
func runRestoreRecords(t *testing.T, ctx context.Context, r *repo.Repository, rp *repo.RecoveryPoint, recs *volume.Records, crit v1alpha1.RestoreCriteria) *restore.Result {
	t.Helper()
	if err := crit.Validate(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("restore-%d", time.Now().UnixNano())
	vr, err := volume.NewRestorer(cp.Config(), recs, volume.RestoreOptions{Mode: crit.PersistentVolumeRestoreMode, NamespaceMappings: crit.NamespaceMappings,
		StorageClassMappings: crit.StorageClassMappings, RecoveryPoint: restore.RecoveryPointLabel(rp.ID.String()), RestoreName: name, DryRun: crit.DryRun})
	if err != nil {
		t.Fatal(err)
	}
	res, err := restore.Run(ctx, cp.Config(), rp, r, restore.Options{Criteria: crit, Name: name, Volumes: vr})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return res
}

// driverVolume returns the mock driver's volume of a PV.
func driverVolume(t *testing.T, ctx context.Context, pvName string) *csipb.Volume {
	t.Helper()
	pv, err := kc.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PV %s: %v", pvName, err)
	}
	vols, err := csi.Controller.ListVolumes(ctx, &csipb.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range vols.GetEntries() {
		if e.GetVolume().GetVolumeId() == pv.Spec.CSI.VolumeHandle {
			return e.GetVolume()
		}
	}
	t.Fatalf("driver has no volume %s (PV %s)", pv.Spec.CSI.VolumeHandle, pvName)
	return nil
}

// snapshotSource returns the snapshot handle a driver volume was created
// from. The mock driver records as content source the index of the
// snapshot in its snapshot list, not its ID: translate it (valid while no
// snapshot is deleted between the volume's creation and this call).
func snapshotSource(t *testing.T, ctx context.Context, v *csipb.Volume) string {
	t.Helper()
	idx := v.GetContentSource().GetSnapshot().GetSnapshotId()
	if idx == "" {
		return ""
	}
	l, err := csi.Controller.ListSnapshots(ctx, &csipb.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var i int
	if _, err := fmt.Sscanf(idx, "%d", &i); err != nil || i < 0 || i >= len(l.GetEntries()) {
		t.Fatalf("volume %s: content source %q is not a snapshot index (%d snapshots)", v.GetVolumeId(), idx, len(l.GetEntries()))
	}
	return l.GetEntries()[i].GetSnapshot().GetSnapshotId()
}

func driverSnapshots(t *testing.T, ctx context.Context) map[string]bool {
	t.Helper()
	l, err := csi.Controller.ListSnapshots(ctx, &csipb.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range l.GetEntries() {
		out[e.GetSnapshot().GetSnapshotId()] = true
	}
	return out
}

func itemsOf(res *restore.Result, resource string) map[string]restore.Item {
	out := map[string]restore.Item{}
	for it := range res.Items.All() {
		if it.Group == "" && it.Resource == resource {
			out[it.Namespace+"/"+it.Name] = it
		}
	}
	return out
}

func codes(ws []repo.Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Code)
	}
	sort.Strings(out)
	return out
}

// The main scenario: a namespace with two claims is backed up,
// deleted and restored; both claims come back bound to new volumes that
// the driver created from the recorded snapshots. Then the same recovery
// point is restored into a mapped namespace with a storage class mapping,
// and forgetting deletes the retained contents and the driver snapshots.
func TestBackupDeleteRestoreTwoClaims(t *testing.T) {
	ctx := ctxT(t)
	const ns = "shop"
	createNS(t, ctx, ns)
	createPVC(t, ctx, ns, claim("data", csi.StorageClass, "1Gi", nil))
	createPVC(t, ctx, ns, claim("logs", csi.StorageClass, "2Gi", nil))
	oldPV := map[string]string{}
	for _, n := range []string{"data", "logs"} {
		oldPV[n] = waitBound(t, ctx, ns, n).Spec.VolumeName
	}

	r := newRepo(t, ctx)
	rp, recs := runBackup(t, ctx, r, volume.SnapshotOptions{Timeout: time.Minute}, ns)
	if len(rp.Summary.Warnings) != 0 {
		t.Fatalf("warnings: %+v", rp.Summary.Warnings)
	}
	if len(recs.Snapshots) != 2 {
		t.Fatalf("records: %+v", recs)
	}
	if recs.FirstSnapshot == nil || recs.LastSnapshot == nil || recs.SpreadMillis != recs.LastSnapshot.Sub(*recs.FirstSnapshot).Milliseconds() {
		t.Errorf("spread not recorded: %+v", recs)
	}
	t.Logf("snapshots of 2 volumes taken within %d ms", recs.SpreadMillis)
	for _, rec := range recs.Snapshots {
		if rec.Namespace != ns || rec.PV != oldPV[rec.PVC] || rec.Driver != csi.DriverName || rec.SnapshotHandle == "" || rec.SnapshotClass != csi.SnapshotClass ||
			rec.VolumeHandle == "" || rec.StorageClass != csi.StorageClass || rec.Content == "" || rec.Time.IsZero() || rec.VolumeMode != "Filesystem" {
			t.Errorf("incomplete record: %+v", rec)
		}
		c, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, rec.Content, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("content %s: %v", rec.Content, err)
		}
		if c.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain || c.Labels[volume.LabelBackupID] != recs.BackupID || c.Labels[v1alpha1.LabelManagedBy] != "arca" {
			t.Errorf("content %s: policy %s labels %v", c.Name, c.Spec.DeletionPolicy, c.Labels)
		}
	}
	// The VolumeSnapshots are gone from the application namespace.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := snaps.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("VolumeSnapshots left in %s: %v", ns, err)
	}

	deleteNSAndWait(t, ctx, ns)
	// The provisioner deletes the old volumes (reclaim policy Delete); the
	// retained contents and driver snapshots stay.
	for _, rec := range recs.Snapshots {
		if _, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, rec.Content, metav1.GetOptions{}); err != nil {
			t.Fatalf("content %s gone with the namespace: %v", rec.Content, err)
		}
		if !driverSnapshots(t, ctx)[rec.SnapshotHandle] {
			t.Fatalf("driver snapshot %s gone with the namespace", rec.SnapshotHandle)
		}
	}

	// A dry run plans the claims from snapshots and creates nothing.
	dry := runRestore(t, ctx, r, rp, v1alpha1.RestoreCriteria{DryRun: true})
	for key, it := range itemsOf(dry, "persistentvolumeclaims") {
		if it.Action != restore.Created {
			t.Errorf("dry run %s: %s %s", key, it.Action, it.Reason)
		}
	}
	if l, err := snaps.SnapshotV1().VolumeSnapshotContents().List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelManagedBy + "=arca"}); err != nil || len(l.Items) != 2 {
		t.Errorf("dry run created contents: %v %d", err, len(l.Items))
	}

	res := runRestore(t, ctx, r, rp, v1alpha1.RestoreCriteria{})
	for _, pvName := range oldPV {
		if it := itemsOf(res, "persistentvolumes")["/"+pvName]; it.Action != restore.SkippedVolume {
			t.Errorf("old PV %s: %s %s, want SkippedVolume", pvName, it.Action, it.Reason)
		}
	}
	byPVC := map[string]volume.Record{}
	for _, rec := range recs.Snapshots {
		byPVC[rec.PVC] = rec
	}
	for _, n := range []string{"data", "logs"} {
		pvc := waitBound(t, ctx, ns, n)
		if pvc.Spec.VolumeName == oldPV[n] {
			t.Errorf("%s bound to its old volume %s", n, oldPV[n])
		}
		if ds := pvc.Spec.DataSource; ds == nil || ds.Kind != "VolumeSnapshot" {
			t.Errorf("%s dataSource %+v", n, ds)
		}
		v := driverVolume(t, ctx, pvc.Spec.VolumeName)
		if got := snapshotSource(t, ctx, v); got != byPVC[n].SnapshotHandle {
			t.Errorf("%s: new volume %s from snapshot %q, want %q", n, v.GetVolumeId(), got, byPVC[n].SnapshotHandle)
		}
	}

	// Into another namespace, with a storage class mapping.
	if _, err := kc.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "arca-csi-fast"},
		Provisioner: csi.DriverName}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if res := runRestore(t, ctx, r, rp, v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{ns: "shop-copy"},
		StorageClassMappings: map[string]string{csi.StorageClass: "arca-csi-fast"}}); len(res.Warnings) != 0 {
		t.Errorf("restore with an existing driver and mapped class: warnings %+v", res.Warnings)
	}
	for _, n := range []string{"data", "logs"} {
		pvc := waitBound(t, ctx, "shop-copy", n)
		if sc := pvc.Spec.StorageClassName; sc == nil || *sc != "arca-csi-fast" {
			t.Errorf("shop-copy/%s storage class %v", n, sc)
		}
		ds := pvc.Spec.DataSource
		if ds == nil {
			t.Fatalf("shop-copy/%s has no dataSource", n)
		}
		vs, err := snaps.SnapshotV1().VolumeSnapshots("shop-copy").Get(ctx, ds.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("snapshot of shop-copy/%s: %v", n, err)
		}
		if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
			t.Fatalf("snapshot %s not bound", vs.Name)
		}
		c, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Spec.Source.SnapshotHandle == nil || *c.Spec.Source.SnapshotHandle != byPVC[n].SnapshotHandle || c.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain {
			t.Errorf("restored content %s: %+v", c.Name, c.Spec)
		}
		if got := snapshotSource(t, ctx, driverVolume(t, ctx, pvc.Spec.VolumeName)); got != byPVC[n].SnapshotHandle {
			t.Errorf("shop-copy/%s from snapshot %q, want %q", n, got, byPVC[n].SnapshotHandle)
		}
	}

	// Forget: contents and driver snapshots go.
	deleted, warnings, err := volume.DeleteSnapshots(ctx, snaps, recs, volume.DeleteOptions{Wait: time.Minute})
	if err != nil || len(warnings) != 0 || len(deleted) != 2 {
		t.Fatalf("DeleteSnapshots: %v %v %v", deleted, warnings, err)
	}
	have := driverSnapshots(t, ctx)
	for _, rec := range recs.Snapshots {
		if _, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, rec.Content, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("content %s still there: %v", rec.Content, err)
		}
		if have[rec.SnapshotHandle] {
			t.Errorf("driver snapshot %s still there", rec.SnapshotHandle)
		}
	}
	// Twice: nothing left, a warning per record, no error.
	_, warnings, err = volume.DeleteSnapshots(ctx, snaps, recs, volume.DeleteOptions{})
	if err != nil || len(warnings) != 2 || warnings[0].Code != volume.WarnContentNotFound {
		t.Errorf("second DeleteSnapshots: %v %v", warnings, err)
	}
}

// Without volume data: the claim is created empty with the same spec, the
// old volume is skipped with a reason.
func TestRestoreWithoutVolumeData(t *testing.T) {
	ctx := ctxT(t)
	const ns = "empty"
	createNS(t, ctx, ns)
	createPVC(t, ctx, ns, claim("data", csi.StorageClass, "1Gi", nil))
	old := waitBound(t, ctx, ns, "data").Spec.VolumeName
	r := newRepo(t, ctx)
	rp, recs := runBackup(t, ctx, r, volume.SnapshotOptions{Timeout: time.Minute}, ns)
	if len(recs.Snapshots) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	deleteNSAndWait(t, ctx, ns)
	res := runRestore(t, ctx, r, rp, v1alpha1.RestoreCriteria{PersistentVolumeRestoreMode: v1alpha1.RestoreWithoutVolumeData})
	it := itemsOf(res, "persistentvolumes")["/"+old]
	if it.Action != restore.SkippedVolume || !strings.Contains(it.Reason, "reclaim policy Delete") {
		t.Errorf("old PV: %s %q", it.Action, it.Reason)
	}
	pvc := waitBound(t, ctx, ns, "data")
	if pvc.Spec.DataSource != nil || pvc.Spec.VolumeName == old {
		t.Errorf("claim: dataSource %+v volume %s", pvc.Spec.DataSource, pvc.Spec.VolumeName)
	}
	if src := driverVolume(t, ctx, pvc.Spec.VolumeName).GetContentSource(); src != nil {
		t.Errorf("new volume has content source %v", src)
	}
	cleanupContents(t, recs)
}

// A statically provisioned volume with reclaim policy Retain is restored as
// it is and its claim binds to it again.
func TestRestoreRetainedStaticVolume(t *testing.T) {
	ctx := ctxT(t)
	const ns = "static"
	createNS(t, ctx, ns)
	pv := staticPV("static-pv-1", ns, "data", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/static-1"}})
	if _, err := kc.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := claim("data", "", "1Gi", nil)
	c.Spec.VolumeName = pv.Name
	createPVC(t, ctx, ns, c)
	waitBound(t, ctx, ns, "data")
	r := newRepo(t, ctx)
	rp, _ := runBackup(t, ctx, r, volume.SnapshotOptions{Timeout: time.Minute}, ns)
	if got := codes(rp.Summary.Warnings); len(got) != 1 || got[0] != volume.WarnInTreeVolume {
		t.Fatalf("warnings %v", got)
	}
	deleteNSAndWait(t, ctx, ns)
	if err := kc.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := kc.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatal(err)
	}
	res := runRestore(t, ctx, r, rp, v1alpha1.RestoreCriteria{})
	if it := itemsOf(res, "persistentvolumes")["/"+pv.Name]; it.Action != restore.Created {
		t.Errorf("static PV: %s %s", it.Action, it.Reason)
	}
	if got := waitBound(t, ctx, ns, "data"); got.Spec.VolumeName != pv.Name {
		t.Errorf("claim bound to %s, want %s", got.Spec.VolumeName, pv.Name)
	}
}

func staticPV(name, ns, claimName string, src corev1.PersistentVolumeSource) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        src,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: claimName},
		},
	}
}

func cleanupContents(t *testing.T, recs *volume.Records) {
	if _, _, err := volume.DeleteSnapshots(context.Background(), snaps, recs, volume.DeleteOptions{Wait: time.Minute}); err != nil {
		t.Errorf("DeleteSnapshots: %v", err)
	}
}

// Every claim that cannot be snapshotted gives its code; the backup still
// completes (with warnings) and snapshots the claims that can be.
func TestWarnings(t *testing.T) {
	ctx := ctxT(t)
	const ns = "warn"
	createNS(t, ctx, ns)
	// A driver that nobody serves, with a class: its snapshots never become ready.
	ghost := "ghost.csi.example"
	if _, err := snaps.SnapshotV1().VolumeSnapshotClasses().Create(ctx, &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "ghost-class", Annotations: map[string]string{volume.AnnDefaultSnapshotClass: "true"}},
		Driver:     ghost, DeletionPolicy: snapv1.VolumeSnapshotContentDelete}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, pv := range []*corev1.PersistentVolume{
		staticPV("warn-hostpath", ns, "intree", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/w"}}),
		staticPV("warn-nosnap", ns, "noclass", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "nosnap.csi.example", VolumeHandle: "n1"}}),
		staticPV("warn-ghost", ns, "ghost", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: ghost, VolumeHandle: "g1"}}),
	} {
		if _, err := kc.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c := claim(pv.Spec.ClaimRef.Name, "", "1Gi", nil)
		c.Spec.VolumeName = pv.Name
		createPVC(t, ctx, ns, c)
	}
	createPVC(t, ctx, ns, claim("pending", "no-such-class", "1Gi", nil))
	missing := claim("missing", "", "1Gi", nil)
	missing.Spec.VolumeName = "no-such-pv"
	createPVC(t, ctx, ns, missing)
	createPVC(t, ctx, ns, claim("excluded", csi.StorageClass, "1Gi", map[string]string{volume.AnnExcludeFromBackup: "true"}))
	createPVC(t, ctx, ns, claim("good", csi.StorageClass, "1Gi", nil))
	for _, n := range []string{"intree", "noclass", "ghost", "excluded", "good"} {
		waitBound(t, ctx, ns, n)
	}

	r := newRepo(t, ctx)
	const timeout = 3 * time.Second
	start := time.Now()
	// The snapshot location names the Delete class: the content must be
	// switched to Retain all the same.
	rp, recs := runBackup(t, ctx, r, volume.SnapshotOptions{Timeout: timeout, Classes: []string{csi.SnapshotClassDelete}}, ns)
	took := time.Since(start)
	if took > timeout+20*time.Second {
		t.Errorf("backup took %s with a snapshot timeout of %s", took, timeout)
	}
	want := map[string]string{
		"intree": volume.WarnInTreeVolume, "noclass": volume.WarnNoSnapshotClass, "ghost": volume.WarnTimedOut,
		"pending": volume.WarnNotBound, "missing": volume.WarnPVNotFound, "excluded": volume.WarnExcluded,
	}
	got := map[string]string{}
	for _, w := range rp.Summary.Warnings {
		t.Logf("warning %s %s: %s", w.Code, w.Object, w.Message)
		if pvc, ok := strings.CutPrefix(w.Object, "persistentvolumeclaims "+ns+"/"); ok {
			got[pvc] = w.Code
		}
	}
	for pvc, code := range want {
		if got[pvc] != code {
			t.Errorf("%s: code %q, want %q", pvc, got[pvc], code)
		}
	}
	if len(got) != len(want) {
		t.Errorf("codes %v, want %v", got, want)
	}
	if len(recs.Skipped) != len(want) {
		t.Errorf("skipped records %+v", recs.Skipped)
	}
	if len(recs.Snapshots) != 1 || recs.Snapshots[0].PVC != "good" || recs.Snapshots[0].SnapshotClass != csi.SnapshotClassDelete {
		t.Fatalf("snapshots %+v", recs.Snapshots)
	}
	c, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, recs.Snapshots[0].Content, metav1.GetOptions{})
	if err != nil || c.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain {
		t.Fatalf("content of the Delete class not retained: %v %+v", err, c)
	}
	// The snapshots were deleted: the good one is gone, the timed-out one
	// is being deleted (its content waits for a driver that never answers).
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := snaps.SnapshotV1().VolumeSnapshots(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, vs := range l.Items {
			if vs.DeletionTimestamp == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("VolumeSnapshots left in %s", ns)
	}
	// With snapshotVolumes off, no snapshot and no warning of the volume layer.
	s, _ := volume.NewSnapshotter(cp.Config(), volume.SnapshotOptions{})
	res, err := backup.Run(ctx, cp.Config(), r, backup.Options{Config: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{ns}, SnapshotVolumes: v1alpha1.Bool(false)}, Volumes: s})
	if err != nil || len(res.RecoveryPoint.Volumes) != 0 || strings.Contains(fmt.Sprint(res.RecoveryPoint.Summary.Warnings), "persistentvolumeclaims") {
		t.Errorf("snapshotVolumes false: %v %s %v", err, res.RecoveryPoint.Volumes, res.RecoveryPoint.Summary.Warnings)
	}
	cleanupContents(t, recs)
}

func TestSelectClass(t *testing.T) {
	cls := func(name, driver string, def bool) snapv1.VolumeSnapshotClass {
		c := snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: driver}
		if def {
			c.Annotations = map[string]string{volume.AnnDefaultSnapshotClass: "true"}
		}
		return c
	}
	classes := []snapv1.VolumeSnapshotClass{cls("a-default", "a", true), cls("a-other", "a", false), cls("b-plain", "b", false), cls("c-z", "c", true), cls("c-y", "c", true)}
	for _, tc := range []struct {
		driver     string
		configured []string
		want       string
	}{
		{"a", nil, "a-default"},
		{"a", []string{"b-plain", "a-other"}, "a-other"},
		{"a", []string{"missing"}, "a-default"},
		{"b", nil, ""},
		{"b", []string{"b-plain"}, "b-plain"},
		{"c", nil, "c-y"},
		{"d", []string{"a-default"}, ""},
	} {
		if got := volume.SelectClass(classes, tc.driver, tc.configured); got != tc.want {
			t.Errorf("SelectClass(%s, %v) = %q, want %q", tc.driver, tc.configured, got, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	if r, err := volume.Decode(nil); err != nil || len(r.Snapshots) != 0 {
		t.Errorf("empty: %v %v", r, err)
	}
	data, _ := json.Marshal(volume.Records{Version: 99})
	if _, err := volume.Decode(data); err == nil {
		t.Error("newer version accepted")
	}
}

// A backup whose recovery point cannot be written deletes the snapshots it
// took: no retained content or driver snapshot is left that nothing names.
func TestFailedBackupDiscardsSnapshots(t *testing.T) {
	ctx := ctxT(t)
	const ns = "failing"
	createNS(t, ctx, ns)
	createPVC(t, ctx, ns, claim("data", csi.StorageClass, "1Gi", nil))
	waitBound(t, ctx, ns, "data")
	be := faulty.New(mem.New())
	r, err := repo.Init(ctx, be, "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	be.Add(faulty.Fault{Op: faulty.OpSave, Type: storage.RecoveryPointFile, Nth: 1, Count: -1, Kind: faulty.Permanent})
	before := driverSnapshots(t, ctx)
	var ready []string
	s, err := volume.NewSnapshotter(cp.Config(), volume.SnapshotOptions{Timeout: time.Minute, Logf: func(f string, a ...any) {
		t.Logf(f, a...)
		ready = append(ready, fmt.Sprintf(f, a...))
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = backup.Run(ctx, cp.Config(), r, backup.Options{Config: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{ns}}, Volumes: s})
	if err == nil {
		t.Fatal("backup succeeded although the manifest could not be written")
	}
	if len(ready) != 1 {
		t.Fatalf("snapshots taken: %v", ready)
	}
	l, err := snaps.SnapshotV1().VolumeSnapshotContents().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range l.Items {
		if c.Annotations[volume.AnnSourceClaim] == ns+"/data" {
			t.Errorf("content %s of the failed backup left behind", c.Name)
		}
	}
	after := driverSnapshots(t, ctx)
	for id := range after {
		if !before[id] {
			t.Errorf("driver snapshot %s of the failed backup left behind", id)
		}
	}
}

// A restore into a cluster that lacks the recorded CSI driver or the
// claim's (mapped) storage class reports it per claim, with the remedy, and
// still creates the claim (Pending until the driver or class exists).
func TestRestoreMissingDriverAndClass(t *testing.T) {
	ctx := ctxT(t)
	const ns = "far"
	createNS(t, ctx, ns)
	createPVC(t, ctx, ns, claim("data", csi.StorageClass, "1Gi", nil))
	waitBound(t, ctx, ns, "data")
	r := newRepo(t, ctx)
	rp, recs := runBackup(t, ctx, r, volume.SnapshotOptions{Timeout: time.Minute}, ns)
	t.Cleanup(func() { cleanupContents(t, recs) })
	if len(recs.Snapshots) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	const absentDriver, absentClass = "absent.csi.arca.test", "arca-missing-class"
	moved := *recs
	moved.Snapshots = append([]volume.Record(nil), recs.Snapshots...)
	moved.Snapshots[0].Driver = absentDriver
	t.Cleanup(func() {
		l, err := snaps.SnapshotV1().VolumeSnapshotContents().List(context.Background(), metav1.ListOptions{LabelSelector: v1alpha1.LabelManagedBy + "=arca"})
		if err != nil {
			return
		}
		for _, c := range l.Items {
			if c.Spec.Driver == absentDriver {
				_ = snaps.SnapshotV1().VolumeSnapshotContents().Delete(context.Background(), c.Name, metav1.DeleteOptions{})
			}
		}
	})

	byCode := func(res *restore.Result) map[string]restore.Warning {
		m := map[string]restore.Warning{}
		for _, w := range res.Warnings {
			m[w.Code] = w
		}
		return m
	}

	// A dry run reports both and writes nothing.
	dry := runRestoreRecords(t, ctx, r, rp, &moved, v1alpha1.RestoreCriteria{DryRun: true, NamespaceMappings: map[string]string{ns: "far-dry"},
		StorageClassMappings: map[string]string{csi.StorageClass: absentClass}})
	if w := byCode(dry); len(w) != 2 || w[volume.WarnCSIDriverNotFound].Code == "" || w[volume.WarnStorageClassNotFound].Code == "" {
		t.Errorf("dry run warnings: %+v", dry.Warnings)
	}
	if _, err := kc.CoreV1().Namespaces().Get(ctx, "far-dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run created namespace far-dry: %v", err)
	}

	// With volume data: both codes, the claim is created and stays Pending.
	res := runRestoreRecords(t, ctx, r, rp, &moved, v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{ns: "far-a"},
		StorageClassMappings: map[string]string{csi.StorageClass: absentClass}})
	if f := res.Failures(); len(f) != 0 {
		t.Errorf("failures: %+v", f)
	}
	if it := itemsOf(res, "persistentvolumeclaims")["far-a/data"]; it.Action != restore.Created {
		t.Errorf("claim far-a/data: %s %s, want Created", it.Action, it.Reason)
	}
	w := byCode(res)
	if len(res.Warnings) != 2 {
		t.Errorf("warnings: %+v", res.Warnings)
	}
	if d := w[volume.WarnCSIDriverNotFound]; d.Object != "persistentvolumeclaims far-a/data" || !strings.Contains(d.Message, absentDriver) ||
		!strings.Contains(d.Message, "Install the driver") || !strings.Contains(d.Message, "--without-volume-data") {
		t.Errorf("CSIDriverNotFound: %+v", d)
	}
	if c := w[volume.WarnStorageClassNotFound]; c.Object != "persistentvolumeclaims far-a/data" || !strings.Contains(c.Message, absentClass) ||
		!strings.Contains(c.Message, "mapped from "+csi.StorageClass) || !strings.Contains(c.Message, "--storage-class-mapping "+csi.StorageClass+"=CLASS") {
		t.Errorf("StorageClassNotFound: %+v", c)
	}
	pvc, err := kc.CoreV1().PersistentVolumeClaims("far-a").Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("claim far-a/data not created: %v", err)
	}
	if sc := pvc.Spec.StorageClassName; sc == nil || *sc != absentClass {
		t.Errorf("far-a/data storage class %v", sc)
	}
	if ds := pvc.Spec.DataSource; ds == nil || ds.Kind != "VolumeSnapshot" {
		t.Errorf("far-a/data dataSource %+v", ds)
	}
	time.Sleep(2 * time.Second)
	if pvc, err := kc.CoreV1().PersistentVolumeClaims("far-a").Get(ctx, "data", metav1.GetOptions{}); err != nil || pvc.Status.Phase == corev1.ClaimBound {
		t.Errorf("far-a/data: %v, phase %s (want not Bound)", err, pvc.Status.Phase)
	}

	// Without volume data only the class matters; the driver is not needed.
	res = runRestoreRecords(t, ctx, r, rp, &moved, v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{ns: "far-b"},
		PersistentVolumeRestoreMode: v1alpha1.RestoreWithoutVolumeData, StorageClassMappings: map[string]string{csi.StorageClass: absentClass}})
	if got := codes(toRepoWarnings(res.Warnings)); len(got) != 1 || got[0] != volume.WarnStorageClassNotFound {
		t.Errorf("without volume data: warnings %+v", res.Warnings)
	}
	if _, err := kc.CoreV1().PersistentVolumeClaims("far-b").Get(ctx, "data", metav1.GetOptions{}); err != nil {
		t.Errorf("claim far-b/data not created: %v", err)
	}

	// The real driver and class: no warning, the claim binds.
	res = runRestore(t, ctx, r, rp, v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{ns: "far-c"}})
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %+v", res.Warnings)
	}
	waitBound(t, ctx, "far-c", "data")
}

func toRepoWarnings(ws []restore.Warning) []repo.Warning {
	out := make([]repo.Warning, 0, len(ws))
	for _, w := range ws {
		out = append(out, repo.Warning{Code: w.Code, Message: w.Message})
	}
	return out
}

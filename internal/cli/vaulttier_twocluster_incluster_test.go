package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

// recordAtStart is the application of the two-cluster test: volumeSeed's
// files on an empty volume, then, before it is Ready, what the volume held
// at the moment the container started (volumeSums) in /tmp/at-start. A
// restored pod that started before its data was in place would have seeded
// new random files, and its record would differ.
const recordAtStart = volumeSeedFiles + "\n{ " + volumeSums + "; } > /tmp/listing && mv /tmp/listing /tmp/at-start\nexec sleep 2147483647"

// otherCluster names the CSI objects of the second cluster: another
// driver, another storage class.
var otherCluster = testenv.HostPathNames{Driver: "hostpath-b.csi.arca.local", StorageClass: "arca-hostpath-b",
	SnapshotClass: "arca-hostpath-b-snapclass", SnapshotClassDelete: "arca-hostpath-b-snapclass-delete"}

// TestVaultTierRestoreIntoSecondCluster restores a volume into a second,
// independent cluster whose storage is another CSI driver: two control
// planes, each with its own node (kubelet, containerd, kube-proxy in its own
// network namespace), registry and hostpath CSI stack under its own driver
// name, and each with the extension installed as a pod from the same image.
// Both use one MinIO (on cluster A's host address) as storage location.
//   - In A an application pod writes files (several sizes, a symlink,
//     subdirectories, an empty file) into a claim of A's driver; a
//     vault-tier BackupJob run by A's extension pod snapshots it and moves
//     its data into MinIO through a mover pod.
//   - In B a RestoreJob (volumeDataSource Auto, storageClassMappings to B's
//     class) finds no snapshot there, creates the claim empty in B's class,
//     writes the data through a restore pod and only then creates the
//     Deployment: its pod recorded at its start the same sha256 of every file
//     as the source pod wrote, and reads them again; the volume is B's
//     driver's, its tree on the host equal to A's (owners and mtimes too).
//   - A restore in B that asks for the snapshot (volumeDataSource Snapshot)
//     cannot use it: CSIDriverNotFound names A's driver and the snapshot
//     (and StorageClassNotFound A's class); the claim stays Pending, no
//     restore pod runs and no data is written.
func TestVaultTierRestoreIntoSecondCluster(t *testing.T) {
	start := time.Now()
	a := newInClusterWith(t, testenv.ControlPlaneOptions{Nodes: 1, Name: "a"})
	csiA := testenv.StartHostPathCSI(t, a.cp)
	// B's node also pulls from A's registry: the restored Deployment names
	// the application's image there.
	b := newInClusterWith(t, testenv.ControlPlaneOptions{Nodes: 1, Name: "b", PullFrom: []string{a.cp.Registry.Addr()}})
	csiB := testenv.StartHostPathCSINamed(t, b.cp, otherCluster)
	if a.cp.HostIP == b.cp.HostIP || a.cp.Nodes[0].NetNS == b.cp.Nodes[0].NetNS || a.cp.Nodes[0].CgroupRoot == b.cp.Nodes[0].CgroupRoot {
		t.Fatalf("the clusters share a network or cgroups: host %s/%s, netns %s/%s, cgroup root %s/%s", a.cp.HostIP, b.cp.HostIP,
			a.cp.Nodes[0].NetNS, b.cp.Nodes[0].NetNS, a.cp.Nodes[0].CgroupRoot, b.cp.Nodes[0].CgroupRoot)
	}
	t.Logf("two clusters with a node and a hostpath CSI stack each in %s: A on %s (%s), B on %s (%s)", time.Since(start).Round(time.Millisecond),
		a.cp.HostIP, csiA.DriverName, b.cp.HostIP, csiB.DriverName)

	ctx := t.Context()
	m := testenv.StartMinIO(t, testenv.OnHost(a.cp.HostIP))
	m.MakeBucket(t, "vault")
	url := fmt.Sprintf("s3://vault/repo?endpoint=%s&tls=false&path-style=true&region=us-east-1", m.Endpoint)
	for _, ic := range []*inCluster{a, b} {
		step := time.Now()
		out, err := ic.arca("extension", "install", "--storage", "file://"+filepath.Join(t.TempDir(), "repo"), "--password-file", ic.pw, "--image", ic.image, "--timeout", "4m")
		if err != nil {
			t.Fatalf("install in cluster %s: %v\n%s\n%s", ic.cp.Name, err, out, ic.extensionLog())
		}
		ic.s3Location("minio", url, "in-cluster-password", m)
		t.Logf("extension installed in cluster %s in %s", ic.cp.Name, time.Since(step).Round(time.Millisecond))
	}
	// The same image: pushed to each cluster's registry, one digest.
	if ia, ib := a.extensionPod().Status.ContainerStatuses[0].ImageID, b.extensionPod().Status.ContainerStatuses[0].ImageID; ia == "" || imageDigest(ia) != imageDigest(ib) {
		t.Fatalf("extension pods run images %q and %q: want one digest", ia, ib)
	}

	// The source in A: a claim of A's driver and a Deployment that writes
	// into it.
	if _, err := a.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	class := csiA.StorageClass
	if _, err := a.cs.CoreV1().PersistentVolumeClaims("shop").Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "db"}
	if _, err := a.cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "db", Image: testenv.AppImage(t, a.cp.Registry), Command: []string{"sh", "-c", recordAtStart},
					ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/at-start"}}}},
					VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
			}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := a.volumeListing("shop")
	for _, line := range []string{"F ./db/wal/000001 644 3145728 ", "F ./db/seg-12 644 294912 ", "F ./empty 644 0 ", "L ./current -> db/meta", "D ./db/wal 755"} {
		if !strings.Contains(want, line) {
			t.Fatalf("the source pod's files lack %q:\n%s", line, want)
		}
	}
	srcDir := volumeDirOf(t, a, csiA, "shop")

	step := time.Now()
	a.apply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: to-vault, namespace: arca-system}
spec: {storageLocation: minio, includedNamespaces: [shop], vaultTier: true}
`)
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "to-vault", Namespace: v1alpha1.ExtensionNamespace}}
	if st := a.waitJob(bj, 5*time.Minute); st.Phase != v1alpha1.JobCompleted || bj.Status.RecoveryPointID == "" {
		t.Fatalf("vault-tier backup in A: %+v\n%s", bj.Status, a.extensionLog())
	}
	be, err := location.OpenWith(ctx, url, location.Credentials{AWSAccessKeyID: m.AccessKey, AWSSecretAccessKey: m.SecretKey}, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, "in-cluster-password")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	point, err := r.FindRecoveryPoint(ctx, bj.Status.RecoveryPointID)
	if err != nil {
		t.Fatal(err)
	}
	if len(point.VolumeData) != 1 || point.VolumeData[0].Name != "shop/data" {
		t.Fatalf("the point's vault-tier data %+v: want shop/data", point.VolumeData)
	}
	recs, err := volume.Decode(point.Volumes)
	if err != nil || len(recs.Snapshots) != 1 || recs.Snapshots[0].Driver != csiA.DriverName {
		t.Fatalf("the point's snapshot records %+v %v: want one of %s", recs, err, csiA.DriverName)
	}
	volBytes := point.VolumeData[0].Bytes
	t.Logf("vault-tier backup in A in %s: point %s, shop/data %d files, %d bytes", time.Since(step).Round(time.Millisecond),
		point.ID.Short(), point.VolumeData[0].Files, volBytes)

	restore := func(name, spec string) *v1alpha1.RestoreJob {
		t.Helper()
		b.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: %s, namespace: arca-system}
spec:
  storageLocation: minio
  recoveryPoint: %s
  includedNamespaces: [shop]
%s`, name, bj.Status.RecoveryPointID, spec))
		rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1alpha1.ExtensionNamespace}}
		b.waitJob(rj, 5*time.Minute)
		return rj
	}

	t.Run("vault data into B's driver and class", func(t *testing.T) {
		step := time.Now()
		rj := restore("from-a", "  storageClassMappings: {"+csiA.StorageClass+": "+csiB.StorageClass+"}\n")
		if rj.Status.Phase != v1alpha1.JobCompleted {
			t.Fatalf("restore in B: %s %s %+v %+v %+v\n%s", rj.Status.Phase, rj.Status.Message, rj.Status.Errors, rj.Status.Warnings, rj.Status.Items, b.extensionLog())
		}
		t.Logf("restored into B in %s", time.Since(step).Round(time.Millisecond))
		if p := rj.Status.Progress; p == nil || p.BytesTotal != volBytes || p.BytesDone != volBytes {
			t.Errorf("progress %+v: want the vault-tier bytes (%d) done of the same total", p, volBytes)
		}
		claim, err := b.cs.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		why := "VolumeSnapshotContent " + recs.Snapshots[0].Content + " does not exist in the target cluster"
		if ann := claim.Annotations[volume.AnnVolumeData]; claim.Spec.DataSource != nil || !strings.HasPrefix(ann, "vault ") || !strings.Contains(ann, why) ||
			*claim.Spec.StorageClassName != csiB.StorageClass {
			t.Errorf("claim shop/data in B: data source %+v, annotation %q, class %s; want no data source, from the vault tier because %q, class %s",
				claim.Spec.DataSource, ann, *claim.Spec.StorageClassName, why, csiB.StorageClass)
		}
		// The workload started after the data was in: its pod's record of
		// the volume at its start is the source's, every file's sha256.
		pod := b.readyPod("shop", "app=db")
		if seen, err := execIn(t, b.cp.Config(), b.cs, "shop", pod.Name, "db", "cat", "/tmp/at-start"); err != nil || seen != want {
			t.Errorf("the restored pod in B saw other files at its start (%v) than the source pod wrote:\nsource:\n%s\nrestored:\n%s", err, want, seen)
		}
		if now := b.volumeListing("shop"); now != want {
			t.Errorf("the restored pod in B reads other files than the source pod wrote:\nsource:\n%s\nrestored:\n%s", want, now)
		}
		// The volume is B's driver's; on the host its tree is A's, owners
		// and times included.
		if dst := volumeDirOf(t, b, csiB, "shop"); treeListing(t, dst) != treeListing(t, srcDir) {
			t.Errorf("B's volume differs from A's on the host.\nA:\n%s\nB:\n%s", treeListing(t, srcDir), treeListing(t, dst))
		}
		sel := metav1.ListOptions{LabelSelector: volume.LabelComponent + "=volume-restore"}
		pods, _ := b.cs.CoreV1().Pods("shop").List(ctx, sel)
		secs, _ := b.cs.CoreV1().Secrets("shop").List(ctx, sel)
		if len(pods.Items) != 0 || len(secs.Items) != 0 {
			t.Errorf("restore pods %d and secret copies %d left in B", len(pods.Items), len(secs.Items))
		}
	})

	t.Run("snapshot asked for in B: the driver is not there", func(t *testing.T) {
		rj := restore("snapshot-in-b", "  namespaceMappings: {shop: shop-snap}\n  volumeDataSource: Snapshot\n")
		driverMissing := false
		for _, w := range rj.Status.Warnings {
			if w.Code == volume.WarnCSIDriverNotFound && strings.Contains(w.Message, "shop-snap/data") && strings.Contains(w.Message, csiA.DriverName) &&
				strings.Contains(w.Message, recs.Snapshots[0].SnapshotHandle) {
				driverMissing = true
			}
		}
		if rj.Status.Phase != v1alpha1.JobCompletedWithWarnings || !driverMissing || !hasCode(rj.Status.Warnings, volume.WarnStorageClassNotFound) {
			t.Fatalf("restore from the snapshot in B: %s %s warnings %+v items %+v; want CompletedWithWarnings, %s naming the claim, driver %s and the snapshot, and %s",
				rj.Status.Phase, rj.Status.Message, rj.Status.Warnings, rj.Status.Items, volume.WarnCSIDriverNotFound, csiA.DriverName, volume.WarnStorageClassNotFound)
		}
		// Nothing gives the claim data: it stays Pending, no restore pod ran.
		time.Sleep(3 * time.Second)
		claim, err := b.cs.CoreV1().PersistentVolumeClaims("shop-snap").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if claim.Status.Phase != corev1.ClaimPending || claim.Spec.VolumeName != "" || claim.Spec.DataSource == nil || claim.Spec.DataSource.Kind != "VolumeSnapshot" {
			t.Errorf("claim shop-snap/data: phase %s, volume %q, data source %+v; want Pending, no volume, the recorded snapshot as source",
				claim.Status.Phase, claim.Spec.VolumeName, claim.Spec.DataSource)
		}
		if _, ok := claim.Annotations[volume.AnnVolumeData]; ok {
			t.Errorf("claim shop-snap/data is annotated %q: the vault tier was used", claim.Annotations[volume.AnnVolumeData])
		}
		pods, _ := b.cs.CoreV1().Pods("shop-snap").List(ctx, metav1.ListOptions{})
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodPending || p.Labels[volume.LabelComponent] != "" {
				t.Errorf("pod shop-snap/%s (%s, labels %v): want only the application's, Pending", p.Name, p.Status.Phase, p.Labels)
			}
		}
	})
}

// volumeDirOf is the host directory of claim ns/data of ic's hostpath
// driver c.
func volumeDirOf(t *testing.T, ic *inCluster, c *testenv.CSI, ns string) string {
	t.Helper()
	claim, err := ic.cs.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := ic.cs.CoreV1().PersistentVolumes().Get(t.Context(), claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("volume of %s/data in cluster %s: %v", ns, ic.cp.Name, err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != c.DriverName {
		t.Fatalf("volume %s of %s/data in cluster %s: %+v, want one of %s", pv.Name, ns, ic.cp.Name, pv.Spec.CSI, c.DriverName)
	}
	return c.VolumeDir(pv.Spec.CSI.VolumeHandle)
}

// imageDigest is the sha256 digest of a container's imageID
// ("registry/repo@sha256:…").
func imageDigest(imageID string) string {
	if i := strings.LastIndex(imageID, "@"); i >= 0 {
		return imageID[i+1:]
	}
	return imageID
}

package extension_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

// vaultAppScript is the Deployment's container: on an empty volume it
// writes files of several kinds (the first run, in the source namespace);
// then, on every start, it records what the volume held at that moment in
// /tmp/at-start (names, modes, owners, mtimes, link counts, symlink
// targets, the sparse file's blocks, SHA-256 of every file) and sleeps.
const vaultAppScript = `set -e
cd /data
if [ ! -e hello.txt ]; then
  echo "hello from the vault tier" > hello.txt
  dd if=/dev/urandom of=random.bin bs=64k count=48 2>/dev/null
  mkdir -p dir/sub
  printf 'nested\n' > dir/sub/file
  chmod 600 dir/sub/file
  ln -s hello.txt link-to-hello
  ln random.bin hardlink.bin
  chown 1234:5678 random.bin
  dd if=/dev/urandom of=sparse.img bs=4k count=1 seek=2048 2>/dev/null
  touch -d '2024-01-02 03:04:05' hello.txt
  sync
fi
{ find . | sort | while read -r f; do stat -c '%n %A %u:%g %Y %h %N' "$f"; done
  stat -c 'sparse: %s bytes, %b blocks' sparse.img
  find . -type f | sort | xargs sha256sum; } > /tmp/listing
mv /tmp/listing /tmp/at-start
exec sleep 1000000
`

// TestVaultTierRestoreOnNode restores claims from vault-tier data alone,
// on a real node with the hostpath CSI driver holding real bytes, through
// RestoreJobs run by the extension:
//   - a vault-tier BackupJob: the claim's snapshot and its vault-tier data
//     (moved by a data-mover pod from the extension's image); the
//     snapshot's content is deleted and the namespace
//     too; the restore (Auto) finds the snapshot gone, creates the claim
//     empty, runs a restore pod from the extension's image that writes the
//     data from the repository (MinIO), deletes the pod and its Secret copy,
//     and only then creates the Deployment: its pod recorded at its start
//     the same files, checksums and metadata as the source pod wrote;
//   - first, while the snapshot still exists: into a mapped namespace
//     with a storage class mapping to a second CSI driver (another
//     hostpath driver under its own name): Auto sees the class move the
//     claim to another driver and takes the vault tier; the same bytes, in
//     a volume of the other driver;
//   - into the existing claim while the Deployment's pod mounts it
//     (conflictPolicy Patch, volumeDataSource Vault): VolumeInUse naming
//     the pod, nothing written;
//   - a restore pod that cannot run (its image does not exist, 15 s
//     timeout): the claim's item fails with VolumeDataRestoreFailed naming
//     the claim and the pod's state, the rest is restored, the pod and the
//     Secret copy are deleted;
//   - a volumeDataSources entry naming no claim of the point: the job
//     fails before writing, naming the claim.
func TestVaultTierRestoreOnNode(t *testing.T) {
	env := startVaultNode(t)
	cp, csi, cl, ex, m, url := env.cp, env.csi, env.cl, env.ex, env.minio, env.url
	app := testenv.AppImage(t, cp.Registry)
	running := env.running
	ctx := context.Background()

	// The source: a claim and a Deployment whose pod writes the files, in
	// a namespace that enforces the Pod Security Standard "baseline" (the
	// restored namespaces do too: the restore pods must be admitted there).
	cl.namespace("shop")
	if _, err := cl.cs.CoreV1().Namespaces().Patch(ctx, "shop", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"baseline"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	class := csi.StorageClass
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}}}
	if _, err := cl.cs.CoreV1().PersistentVolumeClaims("shop").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "vault"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "vault"}}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: new(int64(1)),
				Containers: []corev1.Container{{Name: "app", Image: app, Command: []string{"sh", "-c", vaultAppScript},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/at-start"}}}, PeriodSeconds: 1},
					VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
			}}}}
	if _, err := cl.cs.AppsV1().Deployments("shop").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := cl.readyPod("shop", "app=vault", 3*time.Minute)
	want := cl.execIn(ex, "shop", src.Name, "cat", "/tmp/at-start")
	for _, line := range []string{"./hello.txt -rw-r--r-- 0:0 1704164645", "./random.bin -rw-r--r-- 1234:5678", "'./link-to-hello' -> 'hello.txt'",
		"sparse: 8392704 bytes, 8 blocks", "  ./random.bin\n", "  ./sparse.img\n"} {
		if !strings.Contains(want, line) {
			t.Fatalf("the source pod's files lack %q:\n%s", line, want)
		}
	}
	t.Logf("source pod wrote:\n%s", want)

	// A vault-tier backup: the claim's snapshot, and its data moved into
	// the repository by a data-mover pod (internal/mover).
	cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: shop, namespace: arca-system}
spec: {storageLocation: default, includedNamespaces: [shop], snapshotClasses: [` + csi.SnapshotClass + `], vaultTier: true}
`)
	bj := cl.waitBackup("shop", 5*time.Minute)
	if bj.Status.Phase != v1alpha1.JobCompleted {
		t.Fatalf("backup: %s %s %+v %+v", bj.Status.Phase, bj.Status.Message, bj.Status.Errors, bj.Status.Warnings)
	}
	rpID := bj.Status.RecoveryPointID
	point, err := openRepo(t, url, m).FindRecoveryPoint(ctx, rpID)
	if err != nil {
		t.Fatal(err)
	}
	if len(point.VolumeData) != 1 || point.VolumeData[0].Name != "shop/data" {
		t.Fatalf("the vault-tier point's volume data %+v: want shop/data", point.VolumeData)
	}
	volBytes := point.VolumeData[0].Bytes
	t.Logf("vault-tier point %s: shop/data, %d files, %d bytes", point.ID.Short(), point.VolumeData[0].Files, volBytes)

	restoreJob := func(name, spec string) *v1alpha1.RestoreJob {
		t.Helper()
		cl.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: %s, namespace: arca-system}
spec:
  storageLocation: default
  recoveryPoint: %s
  includedNamespaces: [shop]
%s`, name, rpID, spec))
		return cl.waitRestore(name, 5*time.Minute)
	}
	// checkRestored: the claim holds the data and the Deployment's pod saw it at its start.
	checkRestored := func(ns, wantClass, why string) {
		t.Helper()
		got, err := cl.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ann := got.Annotations[volume.AnnVolumeData]
		if got.Spec.DataSource != nil || !strings.HasPrefix(ann, "vault ") || !strings.Contains(ann, why) || *got.Spec.StorageClassName != wantClass {
			t.Errorf("claim %s/data: data source %+v, annotation %q, class %s; want no data source, from the vault tier because %q, class %s",
				ns, got.Spec.DataSource, ann, *got.Spec.StorageClassName, why, wantClass)
		}
		pod := cl.readyPod(ns, "app=vault", 3*time.Minute)
		if seen := cl.execIn(ex, ns, pod.Name, "cat", "/tmp/at-start"); seen != want {
			t.Errorf("the restored pod in %s saw other files at its start than the source pod wrote:\nsource:\n%s\nrestored:\n%s", ns, want, seen)
		}
		// The restore pod and the Secret copy are gone.
		pods, _ := cl.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: volume.LabelComponent + "=volume-restore"})
		secs, _ := cl.cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: volume.LabelComponent + "=volume-restore"})
		if len(pods.Items) != 0 || len(secs.Items) != 0 {
			t.Errorf("restore pods %d and secret copies %d left in %s", len(pods.Items), len(secs.Items), ns)
		}
	}

	t.Run("another CSI driver and class, snapshot still there", func(t *testing.T) {
		// The target's other driver: Auto sees the mapped class provision
		// with it, so the claim comes from the vault tier, not the snapshot.
		const driverB = "hostpath-b.csi.arca.local"
		b := testenv.StartOtherHostPathDriver(t, cp, driverB, "arca-hostpath-b")
		j := restoreJob("other-driver", `  namespaceMappings: {shop: shop-b}
  storageClassMappings: {`+csi.StorageClass+`: arca-hostpath-b}`)
		if j.Status.Phase != v1alpha1.JobCompleted {
			t.Fatalf("restore: %s %s %+v %+v %+v", j.Status.Phase, j.Status.Message, j.Status.Errors, j.Status.Warnings, j.Status.Items)
		}
		checkRestored("shop-b", "arca-hostpath-b", "provisions with "+driverB+", not the snapshot's driver "+csi.DriverName)
		if ns, err := cl.cs.CoreV1().Namespaces().Get(ctx, "shop-b", metav1.GetOptions{}); err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "baseline" {
			t.Errorf("namespace shop-b does not enforce baseline (%v): the restore pod's admission was not tested", err)
		}
		claim, err := cl.cs.CoreV1().PersistentVolumeClaims("shop-b").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pv, err := cl.cs.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
		if err != nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverB {
			t.Fatalf("volume of shop-b/data: %+v %v, want one of %s", pv.Spec.CSI, err, driverB)
		}
		if _, err := os.Stat(filepath.Join(b.VolumeDir(pv.Spec.CSI.VolumeHandle), "random.bin")); err != nil {
			t.Errorf("the data is not in the other driver's volume: %v", err)
		}
	})

	// The operational tier goes: the snapshot's content (and the driver's
	// snapshot), then the namespace with its volume.
	r := openRepo(t, url, m)
	rp, err := r.FindRecoveryPoint(ctx, rpID)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := volume.Decode(rp.Volumes)
	if err != nil || len(recs.Snapshots) != 1 {
		t.Fatalf("records %+v %v", recs, err)
	}
	snaps := snapclient.NewForConfigOrDie(cp.Config())
	if _, _, err := volume.DeleteSnapshots(ctx, snaps, recs, volume.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, recs.Snapshots[0].Content, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("content %s still there: %v", recs.Snapshots[0].Content, err)
	}
	cl.deleteNamespace("shop", 2*time.Minute)

	t.Run("snapshot gone, namespace gone: from the repository alone", func(t *testing.T) {
		start := time.Now()
		j := restoreJob("from-vault", "")
		if j.Status.Phase != v1alpha1.JobCompleted {
			t.Fatalf("restore: %s %s %+v %+v %+v", j.Status.Phase, j.Status.Message, j.Status.Errors, j.Status.Warnings, j.Status.Items)
		}
		t.Logf("restored from the vault tier in %s", time.Since(start).Round(time.Millisecond))
		if p := j.Status.Progress; p == nil || p.BytesTotal != volBytes || p.BytesDone != volBytes {
			t.Errorf("progress %+v: want the vault-tier bytes (%d) done of the same total", p, volBytes)
		}
		checkRestored("shop", csi.StorageClass, "VolumeSnapshotContent "+recs.Snapshots[0].Content+" does not exist in the target cluster")
	})

	t.Run("into a claim in use: refused", func(t *testing.T) {
		pod := cl.readyPod("shop", "app=vault", time.Minute)
		cl.execIn(ex, "shop", pod.Name, "sh", "-c", "echo live > /data/hello.txt && sync")
		j := restoreJob("in-use", `  conflictPolicy: Patch
  volumeDataSource: Vault`)
		if !hasCode(j.Status.Warnings, volume.CodeVolumeInUse) {
			t.Fatalf("restore into the claim in use: %s %s warnings %+v items %+v", j.Status.Phase, j.Status.Message, j.Status.Warnings, j.Status.Items)
		}
		for _, w := range j.Status.Warnings {
			if w.Code == volume.CodeVolumeInUse && !strings.Contains(w.Message, "shop/"+pod.Name) {
				t.Errorf("VolumeInUse does not name the pod %s: %s", pod.Name, w.Message)
			}
		}
		if got := cl.execIn(ex, "shop", pod.Name, "cat", "/data/hello.txt"); got != "live\n" {
			t.Errorf("the volume in use was written: hello.txt = %q", got)
		}
	})

	t.Run("restore pod fails: the claim fails with its code", func(t *testing.T) {
		// An extension whose data mover image does not exist: the pod
		// cannot start, and gives up after 15 s.
		running.stop()
		running = cl.startExtension(extension.Options{Executor: ex, DataMoverImage: cp.Registry.Addr() + "/arca-test/no-such-image:1", RestorePodTimeout: 15 * time.Second})
		j := restoreJob("pod-fails", `  namespaceMappings: {shop: shop-f}`)
		if j.Status.Phase != v1alpha1.JobCompletedWithWarnings || !hasCode(j.Status.Warnings, volume.CodeVolumeDataRestoreFailed) || !hasCode(j.Status.Warnings, v1alpha1.CodeItemsFailed) {
			t.Fatalf("restore with a failing pod: %s %s warnings %+v items %+v", j.Status.Phase, j.Status.Message, j.Status.Warnings, j.Status.Items)
		}
		for _, w := range j.Status.Warnings {
			if w.Code == volume.CodeVolumeDataRestoreFailed && (!strings.Contains(w.Message, "claim shop-f/data") || !strings.Contains(w.Message, "did not finish within 15s") ||
				!strings.Contains(w.Message, "ImagePull")) {
				t.Errorf("VolumeDataRestoreFailed does not name the claim, the timeout and the pod's state: %s", w.Message)
			}
		}
		if len(j.Status.Items) == 0 || j.Status.Items[0].Object != "persistentvolumeclaims shop-f/data" || j.Status.Items[0].Action != "Failed" {
			t.Errorf("items %+v: want the claim failed first", j.Status.Items)
		}
		pods, _ := cl.cs.CoreV1().Pods("shop-f").List(ctx, metav1.ListOptions{LabelSelector: volume.LabelComponent + "=volume-restore"})
		secs, _ := cl.cs.CoreV1().Secrets("shop-f").List(ctx, metav1.ListOptions{LabelSelector: volume.LabelComponent + "=volume-restore"})
		if len(pods.Items) != 0 || len(secs.Items) != 0 {
			t.Errorf("after a failed restore pod: restore pods %d and secret copies %d left", len(pods.Items), len(secs.Items))
		}
	})

	t.Run("unknown claim in volumeDataSources", func(t *testing.T) {
		j := restoreJob("unknown-claim", `  namespaceMappings: {shop: shop-c}
  volumeDataSources: {shop/nope: Vault}`)
		if j.Status.Phase != v1alpha1.JobFailed || !strings.Contains(j.Status.Message, "shop/nope") {
			t.Fatalf("unknown claim: %s %s %+v", j.Status.Phase, j.Status.Message, j.Status.Errors)
		}
		if _, err := cl.cs.CoreV1().Namespaces().Get(ctx, "shop-c", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace shop-c exists (%v): the refused restore wrote", err)
		}
	})
}

// vaultNode is the set-up of the vault-tier tests on a node: a control
// plane with one node, the hostpath CSI driver, the extension's CRDs and
// image, MinIO with a bucket, the storage location "default" (credentials
// Secret "minio") and the extension running in the test process, whose
// data-mover and restore pods run on the node from the extension's image.
type vaultNode struct {
	cp      *testenv.ControlPlane
	csi     *testenv.CSI
	cl      *cluster
	ex      extension.Executor
	minio   *testenv.MinIO
	url     string // the repository
	running *runningExtension
}

func startVaultNode(t *testing.T) *vaultNode {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a node")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{Nodes: 1})
	csi := testenv.StartHostPathCSI(t, cp)
	ctx := context.Background()
	if err := extension.InstallCRDs(ctx, cp.Config()); err != nil {
		t.Fatal(err)
	}
	image := testenv.ExtensionImage(t, cp.Registry)
	m := testenv.StartMinIO(t, testenv.OnHost(cp.HostIP))
	m.MakeBucket(t, "arca")
	url := fmt.Sprintf("s3://arca/vault?endpoint=%s&tls=false&path-style=true&region=us-east-1", m.Endpoint)
	cl := newCluster(t, cp, "arca-system")
	if _, err := cl.cs.CoreV1().Secrets("arca-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "minio"},
		StringData: map[string]string{v1alpha1.SecretKeyPassword: password, v1alpha1.SecretKeyAWSAccessKeyID: m.AccessKey,
			v1alpha1.SecretKeyAWSSecretAccessKey: m.SecretKey}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cl.c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "arca-system"},
		Spec: v1alpha1.StorageLocationSpec{URL: url, CredentialsSecret: "minio"}}); err != nil {
		t.Fatal(err)
	}
	ex, err := extension.NewPodExecutor(cl.cfg)
	if err != nil {
		t.Fatal(err)
	}
	running := cl.startExtension(extension.Options{Executor: ex, DataMoverImage: image})
	return &vaultNode{cp: cp, csi: csi, cl: cl, ex: ex, minio: m, url: url, running: running}
}

func openRepo(t *testing.T, url string, m *testenv.MinIO) *repo.Repository {
	t.Helper()
	ctx := context.Background()
	be, err := location.OpenWith(ctx, url, location.Credentials{AWSAccessKeyID: m.AccessKey, AWSSecretAccessKey: m.SecretKey}, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

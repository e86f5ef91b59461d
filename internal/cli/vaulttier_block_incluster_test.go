package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

// blockWriteScript writes random bytes with holes to the device: random
// at [0, 8) MiB, [16, 32) MiB, [40, 47) MiB and the last 4 KiB of 48 MiB;
// zeros elsewhere (never written: holes of the driver's image). Then it
// records the device's SHA-256 in /tmp/sum and sleeps.
const blockWriteScript = `set -e
dd if=/dev/urandom of=/dev/xvda bs=1048576 count=8 2>/dev/null
dd if=/dev/urandom of=/dev/xvda bs=1048576 count=16 seek=16 2>/dev/null
dd if=/dev/urandom of=/dev/xvda bs=1048576 count=7 seek=40 2>/dev/null
dd if=/dev/urandom of=/dev/xvda bs=4096 count=1 seek=12287 2>/dev/null
sync
sha256sum /dev/xvda > /tmp/part && mv /tmp/part /tmp/sum
exec sleep 1000000
`

// blockReadScript records the device's SHA-256 in /tmp/sum and sleeps.
const blockReadScript = `sha256sum /dev/xvda > /tmp/part && mv /tmp/part /tmp/sum; exec sleep 1000000`

// vaultTierBlock is TestVaultTierInCluster's block-mode part, through the
// installed extension and its storage location loc: a pod writes 48 MiB
// with zero ranges to a Block claim's device (the hostpath driver's loop
// device); a vault-tier BackupJob's mover pod reads the device as one
// stream; with the snapshot's content and the namespace deleted, a
// RestoreJob re-creates the Block claim empty and its restore pod writes
// the stream to the new device, which a pod reads with the writer's
// SHA-256; a restore into an existing Block claim smaller than the data is
// refused with VolumeTooSmall and writes nothing; and no loop device of
// this cluster is left attached.
func (ic *inCluster) vaultTierBlock(t *testing.T, csi *testenv.CSI, loc string, point func(id string) *repo.RecoveryPoint) {
	ctx := t.Context()
	app := testenv.AppImage(t, ic.cp.Registry)
	// Loop devices over this cluster's files: the driver's (over an image
	// in its data directory) and the kubelet's (over the device file it
	// maps below the node's directory). Other tests on the machine may
	// attach their own meanwhile.
	loops := func() []string { return loopDevices(t, csi.DataDir, ic.cp.Nodes[0].Dir) }
	loopsBefore := loops()

	const size = 48 << 20
	block := corev1.PersistentVolumeBlock
	blockClaim := func(ns, name, size string) {
		t.Helper()
		class := csi.StorageClass
		if _, err := ic.cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class, VolumeMode: &block,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// devicePod runs script with the claim as /dev/xvda and waits until it
	// has written /tmp/sum.
	devicePod := func(ns, name, claim, script string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64(1)),
				Containers: []corev1.Container{{Name: "app", Image: app, Command: []string{"sh", "-c", script},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/sum"}}}, PeriodSeconds: 1},
					VolumeDevices:  []corev1.VolumeDevice{{Name: "disk", DevicePath: "/dev/xvda"}}}},
				Volumes: []corev1.Volume{{Name: "disk", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
			}}
		if _, err := ic.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return ic.readyPod(ns, "app="+name)
	}
	sumIn := func(ns, pod string) string {
		t.Helper()
		out, err := execIn(t, ic.cp.Config(), ic.cs, ns, pod, "app", "cat", "/tmp/sum")
		sum, dev, ok := strings.Cut(strings.TrimSpace(out), "  ")
		if err != nil || !ok || dev != "/dev/xvda" || len(sum) != 64 {
			t.Fatalf("sha256sum in %s/%s: %v %q", ns, pod, err, out)
		}
		return sum
	}
	deletePod := func(ns, name string) {
		t.Helper()
		if err := ic.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "pod "+ns+"/"+name+" gone", 2*time.Minute, func() bool {
			_, err := ic.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
	}

	// The source: the writer pod, deleted before the backup so that the
	// restore does not run it again.
	if _, err := ic.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "blk"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	blockClaim("blk", "disk", "48Mi")
	writer := devicePod("blk", "writer", "disk", blockWriteScript)
	want := sumIn("blk", writer.Name)
	if zeros := sha256.Sum256(make([]byte, size)); want == hex.EncodeToString(zeros[:]) {
		t.Fatal("the writer pod's device holds only zeros")
	}
	claim, err := ic.cs.CoreV1().PersistentVolumeClaims("blk").Get(ctx, "disk", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := ic.cs.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	image := csi.BlockImage(pv.Spec.CSI.VolumeHandle)
	if allocated := allocatedBytes(t, image); allocated >= size {
		t.Errorf("the source image %s has %d bytes allocated: want the zero ranges left as holes", image, allocated)
	}
	t.Logf("writer pod %s: device sha256 %s; the image has %d of %d bytes allocated", writer.Name, want, allocatedBytes(t, image), size)
	deletePod("blk", writer.Name)

	ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: blk, namespace: arca-system}
spec: {storageLocation: %s, includedNamespaces: [blk], vaultTier: true}
`, loc))
	start := time.Now()
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "blk", Namespace: v1alpha1.ExtensionNamespace}}
	if st := ic.waitJob(bj, 5*time.Minute); st.Phase != v1alpha1.JobCompleted {
		t.Fatalf("backup: %s %s %+v %+v\n%s", st.Phase, st.Message, st.Errors, st.Warnings, ic.extensionLog())
	}
	rp := point(bj.Status.RecoveryPointID)
	if len(rp.VolumeData) != 1 || rp.VolumeData[0].Name != "blk/disk" || !rp.VolumeData[0].Block || rp.VolumeData[0].Bytes != size || rp.VolumeData[0].Files != 1 {
		t.Fatalf("the vault-tier point's volume data %+v: want blk/disk, a block volume of %d bytes in one stream", rp.VolumeData, size)
	}
	t.Logf("vault-tier backup of the block volume in %s: %d bytes, %d new", time.Since(start).Round(time.Millisecond), rp.VolumeData[0].Bytes, rp.VolumeData[0].NewBytes)

	// The operational tier goes, then the namespace.
	recs, err := volume.Decode(rp.Volumes)
	if err != nil || len(recs.Snapshots) != 1 {
		t.Fatalf("records %+v %v", recs, err)
	}
	if _, _, err := volume.DeleteSnapshots(ctx, snapclient.NewForConfigOrDie(ic.cp.Config()), recs, volume.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ic.cs.CoreV1().Namespaces().Delete(ctx, "blk", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "namespace blk gone", 2*time.Minute, func() bool {
		_, err := ic.cs.CoreV1().Namespaces().Get(ctx, "blk", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})

	restore := func(name, spec string) *v1alpha1.RestoreJob {
		t.Helper()
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: %s, namespace: arca-system}
spec:
  storageLocation: %s
  recoveryPoint: %s
  includedNamespaces: [blk]
%s`, name, loc, bj.Status.RecoveryPointID, spec))
		rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1alpha1.ExtensionNamespace}}
		ic.waitJob(rj, 5*time.Minute)
		return rj
	}

	t.Run("from the repository alone, byte for byte", func(t *testing.T) {
		start := time.Now()
		j := restore("blk-from-vault", "")
		if j.Status.Phase != v1alpha1.JobCompleted {
			t.Fatalf("restore: %s %s %+v %+v %+v\n%s", j.Status.Phase, j.Status.Message, j.Status.Errors, j.Status.Warnings, j.Status.Items, ic.extensionLog())
		}
		t.Logf("restored from the vault tier in %s", time.Since(start).Round(time.Millisecond))
		got, err := ic.cs.CoreV1().PersistentVolumeClaims("blk").Get(ctx, "disk", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.VolumeMode == nil || *got.Spec.VolumeMode != block || got.Spec.DataSource != nil || !strings.HasPrefix(got.Annotations[volume.AnnVolumeData], "vault ") {
			t.Errorf("restored claim: mode %v, data source %+v, annotation %q; want a Block claim filled from the vault tier",
				got.Spec.VolumeMode, got.Spec.DataSource, got.Annotations[volume.AnnVolumeData])
		}
		reader := devicePod("blk", "reader", "disk", blockReadScript)
		// While a pod maps the device, the filter sees its loop devices:
		// the leak check at the end can fail.
		if during := loops(); len(during) < 2 {
			t.Errorf("loop devices of this cluster while the reader pod maps the claim: %q; want the driver's and the kubelet's", during)
		}
		if sum := sumIn("blk", reader.Name); sum != want {
			t.Errorf("the restored device's sha256 is %s, the written one %s", sum, want)
		}
		deletePod("blk", reader.Name)
	})

	t.Run("into a smaller Block claim: VolumeTooSmall", func(t *testing.T) {
		if _, err := ic.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "blk-small"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		blockClaim("blk-small", "disk", "16Mi")
		var handle string
		waitUntil(t, "claim blk-small/disk bound", time.Minute, func() bool {
			c, err := ic.cs.CoreV1().PersistentVolumeClaims("blk-small").Get(ctx, "disk", metav1.GetOptions{})
			if err != nil || c.Status.Phase != corev1.ClaimBound {
				return false
			}
			pv, err := ic.cs.CoreV1().PersistentVolumes().Get(ctx, c.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				return false
			}
			handle = pv.Spec.CSI.VolumeHandle
			return true
		})
		j := restore("blk-small", `  namespaceMappings: {blk: blk-small}
  conflictPolicy: Patch
  volumeDataSource: Vault`)
		var msg string
		for _, w := range j.Status.Warnings {
			if w.Code == volume.CodeVolumeTooSmall {
				msg = w.Message
			}
		}
		if msg == "" {
			t.Fatalf("restore into the smaller claim: %s %s warnings %+v items %+v", j.Status.Phase, j.Status.Message, j.Status.Warnings, j.Status.Items)
		}
		for _, w := range []string{"blk-small/disk", strconv.Itoa(16 << 20), strconv.Itoa(size)} {
			if !strings.Contains(msg, w) {
				t.Errorf("VolumeTooSmall does not name %s: %s", w, msg)
			}
		}
		if n := allocatedBytes(t, csi.BlockImage(handle)); n != 0 {
			t.Errorf("the refused claim's image has %d bytes allocated: something was written", n)
		}
		pods, _ := ic.cs.CoreV1().Pods("blk-small").List(ctx, metav1.ListOptions{})
		if len(pods.Items) != 0 {
			t.Errorf("pods left in blk-small: %d", len(pods.Items))
		}
	})

	// Every pod that published a block volume is gone: so are the loop
	// devices (the driver's and the kubelet's).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		after := loops()
		if slices.Equal(after, loopsBefore) {
			t.Logf("this cluster's loop devices (losetup -a), before and after: %q", after)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop devices leaked: losetup -a before %q, a minute after the last pod: %q", loopsBefore, after)
		}
	}
}

// loopDevices returns the lines of `losetup -a` whose backing file lies
// below one of dirs: the attached loop devices of one cluster.
func loopDevices(t *testing.T, dirs ...string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -a: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if slices.ContainsFunc(dirs, func(d string) bool { return d != "" && strings.Contains(l, d) }) {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

// allocatedBytes is the space path takes on disk.
func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// waitUntil polls ok every 250 ms until it holds, failing t after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

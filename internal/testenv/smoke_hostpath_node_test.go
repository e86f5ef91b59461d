package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/arca-backup/arca/internal/testenv/hostpath"
)

// writeFiles is what the writer pod runs in its PVC: files of several
// kinds, owners, modes and times, then it sleeps.
const writeFiles = `set -e
cd /data
echo "hello from the writer pod" > hello.txt
dd if=/dev/urandom of=random.bin bs=64k count=16 2>/dev/null
mkdir -p dir/sub
printf 'nested\n' > dir/sub/file
chmod 600 dir/sub/file
ln -s hello.txt link-to-hello
ln random.bin hardlink.bin
chown 1234:5678 random.bin
dd if=/dev/urandom of=sparse.img bs=4k count=1 seek=4096 2>/dev/null
touch -d '2024-01-02 03:04:05' hello.txt
sync
touch /tmp/written
exec sleep 3600
`

// describeFiles prints every entry's name, mode, owner, mtime, link count
// and symlink target, the allocated blocks of the sparse file, and the
// SHA-256 of every regular file: what two pods compare.
const describeFiles = `cd /data && find . | sort | while read -r f; do stat -c '%n %A %u:%g %Y %h %N' "$f"; done &&
stat -c 'sparse: %s bytes, %b blocks' sparse.img &&
find . -type f | sort | xargs sha256sum`

// TestHostPathCSIOnNodes is the test the driver exists for: a pod on one
// node writes files into a PVC, a VolumeSnapshot is taken, a PVC is made
// from it, and a pod on the other node mounts it (read-only) and sees the
// same files, checksums and metadata. Deleting the pods unpublishes the
// volumes.
func TestHostPathCSIOnNodes(t *testing.T) {
	start := time.Now()
	cp := StartControlPlane(t, ControlPlaneOptions{Nodes: 2})
	t.Logf("control plane with 2 nodes ready in %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	c := StartHostPathCSI(t, cp)
	t.Logf("hostpath CSI stack registered on both nodes in %s: %v", time.Since(start).Round(time.Millisecond), c.StartupTimes)
	app := AppImage(t, cp.Registry)
	cs := cp.Clientset(t)
	snaps := snapclient.NewForConfigOrDie(cp.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The kubelets registered the driver: their CSINode lists it with the
	// node's name as node ID.
	for _, n := range cp.Nodes {
		var ids []string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			csiNode, err := cs.StorageV1().CSINodes().Get(ctx, n.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			ids = nil
			for _, d := range csiNode.Spec.Drivers {
				if d.Name == HostPathDriverName {
					ids = append(ids, d.NodeID)
				}
			}
			return len(ids) > 0, nil
		})
		if err != nil || len(ids) != 1 || ids[0] != n.Name {
			t.Fatalf("CSINode %s lists driver %s with node IDs %v (%v), want [%s]", n.Name, HostPathDriverName, ids, err, n.Name)
		}
	}

	const ns = "default"
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("app-data", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC: %v", err)
	}
	start = time.Now()
	writer := podWithClaim("writer", cp.Nodes[0].Name, app, "app-data", false, writeFiles)
	// fsGroupPolicy File: the kubelet gives the volume to the pod's fsGroup.
	writer.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: new(int64(2000))}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, writer, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create writer pod: %v", err)
	}
	waitPodRunning(t, ctx, cs, ns, "writer")
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		out := execIn(t, cp.Config(), cs, ns, "writer", "app", "sh", "-c", "test -e /tmp/written && echo yes || echo no")
		return strings.TrimSpace(out) == "yes", nil
	}); err != nil {
		t.Fatalf("writer pod did not finish writing: %v", err)
	}
	written := execIn(t, cp.Config(), cs, ns, "writer", "app", "sh", "-c", describeFiles)
	t.Logf("writer pod on %s wrote its files in %s:\n%s", cp.Nodes[0].Name, time.Since(start).Round(time.Millisecond), written)
	for _, want := range []string{". drwxrwsrwx 0:2000", "./hello.txt -rw-r--r-- 0:2000 1704164645", "./random.bin -rw-r--r-- 1234:5678", "'./link-to-hello' -> 'hello.txt'", "sparse: 16781312 bytes, 8 blocks"} {
		if !strings.Contains(written, want) {
			t.Errorf("writer's listing lacks %q: the pod's files are not what it wrote", want)
		}
	}

	start = time.Now()
	snapshotAndWait(t, ctx, snaps, ns, "app-data-snap", "app-data")
	group := snapshotGroup
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("app-data-restored",
		&corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "app-data-snap"}), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC from snapshot: %v", err)
	}
	reader := podWithClaim("reader", cp.Nodes[1].Name, app, "app-data-restored", true, "exec sleep 3600")
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, reader, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create reader pod: %v", err)
	}
	waitPodRunning(t, ctx, cs, ns, "reader")
	read := execIn(t, cp.Config(), cs, ns, "reader", "app", "sh", "-c", describeFiles)
	t.Logf("snapshot, PVC from it and a reader pod on %s in %s", cp.Nodes[1].Name, time.Since(start).Round(time.Millisecond))
	if read != written {
		t.Errorf("the reader pod sees other files than the writer wrote:\nwriter:\n%s\nreader:\n%s", written, read)
	}
	if out := execIn(t, cp.Config(), cs, ns, "reader", "app", "sh", "-c", "touch /data/new 2>&1 || true"); !strings.Contains(out, "Read-only file system") {
		t.Errorf("write into a readOnly volume: %q, want Read-only file system", out)
	}
	// And on the host, attribute for attribute.
	noTreeDiffs(t, c.VolumeDir(volumeOf(t, ctx, cp, ns, "app-data")), c.VolumeDir(volumeOf(t, ctx, cp, ns, "app-data-restored")))

	// Deleting the pods unpublishes their volumes.
	for _, name := range []string{"writer", "reader"} {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatalf("delete pod %s: %v", name, err)
		}
	}
	var left []string
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		left, err = hostpath.Mounts(c.DataDir)
		return len(left) == 0, err
	}); err != nil {
		t.Fatalf("volumes still mounted after their pods were deleted: %q (%v)", left, err)
	}
}

// podWithClaim is a pod on node running script in the app image with the
// claim mounted at /data.
func podWithClaim(name, node, image, claimName string, readOnly bool, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": node},
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name:         "app",
				Image:        image,
				Command:      []string{"sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{
				Name: "data",
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
					ClaimName: claimName, ReadOnly: readOnly,
				}},
			}},
		},
	}
}

// Command demo is what `make demo` runs: it starts a real local cluster from
// internal/testenv (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, a node with kubelet, containerd and kube-proxy, and a CSI
// driver that keeps real bytes with the snapshot stack), deploys a sample
// application whose pod writes data into its volume, and drives the real
// arca binary through the product path: a vault on SQLite, the extension
// installed as a pod from the image `make image` built, a filesystem
// repository, trusted access, a policy and a backup instance, an on-demand
// backup, the loss of the application, a restore through the vault, and a
// verification that every object and every byte of the volume came back.
// It exits non-zero if anything is missing or different after the restore.
// --out-of-cluster runs the extension as a process beside a cluster without
// nodes (the mock CSI driver); --local drives `arca local backup/restore`
// instead (no vault, no extension).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/arca-backup/arca/internal/testenv"
)

const ns = "demo-shop"

func main() {
	arca := flag.String("arca", "bin/arca", "path of the arca binary to demonstrate")
	work := flag.String("work", "", "directory for the vault, repository, logs and kubeconfig (default: a new temporary directory, removed at the end)")
	local := flag.Bool("local", false, "use `arca local backup/restore` (engine in-process) instead of the vault and the extension")
	explicit := flag.Bool("explicit", false, "set up protection one command at a time (vault create, policy create, extension install, trusted-access enable, role assign, instance create, backup now) instead of `arca quickstart`")
	outOfCluster := flag.Bool("out-of-cluster", false, "run the extension as a process beside a cluster without nodes instead of as a pod on the node")
	imageArchive := flag.String("image", "bin/arca-image.tar", "the extension image `make image` built (docker-archive), pushed to the cluster's registry and installed")
	flag.Parse()

	t, cleanup := testenv.NewMainT("demo")
	err := run(t, options{arca: *arca, work: *work, local: *local, explicit: *explicit, inCluster: !*local && !*outOfCluster, image: *imageArchive})
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
}

// app is what the demo compares before and after: the user-visible content of
// each object, not server-populated fields.
type app struct {
	ConfigData map[string]string
	SecretData map[string][]byte
	Image      string
	Replicas   int32
	Ports      []corev1.ServicePort
	PVCSize    string
	PVCPhase   corev1.PersistentVolumeClaimPhase
	SAName     string
}

func (a *app) diff(b *app) string {
	if !reflect.DeepEqual(a.ConfigData, b.ConfigData) {
		return "config map data differs"
	}
	if !reflect.DeepEqual(a.SecretData, b.SecretData) {
		return "secret data differs"
	}
	if a.Image != b.Image || a.Replicas != b.Replicas {
		return fmt.Sprintf("deployment differs: %s×%d vs %s×%d", a.Image, a.Replicas, b.Image, b.Replicas)
	}
	if len(a.Ports) != len(b.Ports) || (len(a.Ports) > 0 && (a.Ports[0].Port != b.Ports[0].Port || a.Ports[0].TargetPort != b.Ports[0].TargetPort)) {
		return "service ports differ"
	}
	if a.PVCSize != b.PVCSize || b.PVCPhase != corev1.ClaimBound {
		return fmt.Sprintf("PVC differs: %s %s vs %s %s", a.PVCSize, a.PVCPhase, b.PVCSize, b.PVCPhase)
	}
	if a.SAName != b.SAName {
		return "service account missing"
	}
	return ""
}

func capture(ctx context.Context, cs kubernetes.Interface) (*app, error) {
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "shop-config", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "shop-db", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "shop-web", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "shop-web", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "shop-data", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sa, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	return &app{
		ConfigData: cm.Data,
		SecretData: sec.Data,
		Image:      dep.Spec.Template.Spec.Containers[0].Image,
		Replicas:   ptr.Deref(dep.Spec.Replicas, 1),
		Ports:      svc.Spec.Ports,
		PVCSize:    size.String(),
		PVCPhase:   pvc.Status.Phase,
		SAName:     sa.Name,
	}, nil
}

func deploy(ctx context.Context, cs kubernetes.Interface, storageClass string) error {
	labels := map[string]string{"app": "shop", "tier": "web"}
	create := []func() error{
		func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "shop-config", Labels: labels},
				Data:       map[string]string{"currency": "EUR", "catalog.json": `{"items":["tea","coffee"]}`},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "shop-db"},
				Data:       map[string][]byte{"password": []byte("s3cr3t-demo")},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: "shop-data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: &storageClass,
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "shop-web", Labels: labels},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](2),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{
							ServiceAccountName: "shop",
							Containers: []corev1.Container{{
								Name: "web", Image: "registry.example/shop-web:1.4.2",
								Ports:        []corev1.ContainerPort{{ContainerPort: 8080}},
								VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
							}},
							Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
								PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shop-data"}}}},
						},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "shop-web", Labels: labels},
				Spec: corev1.ServiceSpec{
					Selector: labels,
					Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
				},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, f := range create {
		if err := f(); err != nil {
			return err
		}
	}
	// Wait for the PVC to bind so that the backup sees a bound claim and its PV.
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "shop-data", metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, nil
	})
}

// verifyVolumeFromSnapshot checks that the restored claim was provisioned
// from a VolumeSnapshot (arca re-creates it from the recorded snapshot
// handle) and that the driver made its new volume from that snapshot.
func verifyVolumeFromSnapshot(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, csi *testenv.CSI) error {
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "shop-data", metav1.GetOptions{})
	if err != nil {
		return err
	}
	src := pvc.Spec.DataSource
	if src == nil || src.Kind != "VolumeSnapshot" || src.APIGroup == nil || *src.APIGroup != "snapshot.storage.k8s.io" {
		return fmt.Errorf("restored PVC's dataSource is %+v, want a VolumeSnapshot", src)
	}
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	vols, err := csi.Controller.ListVolumes(ctx, &csipb.ListVolumesRequest{})
	if err != nil {
		return err
	}
	// The snapshot handle arca restored from: VolumeSnapshot → its
	// pre-provisioned content → spec.source.snapshotHandle.
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	vs, err := snaps.SnapshotV1().VolumeSnapshots(ns).Get(ctx, src.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if vs.Spec.Source.VolumeSnapshotContentName == nil {
		return fmt.Errorf("VolumeSnapshot %s is not pre-provisioned", vs.Name)
	}
	content, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, *vs.Spec.Source.VolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	handle := ptr.Deref(content.Spec.Source.SnapshotHandle, "")
	// The mock driver reports a volume's snapshot source as the index of
	// the snapshot in its list, not its ID.
	list, err := csi.Controller.ListSnapshots(ctx, &csipb.ListSnapshotsRequest{})
	if err != nil {
		return err
	}
	for _, e := range vols.GetEntries() {
		if v := e.GetVolume(); v.GetVolumeId() == pv.Spec.CSI.VolumeHandle {
			idx := v.GetContentSource().GetSnapshot().GetSnapshotId()
			var i int
			if _, err := fmt.Sscanf(idx, "%d", &i); err != nil || i < 0 || i >= len(list.GetEntries()) {
				return fmt.Errorf("volume %s has no snapshot content source (%q)", v.GetVolumeId(), idx)
			}
			if got := list.GetEntries()[i].GetSnapshot().GetSnapshotId(); got != handle {
				return fmt.Errorf("volume %s was created from snapshot %s, want %s", v.GetVolumeId(), got, handle)
			}
			fmt.Printf("    PVC %s/%s bound to %s: volume %s created from snapshot %s (VolumeSnapshot %s, content %s)\n",
				ns, pvc.Name, pv.Name, v.GetVolumeId(), handle, vs.Name, content.Name)
			return nil
		}
	}
	return fmt.Errorf("driver has no volume %s", pv.Spec.CSI.VolumeHandle)
}

func indent(out []byte) string {
	if len(out) == 0 {
		return ""
	}
	return "    " + string(bytes.ReplaceAll(bytes.TrimRight(out, "\n"), []byte("\n"), []byte("\n    "))) + "\n"
}

package extension_test

import (
	"context"
	"fmt"
	mrand "math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
	"github.com/arca-backup/arca/internal/volumedata"
)

// BenchmarkVaultRestorePod measures the restore pod path of the vault
// tier on a real node (`make bench-vault-restore`): a claim of
// ARCA_BENCH_RESTORE_BYTES (default 512 MiB) of mixed file sizes (by count
// 60 % 1–64 KiB, 30 % 64 KiB–4 MiB, 10 % 4–64 MiB; half random, half a
// small alphabet) is stored in the repository (MinIO on the host,
// compression and encryption on), its snapshot and namespace deleted, and
// restored by a RestoreJob: the restore pod's time is from its creation
// until it is seen Succeeded (polled every 100 ms; image already on the
// node). Raw write: a pod on the same node, created the same way, copies
// the restored tree (its pages cached by the restore) into a new claim of
// the same class with `cp -a` and `sync`, once without a memory limit and
// once with the restore pod's 256Mi (a cgroup's page cache counts against
// its limit). Printed: the rates and the ratios (goal ≥ 0.5).
func BenchmarkVaultRestorePod(b *testing.B) {
	size := int64(512 << 20)
	if v, err := strconv.ParseInt(os.Getenv("ARCA_BENCH_RESTORE_BYTES"), 10, 64); err == nil && v > 0 {
		size = v
	}
	b.Setenv("AWS_ACCESS_KEY_ID", "")
	b.Setenv("AWS_SECRET_ACCESS_KEY", "")
	cp := testenv.StartControlPlane(b, testenv.ControlPlaneOptions{Nodes: 1})
	csi := testenv.StartHostPathCSI(b, cp)
	ctx := context.Background()
	if err := extension.InstallCRDs(ctx, cp.Config()); err != nil {
		b.Fatal(err)
	}
	app := testenv.AppImage(b, cp.Registry)
	image := testenv.ExtensionImage(b, cp.Registry)
	m := testenv.StartMinIO(b, testenv.OnHost(cp.HostIP))
	m.MakeBucket(b, "arca")
	url := fmt.Sprintf("s3://arca/bench?endpoint=%s&tls=false&path-style=true&region=us-east-1", m.Endpoint)
	cfg := cp.Config()
	cs := kubernetes.NewForConfigOrDie(cfg)
	c, err := client.New(cfg, client.Options{Scheme: extension.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	must := func(err error) {
		b.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			b.Fatal(err)
		}
	}
	for _, ns := range []string{"arca-system", "bench"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must(err)
	}
	_, err = cs.CoreV1().Secrets("arca-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "minio"},
		StringData: map[string]string{v1alpha1.SecretKeyPassword: password, v1alpha1.SecretKeyAWSAccessKeyID: m.AccessKey,
			v1alpha1.SecretKeyAWSSecretAccessKey: m.SecretKey}}, metav1.CreateOptions{})
	must(err)
	must(c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "arca-system"},
		Spec: v1alpha1.StorageLocationSpec{URL: url, CredentialsSecret: "minio"}}))
	mgr, err := extension.NewManager(cfg, extension.Options{Namespace: "arca-system", MetricsAddr: "0", ProbeAddr: "0",
		StatusInterval: 200 * time.Millisecond, DataMoverImage: image, Executor: &recorder{}})
	if err != nil {
		b.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	b.Cleanup(func() { stop(); <-done })

	class := csi.StorageClass
	newClaim := func(ns, name string) {
		_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(size*2, resource.BinarySI)}}}},
			metav1.CreateOptions{})
		must(err)
	}
	poll := func(what string, timeout time.Duration, cond func() bool) {
		b.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("timed out after %s waiting for %s", timeout, what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	newClaim("bench", "data")
	var handle string
	poll("claim bound", time.Minute, func() bool {
		p, err := cs.CoreV1().PersistentVolumeClaims("bench").Get(ctx, "data", metav1.GetOptions{})
		if err != nil || p.Spec.VolumeName == "" {
			return false
		}
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, p.Spec.VolumeName, metav1.GetOptions{})
		if err != nil || pv.Spec.CSI == nil {
			return false
		}
		handle = pv.Spec.CSI.VolumeHandle
		return p.Status.Phase == corev1.ClaimBound
	})
	// The data, written straight into the volume's directory on the host.
	dir := csi.VolumeDir(handle)
	rnd := mrand.New(mrand.NewSource(1))
	var files, written int64
	for written < size {
		n := int64(mixedSize(rnd))
		n = min(n, size-written)
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", files/200))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d", files)), fileContent(rnd, int(n)), 0o644); err != nil {
			b.Fatal(err)
		}
		files++
		written += n
	}
	b.Logf("data: %d files, %.1f MiB in %s", files, float64(written)/(1<<20), dir)

	apply := func(obj client.Object) { must(c.Create(ctx, obj)) }
	apply(&v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: "arca-system"},
		Spec: v1alpha1.BackupJobSpec{StorageLocation: "default", BackupConfiguration: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"bench"}},
			SnapshotClasses: []string{csi.SnapshotClass}}})
	bj := &v1alpha1.BackupJob{}
	poll("backup", 5*time.Minute, func() bool {
		_ = c.Get(ctx, types.NamespacedName{Namespace: "arca-system", Name: "bench"}, bj)
		return bj.Status.Phase.Terminal()
	})
	if bj.Status.Phase != v1alpha1.JobCompleted {
		b.Fatalf("backup: %s %s", bj.Status.Phase, bj.Status.Message)
	}
	be, err := location.OpenWith(ctx, url, location.Credentials{AWSAccessKeyID: m.AccessKey, AWSSecretAccessKey: m.SecretKey}, location.Options{})
	if err != nil {
		b.Fatal(err)
	}
	r, err := repo.Open(ctx, be, password)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	rp, err := r.FindRecoveryPoint(ctx, bj.Status.RecoveryPointID)
	if err != nil {
		b.Fatal(err)
	}
	w, err := r.NewWriter(ctx)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	res, err := volumedata.Backup(ctx, w, dir, volumedata.BackupOptions{Name: "bench/data"})
	if err != nil {
		b.Fatal(err)
	}
	point := *rp
	point.VolumeData = []repo.VolumeData{res.Volume}
	id, err := w.Commit(ctx, &point)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("stored in %s (%d files, %d bytes, %d new)", time.Since(start).Round(time.Millisecond), res.Volume.Files, res.Volume.Bytes, res.Volume.NewBytes)
	recs, err := volume.Decode(rp.Volumes)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := volume.DeleteSnapshots(ctx, snapclient.NewForConfigOrDie(cfg), recs, volume.DeleteOptions{}); err != nil {
		b.Fatal(err)
	}
	must(cs.CoreV1().Namespaces().Delete(ctx, "bench", metav1.DeleteOptions{}))
	poll("namespace bench gone", 3*time.Minute, func() bool {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "bench", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})

	// podTime is how long a pod took from its creation until it was seen Succeeded.
	podTime := func(ns, selector string, timeout time.Duration) time.Duration {
		var created time.Time
		var took time.Duration
		poll("pod "+selector, timeout, func() bool {
			l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil || len(l.Items) == 0 {
				return false
			}
			if created.IsZero() {
				created = time.Now()
			}
			switch l.Items[0].Status.Phase {
			case corev1.PodSucceeded:
				took = time.Since(created)
				return true
			case corev1.PodFailed:
				b.Fatalf("pod %s failed: %+v", l.Items[0].Name, l.Items[0].Status)
			}
			return false
		})
		return took
	}
	b.ResetTimer()
	apply(&v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: "arca-system"},
		Spec: v1alpha1.RestoreJobSpec{StorageLocation: "default", RecoveryPoint: id.String(),
			RestoreCriteria: v1alpha1.RestoreCriteria{IncludedNamespaces: []string{"bench"}}}})
	jobStart := time.Now()
	restoreTook := podTime("bench", volume.LabelComponent+"=volume-restore", 30*time.Minute)
	rj := &v1alpha1.RestoreJob{}
	poll("restore", 30*time.Minute, func() bool {
		_ = c.Get(ctx, types.NamespacedName{Namespace: "arca-system", Name: "bench"}, rj)
		return rj.Status.Phase.Terminal()
	})
	jobTook := time.Since(jobStart)
	b.StopTimer()
	if rj.Status.Phase != v1alpha1.JobCompleted {
		b.Fatalf("restore: %s %s %+v", rj.Status.Phase, rj.Status.Message, rj.Status.Items)
	}

	// Raw write: the same bytes copied by a pod into a new claim.
	_, err = cs.CoreV1().ServiceAccounts("bench").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	must(err)
	// rawPod copies the restored tree into a new claim in a pod, with the
	// restore pod's memory limit when limited (page cache counts against a
	// cgroup's limit), and returns how long it took.
	rawPod := func(name string, limited bool) time.Duration {
		newClaim("bench", name)
		ctr := corev1.Container{Name: "cp", Image: app, Command: []string{"sh", "-c", "cp -a /src/. /dst/ && sync"},
			VolumeMounts: []corev1.VolumeMount{{Name: "src", MountPath: "/src"}, {Name: "dst", MountPath: "/dst"}}}
		if limited {
			ctr.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
		}
		_, err := cs.CoreV1().Pods("bench").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": name}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{ctr},
				Volumes: []corev1.Volume{
					{Name: "src", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
					{Name: "dst", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}}},
			metav1.CreateOptions{})
		must(err)
		return podTime("bench", "bench="+name, 30*time.Minute)
	}
	rawTook := rawPod("raw", false)
	rawLimitedTook := rawPod("raw-limited", true)
	mib := float64(written) / (1 << 20)
	restoreRate, rawRate := mib/restoreTook.Seconds(), mib/rawTook.Seconds()
	b.ReportMetric(restoreRate, "restore-MiB/s")
	b.ReportMetric(rawRate, "raw-MiB/s")
	b.ReportMetric(restoreRate/rawRate, "restore/raw")
	limitedRate := mib / rawLimitedTook.Seconds()
	fmt.Printf("vault-tier restore pod: %d files, %.1f MiB: restore pod %s (%.1f MiB/s; RestoreJob %s), raw write pod %s (%.1f MiB/s): restore ÷ raw write = %.2f; "+
		"raw write pod with the restore pod's 256Mi limit %s (%.1f MiB/s): restore ÷ that = %.2f\n",
		files, mib, restoreTook.Round(time.Millisecond), restoreRate, jobTook.Round(time.Millisecond), rawTook.Round(time.Millisecond), rawRate, restoreRate/rawRate,
		rawLimitedTook.Round(time.Millisecond), limitedRate, restoreRate/limitedRate)
}

// mixedSize: by count 60 % 1–64 KiB, 30 % 64 KiB–4 MiB, 10 % 4–64 MiB.
func mixedSize(rnd *mrand.Rand) int {
	switch p := rnd.Intn(100); {
	case p < 60:
		return 1<<10 + rnd.Intn(63<<10)
	case p < 90:
		return 64<<10 + rnd.Intn(4<<20)
	default:
		return 4<<20 + rnd.Intn(60<<20)
	}
}

// fileContent is half random, half a small alphabet (compression finds
// something to do, far from everything).
func fileContent(rnd *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	rnd.Read(b)
	for off := 0; off < n; off += 8192 {
		end := min(off+4096, n)
		for i := off; i < end; i++ {
			b[i] = 'a' + b[i]%8
		}
	}
	return b
}

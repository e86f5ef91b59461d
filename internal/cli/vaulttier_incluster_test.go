package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

// TestVaultTierInCluster runs the vault tier's data mover the way users
// run it: the extension installed as a pod from the project's image, a
// BackupJob with spec.vaultTier, the hostpath CSI driver holding real bytes
// and MinIO as the repository. The mover pods (the same image, `arca
// datamover backup`) read a claim provisioned from each snapshot:
//   - a volume of mixed files (symlinks, a hard link, a sparse file, a file
//     only its owner may read) lands in the recovery point's VolumeData and
//     restores byte for byte with owner, mode and times; no holder point and
//     no temporary object is left;
//   - the second backup of the unchanged volume writes at most 1% new bytes;
//   - a mover pod deleted mid-copy fails the job with VolumeMoverFailed after
//     status reported bytes, rate and ETA; spec.cancel stops a move; neither
//     writes a recovery point or leaves a temporary claim or pod;
//   - the identity mover pods run as (no token, namespace default account)
//     cannot read the storage credentials;
//   - peak memory of a mover pod (its cgroup) and throughput against a raw
//     read of the same files are printed (BENCH lines, docs/benchmarks.md);
//   - a block-mode claim (the hostpath driver's loop device) goes to the
//     vault tier as one stream and comes back from the repository alone,
//     its device's SHA-256 equal; a smaller Block claim is refused with
//     VolumeTooSmall; no loop device is left (vaultTierBlock);
//   - the extension is installed with --storage-retry 10s, which its
//     restore pods get: MinIO stopped as soon as a vault-tier restore's pod
//     exists fails the job with RepositoryUnavailable naming the claim and
//     the location, before the workloads (the Deployment on the claim is
//     not created), and leaves no pod or Secret copy;
//   - last, a vault-tier backup with spec.copyTo is copied to a second MinIO
//     (its own repository password); the primary MinIO is stopped and a
//     RestoreJob with spec.fallbackStorageLocation restores the namespace
//     into another one from the copy, volume byte for byte from the copy's
//     vault-tier data, with warning RestoredFromSecondary.
func TestVaultTierInCluster(t *testing.T) {
	ic := newInCluster(t)
	ctx := t.Context()
	csi := testenv.StartHostPathCSI(t, ic.cp)
	// A short storage retry budget (10 attempts over about 3 minutes by
	// default), so that a restore whose repository goes away fails within
	// the test's patience.
	out, err := ic.arca("extension", "install", "--storage", "file://"+filepath.Join(t.TempDir(), "repo"), "--password-file", ic.pw, "--image", ic.image,
		"--storage-retry", "10s", "--timeout", "4m")
	if err != nil {
		t.Fatalf("install: %v\n%s\n%s", err, out, ic.extensionLog())
	}
	m := testenv.StartMinIO(t, testenv.OnHost(ic.cp.HostIP))
	m.MakeBucket(t, "vault")
	url := fmt.Sprintf("s3://vault/repo?endpoint=%s&tls=false&path-style=true&region=us-east-1", m.Endpoint)
	ic.s3Location("minio", url, "in-cluster-password", m)
	// The host reads the same repository to check what the pods wrote.
	t.Setenv(PasswordEnv, "in-cluster-password")
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	points := func() []*repo.RecoveryPoint {
		t.Helper()
		be, err := location.OpenWith(ctx, url, location.Credentials{}, location.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := repo.Open(ctx, be, "in-cluster-password")
		if err != nil {
			t.Fatal(err)
		}
		rps, err := r.ListRecoveryPoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rps
	}
	backup := func(name, ns string) *v1alpha1.BackupJob {
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: %s, namespace: arca-system}
spec: {storageLocation: minio, includedNamespaces: [%s], vaultTier: true}
`, name, ns))
		return &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1alpha1.ExtensionNamespace}}
	}
	snaps := snapclient.NewForConfigOrDie(ic.cp.Config())
	noLeftovers := func(what string) {
		t.Helper()
		sel := metav1.ListOptions{LabelSelector: v1alpha1.LabelDataMover}
		var left []string
		deadline := time.Now().Add(time.Minute)
		for {
			left = nil
			pods, err1 := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).List(ctx, sel)
			pvcs, err2 := ic.cs.CoreV1().PersistentVolumeClaims(v1alpha1.ExtensionNamespace).List(ctx, sel)
			vss, err3 := snaps.SnapshotV1().VolumeSnapshots(v1alpha1.ExtensionNamespace).List(ctx, sel)
			vscs, err4 := snaps.SnapshotV1().VolumeSnapshotContents().List(ctx, sel)
			for _, err := range []error{err1, err2, err3, err4} {
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range pods.Items {
				left = append(left, "pod "+p.Name)
			}
			for _, p := range pvcs.Items {
				left = append(left, "claim "+p.Name)
			}
			for _, s := range vss.Items {
				left = append(left, "snapshot "+s.Name)
			}
			for _, c := range vscs.Items {
				left = append(left, "content "+c.Name)
			}
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the data mover left %v", what, left)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	src := ic.claimWithFiles(csi, "files", "data", "1Gi", writeMixedFiles)
	want := treeListing(t, src)
	// A workload on the claim, for a restore to create after the claim's
	// data or not at all. No replica: what counts is whether a restore
	// creates the Deployment, and no pod mounts the claim meanwhile.
	ic.workloadOn("files", "data")

	var first *repo.VolumeData
	var firstPoint string
	t.Run("mixed files byte for byte", func(t *testing.T) {
		bj := backup("vault-1", "files")
		if st := ic.waitJob(bj, 4*time.Minute); st.Phase != v1alpha1.JobCompleted {
			t.Fatalf("vault-tier backup: %+v\n%s", bj.Status, ic.extensionLog())
		}
		if c := bj.Status.Counts; c["volumesMoved"] != 1 || c["volumeFiles"] < 40 || c["volumeNewBytes"] == 0 {
			t.Errorf("status counts %v", c)
		}
		rps := points()
		if len(rps) != 1 || rps[0].ID.String() != bj.Status.RecoveryPointID {
			t.Fatalf("recovery points %d: want only the backup's (the mover's holder forgotten)", len(rps))
		}
		rp := rps[0]
		if len(rp.VolumeData) != 1 || rp.VolumeData[0].Name != "files/data" || rp.VolumeData[0].Bytes < 4<<20 || rp.VolumeData[0].DurationSeconds <= 0 {
			t.Fatalf("volume data %+v", rp.VolumeData)
		}
		first = &rp.VolumeData[0]
		firstPoint = bj.Status.RecoveryPointID
		// The snapshot records stay as they are: the operational tier.
		if !strings.Contains(string(rp.Volumes), `"pvc":"data"`) {
			t.Errorf("snapshot records %s", rp.Volumes)
		}
		noLeftovers("after a backup")
		target := filepath.Join(t.TempDir(), "restored")
		if out, err := runArca(ctx, "datamover", "restore", "--repo", url, "--recovery-point", bj.Status.RecoveryPointID, "--volume", "files/data", "--target", target); err != nil {
			t.Fatalf("restore from the vault tier: %v\n%s", err, out)
		}
		if got := treeListing(t, target); got != want {
			t.Fatalf("restored volume differs.\nwant:\n%s\ngot:\n%s", want, got)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(target, "sparse"), &st); err != nil || st.Blocks*512 > 1<<20 {
			t.Errorf("sparse file restored with %d bytes allocated (%v): holes not kept", st.Blocks*512, err)
		}
	})

	t.Run("unchanged volume writes at most 1%", func(t *testing.T) {
		if first == nil {
			t.Skip("needs the first backup")
		}
		bj := backup("vault-2", "files")
		if st := ic.waitJob(bj, 4*time.Minute); st.Phase != v1alpha1.JobCompleted {
			t.Fatalf("second backup: %+v\n%s", bj.Status, ic.extensionLog())
		}
		newBytes := bj.Status.Counts["volumeNewBytes"]
		t.Logf("BENCH mover unchanged volume: first %d bytes (%d new), second %d new (%.3f%%)", first.Bytes, first.NewBytes, newBytes, 100*float64(newBytes)/float64(first.NewBytes))
		if newBytes*100 > first.NewBytes {
			t.Errorf("second backup of the unchanged volume wrote %d new bytes, first %d: more than 1%%", newBytes, first.NewBytes)
		}
	})

	t.Run("mover identity refused the credentials", func(t *testing.T) {
		// Mover pods mount no token; were one mounted, it would be the
		// namespace's default account, which reads no Secret.
		sa := ic.cp.ServiceAccountConfig(t, v1alpha1.ExtensionNamespace, "default")
		cs, err := client.New(sa, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = cs.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ExtensionNamespace, Name: "minio-creds"}, &corev1.Secret{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("default account read the storage secret: %v", err)
		}
	})

	t.Run("block-mode volume", func(t *testing.T) {
		ic.vaultTierBlock(t, csi, "minio", func(id string) *repo.RecoveryPoint {
			for _, rp := range points() {
				if rp.ID.String() == id {
					return rp
				}
			}
			t.Fatalf("recovery point %s not in the repository", id)
			return nil
		})
	})

	big := ic.claimWithFiles(csi, "big", "data", "2Gi", writeBigFiles)
	moverPod := func() *corev1.Pod {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			l, err := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelDataMover})
			if err != nil {
				t.Fatal(err)
			}
			for i := range l.Items {
				if l.Items[i].Status.Phase == corev1.PodRunning {
					return &l.Items[i]
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no running mover pod\n%s", ic.extensionLog())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("mover pod killed mid-copy", func(t *testing.T) {
		before := len(points())
		bj := backup("vault-killed", "big")
		pod := moverPod()
		// Status reports the bytes moved, the rate and the ETA first.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if err := ic.c.Get(ctx, client.ObjectKeyFromObject(bj), bj); err != nil {
				t.Fatal(err)
			}
			if p := bj.Status.Progress; p != nil && p.BytesDone > 0 && p.BytesPerSecond > 0 && p.BytesTotal > p.BytesDone {
				t.Logf("progress before the kill: %+v", *p)
				if p.ETASeconds <= 0 {
					t.Errorf("progress %+v: no ETA", *p)
				}
				break
			}
			if bj.Status.Phase.Terminal() || time.Now().After(deadline) {
				t.Fatalf("no progress in bytes while the mover ran: %+v", bj.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := ic.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		st := ic.waitJob(bj, 3*time.Minute)
		if st.Phase != v1alpha1.JobFailed || len(st.Errors) == 0 || st.Errors[0].Code != v1alpha1.CodeVolumeMoverFailed ||
			!strings.Contains(st.Errors[0].Message, "big/data") || !strings.Contains(st.Errors[0].Message, "deleted before it finished") {
			t.Fatalf("killed mover: %+v", st)
		}
		if after := len(points()); after != before {
			t.Errorf("recovery points %d → %d after the mover was killed", before, after)
		}
		noLeftovers("after a killed mover")
	})

	t.Run("cancel stops the movers", func(t *testing.T) {
		before := len(points())
		bj := backup("vault-cancelled", "big")
		moverPod()
		if err := ic.c.Patch(ctx, bj, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"cancel":true}}`))); err != nil {
			t.Fatal(err)
		}
		if st := ic.waitJob(bj, 3*time.Minute); st.Phase != v1alpha1.JobCancelled {
			t.Fatalf("cancelled vault-tier backup: %+v", st)
		}
		if after := len(points()); after != before {
			t.Errorf("recovery points %d → %d after a cancel", before, after)
		}
		noLeftovers("after a cancel")
	})

	t.Run("peak memory and throughput", func(t *testing.T) {
		bj := backup("vault-bench", "big")
		pod := moverPod()
		node := ic.cp.Nodes[0]
		var peak int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				dir, err := node.PodCgroupDir("memory", string(pod.UID))
				if err != nil {
					return // the pod is gone
				}
				b, err := os.ReadFile(filepath.Join(dir, "memory.max_usage_in_bytes"))
				if err != nil {
					return
				}
				if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > peak {
					peak = v
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		if st := ic.waitJob(bj, 5*time.Minute); st.Phase != v1alpha1.JobCompleted {
			t.Fatalf("backup of the big volume: %+v\n%s", st, ic.extensionLog())
		}
		<-done
		var vd *repo.VolumeData
		for _, rp := range points() {
			if rp.ID.String() == bj.Status.RecoveryPointID {
				vd = &rp.VolumeData[0]
			}
		}
		if vd == nil {
			t.Fatal("the big volume's point has no volume data")
		}
		start := time.Now()
		raw := rawRead(t, big)
		rawSecs := time.Since(start).Seconds()
		moverRate := float64(vd.Bytes) / vd.DurationSeconds
		rawRate := float64(raw) / rawSecs
		t.Logf("BENCH mover pod: %d files, %d bytes in %.2fs = %.1f MiB/s; raw read %.1f MiB/s; ratio %.2f; peak memory %.1f MiB (cgroup memory.max_usage_in_bytes, limit 256 MiB)",
			vd.Files, vd.Bytes, vd.DurationSeconds, moverRate/(1<<20), rawRate/(1<<20), moverRate/rawRate, float64(peak)/(1<<20))
		if peak == 0 || peak > 256<<20 {
			t.Errorf("mover peak memory %d bytes: not measured or above 256 MiB", peak)
		}
	})

	whole := t // MinIO restarts for the rest of the test, not for this subtest
	t.Run("repository unreachable mid-restore: the restore stops before the workloads", func(t *testing.T) {
		if firstPoint == "" {
			t.Skip("needs the first backup")
		}
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: repo-down, namespace: arca-system}
spec:
  recoveryPoint: %s
  storageLocation: minio
  includedNamespaces: [files]
  namespaceMappings: {files: files-u}
  volumeDataSource: Vault
`, firstPoint))
		// MinIO stops as soon as the restore pod exists, so the pod loses
		// the repository at its start or while it copies.
		var pod *corev1.Pod
		waitUntil(t, "a restore pod in files-u", 3*time.Minute, func() bool {
			pods, err := ic.cs.CoreV1().Pods("files-u").List(ctx, metav1.ListOptions{LabelSelector: volume.LabelComponent + "=volume-restore"})
			if err != nil || len(pods.Items) == 0 {
				return false
			}
			pod = &pods.Items[0]
			return true
		})
		stopped := time.Now()
		m.Stop()
		defer m.Restart(whole)
		// The budget install set reached the pod through the extension.
		if args := strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(args, "--storage-retry 10s ") {
			t.Errorf("restore pod arguments %q: want the installed --storage-retry 10s", args)
		}
		rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "repo-down", Namespace: v1alpha1.ExtensionNamespace}}
		st := ic.waitJob(rj, 5*time.Minute)
		t.Logf("the restore ended %s after MinIO stopped: %s %s", time.Since(stopped).Round(time.Second), st.Phase, st.Message)
		if st.Phase != v1alpha1.JobFailed || len(st.Errors) == 0 || st.Errors[0].Code != v1alpha1.CodeRepositoryUnavailable ||
			!strings.Contains(st.Errors[0].Message, `storage location "minio"`) || !strings.Contains(st.Errors[0].Message, "claim files-u/data") {
			t.Fatalf("restore with the repository down: %s %s %+v\n%s", st.Phase, st.Message, st.Errors, ic.extensionLog())
		}
		if _, err := ic.cs.AppsV1().Deployments("files-u").Get(ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the Deployment was created on a claim without its data (%v)", err)
		}
		pods, _ := ic.cs.CoreV1().Pods("files-u").List(ctx, metav1.ListOptions{})
		secs, _ := ic.cs.CoreV1().Secrets("files-u").List(ctx, metav1.ListOptions{LabelSelector: volume.LabelComponent + "=volume-restore"})
		if len(pods.Items) != 0 || len(secs.Items) != 0 {
			t.Errorf("after the restore stopped: pods %d and restore secret copies %d left in files-u", len(pods.Items), len(secs.Items))
		}
	})

	// Last: it stops the primary's MinIO.
	t.Run("copy to a secondary, restore from it while the primary is down", func(t *testing.T) {
		// The secondary: another MinIO (another region or provider) with
		// its own repository password.
		m2 := testenv.StartMinIO(t, testenv.OnHost(ic.cp.HostIP))
		m2.MakeBucket(t, "secondary")
		drURL := fmt.Sprintf("s3://secondary/repo?endpoint=%s&tls=false&path-style=true&region=us-east-1", m2.Endpoint)
		ic.s3Location("dr", drURL, "the-secondary-has-its-own-password", m2)
		ic.apply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: vault-copied, namespace: arca-system}
spec: {storageLocation: minio, includedNamespaces: [files], vaultTier: true, copyTo: dr}
`)
		bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "vault-copied", Namespace: v1alpha1.ExtensionNamespace}}
		if st := ic.waitJob(bj, 4*time.Minute); st.Phase != v1alpha1.JobCompleted || bj.Status.CopiedRecoveryPointID == "" {
			t.Fatalf("vault-tier backup with copyTo: %+v\n%s", bj.Status, ic.extensionLog())
		}
		// The primary goes down.
		m.Process.Stop()
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: from-secondary, namespace: arca-system}
spec:
  recoveryPoint: %s
  storageLocation: minio
  fallbackStorageLocation: dr
  includedNamespaces: [files]
  namespaceMappings: {files: files-dr}
  volumeDataSource: Vault
`, bj.Status.RecoveryPointID))
		rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "from-secondary", Namespace: v1alpha1.ExtensionNamespace}}
		st := ic.waitJob(rj, 5*time.Minute)
		if st.Phase != v1alpha1.JobCompletedWithWarnings || rj.Status.RecoveryPointID != bj.Status.CopiedRecoveryPointID {
			t.Fatalf("restore from the secondary: %s, point %s (copy %s): %s %+v %+v\n%s", st.Phase, rj.Status.RecoveryPointID,
				bj.Status.CopiedRecoveryPointID, st.Message, st.Warnings, st.Errors, ic.extensionLog())
		}
		used := false
		for _, w := range st.Warnings {
			if w.Code == v1alpha1.CodeRestoredFromSecondary && strings.Contains(w.Message, `"minio"`) && strings.Contains(w.Message, `"dr"`) {
				used = true
			}
		}
		if !used {
			t.Fatalf("no RestoredFromSecondary warning naming both locations: %+v", st.Warnings)
		}
		// The volume came back from the copy's vault-tier data, byte for byte.
		pvc, err := ic.cs.CoreV1().PersistentVolumeClaims("files-dr").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pv, err := ic.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("restored claim %+v: %v", pvc.Status, err)
		}
		if got := treeListing(t, csi.VolumeDir(pv.Spec.CSI.VolumeHandle)); got != want {
			t.Fatalf("volume restored from the secondary differs.\nwant:\n%s\ngot:\n%s", want, got)
		}
		// A restore that completes does create the workload on the claim
		// (which the outage's restore must not).
		if _, err := ic.cs.AppsV1().Deployments("files-dr").Get(ctx, "app", metav1.GetOptions{}); err != nil {
			t.Errorf("the Deployment on the claim was not restored into files-dr: %v", err)
		}
	})
}

// workloadOn creates Deployment "app" in ns, with no replica, whose pod
// would mount claim.
func (ic *inCluster) workloadOn(ns, claim string) {
	t := ic.t
	t.Helper()
	labels := map[string]string{"app": "app"}
	if _, err := ic.cs.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: appsv1.DeploymentSpec{Replicas: new(int32(0)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: testenv.AppImage(t, ic.cp.Registry), Command: []string{"sleep", "1000000"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
			}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// s3Location creates StorageLocation name for url on MinIO m in
// arca-system, and its Secret (name-creds: the repository password and m's
// keys).
func (ic *inCluster) s3Location(name, url, password string, m *testenv.MinIO) {
	t := ic.t
	t.Helper()
	if _, err := ic.cs.CoreV1().Secrets(v1alpha1.ExtensionNamespace).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-creds"},
		StringData: map[string]string{v1alpha1.SecretKeyPassword: password,
			v1alpha1.SecretKeyAWSAccessKeyID: m.AccessKey, v1alpha1.SecretKeyAWSSecretAccessKey: m.SecretKey}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: StorageLocation
metadata: {name: %s, namespace: arca-system}
spec: {url: %q, credentialsSecret: %s-creds}
`, name, url, name))
}

// claimWithFiles makes namespace ns with a bound hostpath claim and lets
// fill write into the volume's directory on the host; it returns that
// directory.
func (ic *inCluster) claimWithFiles(csi *testenv.CSI, ns, name, size string, fill func(t *testing.T, dir string)) string {
	t := ic.t
	t.Helper()
	ctx := t.Context()
	if _, err := ic.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	class := testenv.HostPathStorageClass
	if _, err := ic.cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := ic.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.ClaimBound {
			pv, err := ic.cs.CoreV1().PersistentVolumes().Get(ctx, p.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dir := csi.VolumeDir(pv.Spec.CSI.VolumeHandle)
			fill(t, dir)
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatalf("claim %s/%s not bound: %v %+v", ns, name, err, p)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeMixedFiles writes a few MiB of files of mixed sizes, symlinks (one
// dangling), a hard link, a sparse file, an empty file and directory, and
// a file only its owner (another user) may read.
func writeMixedFiles(t *testing.T, dir string) {
	rng := mrand.New(mrand.NewSource(15))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprintf("d%d/sub%d/f%02d.bin", i%4, i%3, i))
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		b := make([]byte, rng.Intn(200<<10))
		rng.Read(b)
		must(os.WriteFile(p, b, 0o644))
	}
	big := make([]byte, 2<<20)
	rng.Read(big)
	must(os.WriteFile(filepath.Join(dir, "d0/large.bin"), big, 0o640))
	must(os.Symlink("d1/sub1/f01.bin", filepath.Join(dir, "link")))
	must(os.Symlink("nowhere", filepath.Join(dir, "dangling")))
	must(os.Link(filepath.Join(dir, "d2/sub2/f02.bin"), filepath.Join(dir, "hard")))
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	must(f.Truncate(16 << 20))
	_, err = f.WriteAt([]byte("data in the middle of a hole"), 8<<20)
	must(err)
	must(f.Close())
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	must(os.Mkdir(filepath.Join(dir, "emptydir"), 0o1777))
	must(os.Mkdir(filepath.Join(dir, "private"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "private/owned"), []byte("only uid 1234 reads this\n"), 0o600))
	must(os.Chown(filepath.Join(dir, "private/owned"), 1234, 5678))
	must(os.Chown(filepath.Join(dir, "private"), 1234, 5678))
	old := time.Date(2020, 2, 29, 12, 0, 0, 123456789, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "d0/large.bin"), old, old))
}

// writeBigFiles writes about 300 MiB: one 192 MiB file and 200 files of
// 64 KiB to 1 MiB, all incompressible.
func writeBigFiles(t *testing.T, dir string) {
	rng := mrand.New(mrand.NewSource(99))
	buf := make([]byte, 1<<20)
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for range 192 {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		b := make([]byte, 64<<10+rng.Intn(960<<10))
		rng.Read(b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.bin", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rawRead reads every regular file under dir and returns the bytes read.
func rawRead(t *testing.T, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		c, err := io.Copy(io.Discard, f)
		n += c
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// treeListing describes every entry under dir: type, path, mode, owner,
// size, content hash, link target, hard-link group, and a file's mtime.
func treeListing(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d", rel, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			line = "D " + line
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line = "L " + line + " -> " + target
		case syscall.S_IFREG:
			if first, ok := inodes[st.Ino]; ok {
				line = "H " + line + " = " + first
				break
			}
			inodes[st.Ino] = rel
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line = fmt.Sprintf("F %s %d %s mtime %d", line, st.Size, hex.EncodeToString(sum[:8]), st.Mtim.Nano())
		default:
			line = "? " + line
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(slices.Compact(lines), "\n")
}

package cli

import (
	"bytes"
	"fmt"
	"maps"
	mrand "math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestVaultTierHousekeepingInCluster covers three parts of the vault tier
// on a real node, the extension running as a pod from the project's image,
// the hostpath CSI driver holding real bytes and MinIO as the repository:
//   - restore progress: a RestoreJob from vault-tier data reports bytes, a
//     rate and an ETA while its restore pod writes, and ends with the
//     volume's bytes;
//   - holder points: holders of an ended and of an unknown BackupJob are
//     forgotten at the end of the next vault-tier backup and their data
//     goes with the next prune, while the holder of a backup still running
//     and a holder of another cluster are left alone; an extension killed
//     (SIGKILL) mid-move leaves a holder that the new leader forgets;
//   - the cluster owner's ClusterTrustPolicy: without vaultTier a vault's
//     vault-tier backup is refused (PolicyDeniesVaultTier) with no mover
//     pod and no point, and so is a restore asking for vault-tier data;
//     with it the backup completes.
func TestVaultTierHousekeepingInCluster(t *testing.T) {
	ic := newInCluster(t)
	ctx := t.Context()
	csi := testenv.StartHostPathCSI(t, ic.cp)
	out, err := ic.arca("extension", "install", "--storage", "file://"+filepath.Join(t.TempDir(), "repo"), "--password-file", ic.pw, "--image", ic.image,
		"--max-concurrent-jobs", "2", "--timeout", "4m")
	if err != nil {
		t.Fatalf("install: %v\n%s\n%s", err, out, ic.extensionLog())
	}
	m := testenv.StartMinIO(t, testenv.OnHost(ic.cp.HostIP))
	m.MakeBucket(t, "vault")
	url := fmt.Sprintf("s3://vault/repo?endpoint=%s&tls=false&path-style=true&region=us-east-1", m.Endpoint)
	if _, err := ic.cs.CoreV1().Secrets(v1alpha1.ExtensionNamespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "minio"},
		StringData: map[string]string{v1alpha1.SecretKeyPassword: "in-cluster-password",
			v1alpha1.SecretKeyAWSAccessKeyID: m.AccessKey, v1alpha1.SecretKeyAWSSecretAccessKey: m.SecretKey}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: StorageLocation
metadata: {name: minio, namespace: arca-system}
spec: {url: %q, credentialsSecret: minio}
`, url))
	t.Setenv(PasswordEnv, "in-cluster-password")
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	openRepo := func() *repo.Repository {
		t.Helper()
		be, err := location.OpenWith(ctx, url, location.Credentials{}, location.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := repo.Open(ctx, be, "in-cluster-password")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	points := func() []*repo.RecoveryPoint {
		t.Helper()
		rps, err := openRepo().ListRecoveryPoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rps
	}
	// holders are the holder points by their arca.io/volume-holder-job tag.
	holders := func() map[string]*repo.RecoveryPoint {
		t.Helper()
		out := map[string]*repo.RecoveryPoint{}
		for _, rp := range points() {
			if _, ok := rp.Tags[v1alpha1.TagVolumeHolder]; ok {
				out[rp.Tags[v1alpha1.TagVolumeHolderJob]] = rp
			}
		}
		return out
	}
	backup := func(name, labels string, nss ...string) *v1alpha1.BackupJob {
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: %s, namespace: arca-system%s}
spec: {storageLocation: minio, includedNamespaces: [%s], vaultTier: true}
`, name, labels, strings.Join(nss, ", ")))
		bj := &v1alpha1.BackupJob{}
		if err := ic.c.Get(ctx, client.ObjectKey{Namespace: v1alpha1.ExtensionNamespace, Name: name}, bj); err != nil {
			t.Fatal(err)
		}
		return bj
	}
	moverPods := func() int {
		t.Helper()
		l, err := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelDataMover})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	waitFor := func(what string, timeout time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s\n%s", what, timeout, ic.extensionLog())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	ks, err := ic.cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cluster := string(ks.UID)

	ic.claimWithFiles(csi, "files", "data", "1Gi", writeMixedFiles)
	ic.claimWithFiles(csi, "big", "data", "2Gi", writeBigFiles)
	ic.claimWithFiles(csi, "huge", "data", "2Gi", func(t *testing.T, dir string) { writeRandomFile(t, filepath.Join(dir, "huge.bin"), 900) })

	var bigBackup *v1alpha1.BackupJob
	t.Run("restore progress with rate and ETA", func(t *testing.T) {
		// The large volume: its restore pod writes for several status
		// intervals.
		bigBackup = backup("huge-1", "", "huge")
		if st := ic.waitJob(bigBackup, 6*time.Minute); st.Phase != v1alpha1.JobCompleted {
			t.Fatalf("vault-tier backup: %+v\n%s", bigBackup.Status, ic.extensionLog())
		}
		var volBytes int64
		for _, rp := range points() {
			if rp.ID.String() == bigBackup.Status.RecoveryPointID && len(rp.VolumeData) == 1 {
				volBytes = rp.VolumeData[0].Bytes
			}
		}
		if volBytes < 800<<20 {
			t.Fatalf("vault-tier data of huge/data: %d bytes", volBytes)
		}
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: huge-restore, namespace: arca-system}
spec:
  recoveryPoint: %s
  storageLocation: minio
  includedNamespaces: [huge]
  namespaceMappings: {huge: huge-restored}
  volumeDataSource: Vault
`, bigBackup.Status.RecoveryPointID))
		rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "huge-restore", Namespace: v1alpha1.ExtensionNamespace}}
		var seen *v1alpha1.JobProgress
		deadline := time.Now().Add(6 * time.Minute)
		for {
			if err := ic.c.Get(ctx, client.ObjectKeyFromObject(rj), rj); err != nil {
				t.Fatal(err)
			}
			if p := rj.Status.Progress; seen == nil && p != nil && p.BytesDone > 0 && p.BytesDone < p.BytesTotal && p.BytesPerSecond > 0 && p.ETASeconds > 0 {
				c := *p
				seen = &c
				t.Logf("restore progress mid-run: %+v", c)
			}
			if rj.Status.Phase.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restore still %+v", rj.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rj.Status.Phase != v1alpha1.JobCompleted && rj.Status.Phase != v1alpha1.JobCompletedWithWarnings {
			t.Fatalf("restore: %s %s %+v\n%s", rj.Status.Phase, rj.Status.Message, rj.Status.Errors, ic.extensionLog())
		}
		if seen == nil {
			t.Fatalf("no progress with bytes, rate and ETA while the restore pod wrote; final %+v", rj.Status.Progress)
		}
		if seen.BytesTotal != volBytes {
			t.Errorf("bytesTotal mid-run %d, want the volume's %d", seen.BytesTotal, volBytes)
		}
		if p := rj.Status.Progress; p == nil || p.BytesDone != volBytes || p.BytesTotal != volBytes || p.ETASeconds != 0 {
			t.Errorf("final progress %+v, want bytesDone = bytesTotal = %d and no ETA", p, volBytes)
		}
		t.Logf("BENCH restore pod: %d bytes, rate %d B/s mid-run", volBytes, seen.BytesPerSecond)
	})

	t.Run("stray holders forgotten, running and foreign ones left", func(t *testing.T) {
		if bigBackup == nil || bigBackup.Status.Phase != v1alpha1.JobCompleted {
			t.Skip("needs the completed backup")
		}
		// Holders as a mover pod commits them, each over its own random data.
		commit := func(job string) {
			t.Helper()
			dir := t.TempDir()
			writeRandomFile(t, filepath.Join(dir, "data.bin"), 8)
			if out, err := runArca(ctx, "datamover", "backup", "--repo", url, "--source", dir, "--volume", "x/y",
				"--tag", v1alpha1.TagVolumeHolder+"=stray", "--tag", v1alpha1.TagVolumeHolderJob+"="+job); err != nil {
				t.Fatalf("commit a holder for %s: %v\n%s", job, err, out)
			}
		}
		ended := cluster + "/" + string(bigBackup.UID)
		gone := cluster + "/00000000-0000-0000-0000-000000000000"
		foreign := "another-cluster/" + string(bigBackup.UID)
		for _, j := range []string{ended, gone, foreign} {
			commit(j)
		}
		endedHolder := holders()[ended]
		if endedHolder == nil || len(endedHolder.VolumeData) != 1 {
			t.Fatalf("holder of the ended job: %+v", endedHolder)
		}
		// A backup that runs on while another one ends: its movers are
		// held (SIGSTOP) as soon as they start, and let go after the
		// check; on a quiet machine they would otherwise finish first.
		running := backup("huge-running", "", "huge", "big")
		var held []int
		waitFor("the running backup's mover process", 3*time.Minute, func() bool {
			l, err := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelDataMover})
			if err != nil {
				t.Fatal(err)
			}
			for i := range l.Items {
				held = append(held, signalPodProcesses(t, ic.cp.Nodes[0], &l.Items[i], []byte("datamover"), syscall.SIGSTOP)...)
			}
			return len(held) > 0
		})
		release := func() {
			for _, pid := range held {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		defer release()
		mine := cluster + "/" + string(running.UID)
		commit(mine)
		small := backup("files-1", "", "files")
		if st := ic.waitJob(small, 6*time.Minute); st.Phase != v1alpha1.JobCompleted {
			t.Fatalf("vault-tier backup: %+v\n%s", small.Status, ic.extensionLog())
		}
		if err := ic.c.Get(ctx, client.ObjectKeyFromObject(running), running); err != nil {
			t.Fatal(err)
		}
		if running.Status.Phase != v1alpha1.JobInProgress {
			t.Fatalf("the long backup ended (%s) before the short one: the test needs it running", running.Status.Phase)
		}
		hs := holders()
		if hs[ended] != nil || hs[gone] != nil {
			t.Errorf("holders of an ended and an unknown job left after a vault-tier backup: %v", slices.Sorted(maps.Keys(hs)))
		}
		if hs[mine] == nil || hs[foreign] == nil {
			t.Errorf("the holder of the running backup or of another cluster was forgotten: %v", slices.Sorted(maps.Keys(hs)))
		}
		release()
		if err := ic.c.Patch(ctx, running, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"cancel":true}}`))); err != nil {
			t.Fatal(err)
		}
		ic.waitJob(running, 3*time.Minute)
		// The stray holder's data goes with the next prune (none runs
		// meanwhile: the backups have ended).
		rep, err := openRepo().Prune(ctx, repo.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := openRepo().LoadBlob(ctx, endedHolder.VolumeData[0].Tree.Blobs[0]); err == nil || rep.BlobsRemoved == 0 {
			t.Errorf("the forgotten holder's tree blob is still in the repository after prune (%v, %+v)", err, rep)
		}
		t.Logf("prune after forgetting stray holders: %+v", rep)
	})

	t.Run("extension killed mid-move: the new leader forgets its holder", func(t *testing.T) {
		bj := backup("crash", "", "files", "huge")
		mine := cluster + "/" + string(bj.UID)
		// The small volume's mover commits its holder while the large one moves.
		waitFor("the first holder of the backup", 4*time.Minute, func() bool { return holders()[mine] != nil })
		pod := ic.extensionPod()
		killed := killPodProcesses(t, ic.cp.Nodes[0], pod, []byte("extension\x00run"))
		t.Logf("killed the extension's processes %v", killed)
		st := ic.waitJob(bj, 5*time.Minute)
		if st.Phase != v1alpha1.JobFailed || !hasCode(st.Errors, v1alpha1.CodeExtensionRestartedDuringBackup) {
			t.Fatalf("backup whose extension died: %s %+v", st.Phase, st.Errors)
		}
		waitFor("the crashed backup's holder forgotten", 3*time.Minute, func() bool { return holders()[mine] == nil })
	})

	t.Run("the owner's policy bounds the vault tier", func(t *testing.T) {
		// A policy as written before vaultTier existed. From here on, jobs
		// without a vault label are refused (no admission binding): this
		// part runs last.
		pol := &v1alpha1.ClusterTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: "v"},
			Spec: v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"minio"}, Namespaces: []string{"*"}}}
		if err := ic.c.Create(ctx, pol); err != nil {
			t.Fatal(err)
		}
		waitFor("no mover pod left", 2*time.Minute, func() bool { return moverPods() == 0 })
		before := len(points())
		bj := backup("vault-refused", ", labels: {arca.io/vault: v}", "files")
		seenPods := 0
		deadline := time.Now().Add(3 * time.Minute)
		for {
			seenPods += moverPods()
			if err := ic.c.Get(ctx, client.ObjectKeyFromObject(bj), bj); err != nil {
				t.Fatal(err)
			}
			if bj.Status.Phase.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("refused backup still %+v", bj.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st := bj.Status; st.Phase != v1alpha1.JobFailed || !hasCode(st.Errors, v1alpha1.CodePolicyDeniesVaultTier) ||
			!strings.Contains(st.Message, "--allow-vault-tier") {
			t.Fatalf("vault-tier backup under a policy without vaultTier: %s %s %+v", st.Phase, st.Message, st.Errors)
		}
		if seenPods != 0 || len(points()) != before {
			t.Fatalf("a refused vault-tier backup started %d mover pods, points %d → %d", seenPods, before, len(points()))
		}
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: vault-restore-refused, namespace: arca-system, labels: {arca.io/vault: v}}
spec:
  recoveryPoint: %s
  storageLocation: minio
  includedNamespaces: [huge]
  namespaceMappings: {huge: big-refused}
  volumeDataSource: Vault
`, bigBackup.Status.RecoveryPointID))
		rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "vault-restore-refused", Namespace: v1alpha1.ExtensionNamespace}}
		if st := ic.waitJob(rj, 3*time.Minute); st.Phase != v1alpha1.JobFailed || !hasCode(st.Errors, v1alpha1.CodePolicyDeniesVaultTier) {
			t.Fatalf("restore from the vault tier under a policy without vaultTier: %s %s %+v", st.Phase, st.Message, st.Errors)
		}
		if _, err := ic.cs.CoreV1().Namespaces().Get(ctx, "big-refused", metav1.GetOptions{}); err == nil {
			t.Errorf("the refused restore created namespace big-refused")
		}

		pol.Spec.VaultTier = true
		if err := ic.c.Update(ctx, pol); err != nil {
			t.Fatal(err)
		}
		ok := backup("vault-allowed", ", labels: {arca.io/vault: v}", "files")
		if st := ic.waitJob(ok, 6*time.Minute); st.Phase != v1alpha1.JobCompleted || ok.Status.Counts["volumesMoved"] != 1 {
			t.Fatalf("vault-tier backup the policy allows: %s %s %+v %v", st.Phase, st.Message, st.Errors, ok.Status.Counts)
		}
	})
}

// writeRandomFile writes mib MiB of random bytes to p.
func writeRandomFile(t *testing.T, p string, mib int) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewSource(time.Now().UnixNano()))
	buf := make([]byte, 1<<20)
	for range mib {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// killPodProcesses sends SIGKILL to every process of the pod whose command
// line contains match (a crash, not a shutdown: no deferred cleanup runs).
func killPodProcesses(t *testing.T, node *testenv.Node, pod *corev1.Pod, match []byte) []int {
	t.Helper()
	killed := signalPodProcesses(t, node, pod, match, syscall.SIGKILL)
	if len(killed) == 0 {
		t.Fatalf("no process of pod %s matches %q", pod.Name, match)
	}
	return killed
}

// signalPodProcesses sends sig to the processes of pod on node whose
// command line contains match, and returns their PIDs (none while the
// pod's cgroup or processes do not exist yet).
func signalPodProcesses(t *testing.T, node *testenv.Node, pod *corev1.Pod, match []byte, sig syscall.Signal) []int {
	t.Helper()
	dir, err := node.PodCgroupDir("memory", string(pod.UID))
	if err != nil {
		return nil
	}
	var killed []int
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if pid > 0 && bytes.Contains(cmd, match) {
				if err := syscall.Kill(pid, sig); err == nil {
					killed = append(killed, pid)
				}
			}
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("signal the processes of pod %s matching %q under %s: %v", pod.Name, match, dir, err)
	}
	return killed
}

package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/trustedaccess"
)

// inCluster is a test's handle on a cluster with one real node, the
// extension image in the node's registry and the CLI pointed at it.
type inCluster struct {
	t          *testing.T
	cp         *testenv.ControlPlane
	cs         kubernetes.Interface
	c          client.Client
	kubeconfig string
	image      string
	pw         string
}

func newInCluster(t *testing.T) *inCluster {
	t.Helper()
	return newInClusterWith(t, testenv.ControlPlaneOptions{Nodes: 1})
}

// newInClusterWith is newInCluster with other options: a test that runs
// two clusters names them and lets the second pull from the first's
// registry.
func newInClusterWith(t *testing.T, opts testenv.ControlPlaneOptions) *inCluster {
	t.Helper()
	ctrllog.SetLogger(logr.Discard())
	cp := testenv.StartControlPlane(t, opts)
	c, err := client.New(cp.Config(), client.Options{Scheme: extension.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ic := &inCluster{t: t, cp: cp, cs: cp.Clientset(t), c: c, kubeconfig: cp.KubeconfigFile(t), image: testenv.ExtensionImage(t, cp.Registry),
		pw: filepath.Join(t.TempDir(), "pw")}
	if err := os.WriteFile(ic.pw, []byte("in-cluster-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return ic
}

// arca runs the CLI against the cluster.
func (ic *inCluster) arca(args ...string) (string, error) {
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--kubeconfig", ic.kubeconfig))
	err := root.ExecuteContext(ic.t.Context())
	return out.String(), err
}

func (ic *inCluster) apply(doc string) {
	ic.t.Helper()
	u := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &u); err != nil {
		ic.t.Fatal(err)
	}
	var obj client.Object
	switch u["kind"] {
	case "BackupJob":
		obj = &v1alpha1.BackupJob{}
	case "RestoreJob":
		obj = &v1alpha1.RestoreJob{}
	case "StorageLocation":
		obj = &v1alpha1.StorageLocation{}
	case "RestoreHook":
		obj = &v1alpha1.RestoreHook{}
	default:
		ic.t.Fatalf("apply: kind %v", u["kind"])
	}
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		ic.t.Fatal(err)
	}
	if err := ic.c.Create(ic.t.Context(), obj); err != nil {
		ic.t.Fatal(err)
	}
}

// waitJob waits until the job is terminal and returns its status.
func (ic *inCluster) waitJob(obj interface {
	client.Object
	JobStatus() *v1alpha1.JobStatusCommon
}, timeout time.Duration) *v1alpha1.JobStatusCommon {
	ic.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if err := ic.c.Get(ic.t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
			ic.t.Fatal(err)
		}
		if st := obj.JobStatus(); st.Phase.Terminal() {
			return st
		}
		if time.Now().After(deadline) {
			ic.t.Fatalf("%s not finished after %s: %+v\n%s", obj.GetName(), timeout, obj.JobStatus(), ic.extensionLog())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// extensionPod is the extension's running pod.
func (ic *inCluster) extensionPod() *corev1.Pod {
	ic.t.Helper()
	l, err := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).List(ic.t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=arca-extension"})
	if err != nil {
		ic.t.Fatal(err)
	}
	for i := range l.Items {
		if l.Items[i].DeletionTimestamp == nil {
			return &l.Items[i]
		}
	}
	ic.t.Fatalf("no extension pod")
	return nil
}

func (ic *inCluster) extensionLog() string {
	l, err := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=arca-extension"})
	if err != nil || len(l.Items) == 0 {
		return fmt.Sprintf("(no extension pod: %v)", err)
	}
	b, err := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).GetLogs(l.Items[0].Name, &corev1.PodLogOptions{Container: extension.ContainerName}).DoRaw(context.Background())
	if err != nil {
		return "(log: " + err.Error() + ")"
	}
	return "extension log:\n" + string(b)
}

// appNamespace makes namespace ns with n ConfigMaps and returns their data.
func (ic *inCluster) appNamespace(ns string, n int) map[string]string {
	ic.t.Helper()
	ctx := ic.t.Context()
	if _, err := ic.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		ic.t.Fatal(err)
	}
	want := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("cm-%d", i)
		want[name] = fmt.Sprintf("%s/%s: %s", ns, name, strings.Repeat("x", i*37))
		if _, err := ic.cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
			Data: map[string]string{"v": want[name]}}, metav1.CreateOptions{}); err != nil {
			ic.t.Fatal(err)
		}
	}
	return want
}

// backupAndRestore backs ns up through storage location loc, restores it
// into ns-restored-loc and compares every ConfigMap.
func (ic *inCluster) backupAndRestore(loc, ns string, want map[string]string) {
	ic.t.Helper()
	ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: backup-%[1]s-%[2]s, namespace: arca-system}
spec: {storageLocation: %[1]s, includedNamespaces: [%[2]s]}
`, loc, ns))
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "backup-" + loc + "-" + ns, Namespace: v1alpha1.ExtensionNamespace}}
	if st := ic.waitJob(bj, 2*time.Minute); st.Phase != v1alpha1.JobCompleted || bj.Status.RecoveryPointID == "" {
		ic.t.Fatalf("backup through %s: %+v\n%s", loc, bj.Status, ic.extensionLog())
	}
	target := ns + "-restored-" + loc
	ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: restore-%[1]s-%[2]s, namespace: arca-system}
spec:
  recoveryPoint: %[3]s
  storageLocation: %[1]s
  includedNamespaces: [%[2]s]
  namespaceMappings: {%[2]s: %[4]s}
`, loc, ns, bj.Status.RecoveryPointID, target))
	rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "restore-" + loc + "-" + ns, Namespace: v1alpha1.ExtensionNamespace}}
	if st := ic.waitJob(rj, 2*time.Minute); st.Phase != v1alpha1.JobCompleted {
		ic.t.Fatalf("restore through %s: %+v\n%s", loc, rj.Status, ic.extensionLog())
	}
	for name, v := range want {
		cm, err := ic.cs.CoreV1().ConfigMaps(target).Get(ic.t.Context(), name, metav1.GetOptions{})
		if err != nil || cm.Data["v"] != v {
			ic.t.Fatalf("restored %s/%s: %v %q", target, name, err, cm.Data["v"])
		}
	}
}

// execIn runs cmd in a container; the output is stdout then stderr.
func execIn(t *testing.T, cfg *rest.Config, cs kubernetes.Interface, ns, pod, container string, cmd ...string) (string, error) {
	t.Helper()
	out, errOut, err := testenv.Exec(t.Context(), cfg, cs, ns, pod, container, cmd...)
	return out + errOut, err
}

// TestExtensionInCluster runs the extension the way users run it: installed
// by `arca extension install` from the image on the registry the node pulls
// from, the pod on the node running BackupJobs and RestoreJobs with its
// in-cluster config against file storage on the node (the URL's own path:
// a one-node cluster), MinIO and Azurite; then an update to an image that
// does not exist, a placement no node matches and arguments the extension
// refuses, each named by the wait with its code; then an OOM kill.
func TestExtensionInCluster(t *testing.T) {
	ic := newInCluster(t)
	ctx := t.Context()
	node := ic.cp.Nodes[0].Name
	repo := filepath.Join(t.TempDir(), "var", "backups", "arca")
	storage := "file://" + repo

	out, err := ic.arca("extension", "install", "--storage", storage, "--password-file", ic.pw, "--image", ic.image, "--timeout", "4m")
	t.Logf("install:\n%s", out)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, ic.extensionLog())
	}
	if !strings.Contains(out, "file storage: directory "+repo+" on node "+node) || !strings.Contains(out, "is Ready on node "+node) {
		t.Fatalf("install output")
	}
	pod := ic.extensionPod()

	t.Run("leader election, probes and metrics in the pod", func(t *testing.T) {
		// The pod's manager took the Lease: its identity starts with the pod
		// name (the hostname).
		deadline := time.Now().Add(time.Minute)
		for {
			l := &coordinationv1.Lease{}
			err := ic.c.Get(ctx, types.NamespacedName{Namespace: v1alpha1.ExtensionNamespace, Name: v1alpha1.ExtensionName}, l)
			if err == nil && l.Spec.HolderIdentity != nil && strings.HasPrefix(*l.Spec.HolderIdentity, pod.Name) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lease not held by %s: %v %+v", pod.Name, err, l.Spec)
			}
			time.Sleep(300 * time.Millisecond)
		}
		// Ready means the kubelet's readiness probe got 200 from /readyz
		// (the job runner started, so this replica leads); the startup and
		// liveness probes pass or the container would have restarted.
		p, err := ic.cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := p.Spec.Containers[0]
		if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" || p.Status.ContainerStatuses[0].RestartCount != 0 ||
			!p.Status.ContainerStatuses[0].Ready {
			t.Fatalf("probes: %+v %+v", c, p.Status.ContainerStatuses)
		}
		// Metrics and probes from another pod, over the pod network.
		app := testenv.AppImage(t, ic.cp.Registry)
		if _, err := ic.cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "curl"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sh", Image: app, Command: []string{"sleep", "3600"}}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var got string
		deadline = time.Now().Add(2 * time.Minute)
		for {
			got, err = execIn(t, ic.cp.Config(), ic.cs, "default", "curl", "sh", "sh", "-c",
				fmt.Sprintf("wget -q -O - http://%[1]s:8081/healthz && echo && wget -q -O - http://%[1]s:8081/readyz && echo && wget -q -O - http://%[1]s:8080/metrics", p.Status.PodIP))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil || !strings.HasPrefix(got, "ok\nok\n") || !strings.Contains(got, "arca_extension_storage_location_available") {
			t.Fatalf("probes and metrics from a pod: %v\n%.2000s", err, got)
		}
	})

	t.Run("file storage on the node", func(t *testing.T) {
		want := ic.appNamespace("shop", 20)
		ic.backupAndRestore("default", "shop", want)
		// The repository is in the node directory, owned by the
		// extension's user (the init container gave it).
		fi, err := os.Stat(filepath.Join(repo, "config"))
		if err != nil {
			t.Fatalf("repository on the node: %v", err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != extension.RunAsUser {
			t.Errorf("repository config owned by uid %d", st.Uid)
		}
		// Least privilege: only the init container may chown; the
		// extension's own container (uid 65532, no capabilities) is refused.
		out, err := execIn(t, ic.cp.Config(), ic.cs, v1alpha1.ExtensionNamespace, ic.extensionPod().Name, extension.ContainerName,
			"/arca", "extension", "chown-storage", "--uid", "1234", repo)
		if err == nil || !strings.Contains(out, "operation not permitted") {
			t.Fatalf("chown from the extension container: %v\n%s", err, out)
		}
	})

	t.Run("a vault's job refused by the owner's policy", func(t *testing.T) {
		// Trusted access as the cluster's owner runs it: the default policy
		// (every namespace but the protected ones, storage location
		// default). The vault's identity asks the extension pod to back up
		// kube-system: admission lets the labelled job in, the extension
		// refuses it by the policy and writes nothing.
		g, err := trustedaccess.Enable(t.Context(), ic.cp.Config(), trustedaccess.EnableOptions{Vault: "pv", Cluster: "c", TokenTTL: 15 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(g.Policy.StorageLocations, "default") {
			t.Fatalf("default policy: %+v", g.Policy)
		}
		points := func() int {
			es, _ := os.ReadDir(filepath.Join(repo, "recoverypoints"))
			return len(es)
		}
		before := points()
		vc, err := client.New(&rest.Config{Host: g.Server, BearerToken: g.Token, TLSClientConfig: rest.TLSClientConfig{CAData: g.CAData}},
			client.Options{Scheme: extension.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "vault-kube-system", Namespace: v1alpha1.ExtensionNamespace, Labels: map[string]string{v1alpha1.LabelVault: "pv"}},
			Spec: v1alpha1.BackupJobSpec{StorageLocation: "default", BackupConfiguration: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"kube-system"}}}}
		if err := wait.PollUntilContextTimeout(t.Context(), 300*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			// The admission policy loads asynchronously; until then the
			// request may fail, never succeed unlabelled (labels are set).
			return vc.Create(ctx, bj) == nil, nil
		}); err != nil {
			t.Fatalf("the vault creates its labelled job: %v", err)
		}
		st := ic.waitJob(bj, 2*time.Minute)
		if st.Phase != v1alpha1.JobFailed || len(st.Errors) != 1 || st.Errors[0].Code != v1alpha1.CodePolicyDeniesNamespace ||
			!strings.Contains(st.Errors[0].Message, "namespaces [kube-system] are outside the vault's namespaces [*]") ||
			!strings.Contains(st.Errors[0].Message, "--allow-namespaces") {
			t.Fatalf("vault job backing up kube-system: %+v\n%s", st, ic.extensionLog())
		}
		if after := points(); after != before {
			t.Errorf("recovery points %d → %d: the refused job wrote one", before, after)
		}
	})

	t.Run("S3 and Azure from the pod", func(t *testing.T) {
		m := testenv.StartMinIO(t, testenv.OnHost(ic.cp.HostIP))
		m.MakeBucket(t, "arca-ic")
		a := testenv.StartAzurite(t, testenv.OnHost(ic.cp.HostIP))
		for _, s := range []struct {
			name, url string
			data      map[string]string
		}{
			{"minio", fmt.Sprintf("s3://arca-ic/repo?endpoint=%s&tls=false&path-style=true&region=us-east-1", m.Endpoint),
				map[string]string{v1alpha1.SecretKeyAWSAccessKeyID: m.AccessKey, v1alpha1.SecretKeyAWSSecretAccessKey: m.SecretKey}},
			{"azurite", fmt.Sprintf("azure://%s/arca-ic/repo?endpoint=%s", a.Account, a.Endpoint),
				map[string]string{v1alpha1.SecretKeyAzureAccountKey: a.Key}},
		} {
			s.data[v1alpha1.SecretKeyPassword] = "in-cluster-password"
			if _, err := ic.cs.CoreV1().Secrets(v1alpha1.ExtensionNamespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.name},
				StringData: s.data}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: StorageLocation
metadata: {name: %s, namespace: arca-system}
spec: {url: %q, credentialsSecret: %s}
`, s.name, s.url, s.name))
		}
		want := ic.appNamespace("cloud", 10)
		ic.backupAndRestore("minio", "cloud", want)
		ic.backupAndRestore("azurite", "cloud", want)
	})

	t.Run("file storage on a claim install creates", func(t *testing.T) {
		// The hostpath CSI driver (real directories) provisions the claim
		// and the kubelet mounts it through the driver's node service; the
		// driver lives as long as the cluster (the later pods mount it too).
		testenv.StartHostPathCSI(ic.t, ic.cp)
		out, err := ic.arca("extension", "update", "--storage", "file:///data/arca", "--storage-claim", "arca-repo", "--storage-claim-size", "1Gi", "--timeout", "3m")
		t.Logf("update:\n%s", out)
		if err != nil {
			t.Fatalf("update --storage-claim: %v\n%s", err, ic.extensionLog())
		}
		if !strings.Contains(out, "creating PersistentVolumeClaim arca-system/arca-repo of 1Gi") {
			t.Fatalf("update output")
		}
		want := ic.appNamespace("claimed", 10)
		ic.backupAndRestore("default", "claimed", want)
	})

	t.Run("volume data through the pod, byte for byte", func(t *testing.T) {
		// Needs the hostpath CSI driver the previous subtest started.
		ic.volumeRoundTrip("vols")
	})

	t.Run("install failures named within the wait", func(t *testing.T) {
		missing := ic.cp.Registry.Addr() + "/arca-backup/arca:no-such-tag"
		out, err := ic.arca("extension", "update", "--image", missing, "--timeout", "2m")
		if err == nil || !strings.Contains(err.Error(), v1alpha1.CodeExtensionImagePullFailed) || !strings.Contains(err.Error(), missing) ||
			!strings.Contains(err.Error(), "kind load image-archive") || !strings.Contains(err.Error(), "--image-pull-secret") {
			t.Fatalf("update to a missing image: %v\n%s", err, out)
		}
		t.Logf("missing image: %v", err)

		out, err = ic.arca("extension", "update", "--image", ic.image, "--node-selector", "disktype=nvme-none", "--timeout", "2m")
		if err == nil || !strings.Contains(err.Error(), v1alpha1.CodeExtensionUnschedulable) || !strings.Contains(err.Error(), "node affinity/selector") {
			t.Fatalf("update to a placement no node matches: %v\n%s", err, out)
		}
		t.Logf("unschedulable: %v", err)

		out, err = ic.arca("extension", "update", "--node-selector", "kubernetes.io/os=linux", "--extension-arg=--log-format=yaml", "--timeout", "3m")
		if err == nil || !strings.Contains(err.Error(), v1alpha1.CodeExtensionCrashLooping) || !strings.Contains(err.Error(), `--log-format "yaml": want text or json`) {
			t.Fatalf("update to arguments the extension refuses: %v\n%s", err, out)
		}
		t.Logf("crash loop: %v", err)

		out, err = ic.arca("extension", "update", "--extension-arg=--log-format=json", "--timeout", "3m")
		if err != nil {
			t.Fatalf("update back to a working extension: %v\n%s", err, out)
		}
	})

	t.Run("OOMKilled during a backup", func(t *testing.T) {
		// A limit the idle extension fits in, and a backup that cannot:
		// 40 ConfigMaps of 900 KiB are listed in one page.
		out, err := ic.arca("extension", "update", "--memory-limit", "96Mi", "--timeout", "3m")
		if err != nil {
			t.Fatalf("update --memory-limit: %v\n%s", err, out)
		}
		if _, err := ic.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "big"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		blob := strings.Repeat("0123456789abcdef", 900*1024/16)
		for i := range 40 {
			if _, err := ic.cs.CoreV1().ConfigMaps("big").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i)},
				Data: map[string]string{"blob": blob}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		ic.apply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: too-big, namespace: arca-system}
spec: {storageLocation: default, includedNamespaces: [big]}
`)
		bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "too-big", Namespace: v1alpha1.ExtensionNamespace}}
		st := ic.waitJob(bj, 4*time.Minute)
		p := ic.extensionPod()
		t.Logf("job: %s: %s; pod restarts %d, last state %+v", st.Phase, st.Message, p.Status.ContainerStatuses[0].RestartCount,
			p.Status.ContainerStatuses[0].LastTerminationState.Terminated)
		if st.Phase != v1alpha1.JobFailed || len(st.Errors) != 1 || st.Errors[0].Code != v1alpha1.CodeExtensionOOMKilled ||
			!strings.Contains(st.Message, "96Mi") || !strings.Contains(st.Message, "--memory-limit 192Mi") {
			t.Fatalf("OOMKilled backup: %+v\n%s", st, ic.extensionLog())
		}
		// show says why the container last ended.
		out, err = ic.arca("extension", "show")
		if err != nil || !strings.Contains(out, "last ended OOMKilled (exit 137): raise --memory-limit") {
			t.Fatalf("show after the OOM kill: %v\n%s", err, out)
		}
		t.Logf("show:\n%s", out)
	})
}

// volumeSeed writes files of several sizes and kinds into /data once, then
// sleeps; volumeSums lists every entry with its type, mode and size and
// every regular file's sha256, so that a restore is compared byte for byte.
const (
	volumeSeed = volumeSeedFiles + "\nexec sleep 2147483647"
	// volumeSeedFiles writes the application's files into an empty volume
	// (.seeded marks a volume it wrote), and nothing into one that has them.
	volumeSeedFiles = `if [ ! -f /data/.seeded ]; then
  mkdir -p /data/db/wal && chmod 0750 /data/db
  for i in $(seq 1 12); do dd if=/dev/urandom of=/data/db/seg-$i bs=8192 count=$((i*3)) 2>/dev/null; done
  dd if=/dev/urandom of=/data/db/wal/000001 bs=1M count=3 2>/dev/null
  printf 'orders=42\n' > /data/db/meta && chmod 0640 /data/db/meta
  ln -s db/meta /data/current
  : > /data/empty
  touch /data/.seeded
fi`
	volumeSums = `cd /data && find . ! -name .seeded | sort | while read -r p; do
  if [ -L "$p" ]; then echo "L $p -> $(readlink "$p")"; elif [ -d "$p" ]; then echo "D $p $(stat -c %a "$p")";
  else echo "F $p $(stat -c '%a %s' "$p") $(sha256sum < "$p" | cut -c1-64)"; fi
done`
)

// volumeRoundTrip deploys an application whose pod writes into a PVC of the
// hostpath driver (real bytes), backs the namespace up through the
// extension's pod (CSI snapshot), deletes the namespace, restores it
// through the pod and compares every file of the restored volume, read in
// the restored application's pod, with what the first pod wrote.
func (ic *inCluster) volumeRoundTrip(ns string) {
	t := ic.t
	ctx := t.Context()
	if _, err := ic.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	class := testenv.HostPathStorageClass
	if _, err := ic.cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "db"}
	if _, err := ic.cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "db", Image: testenv.AppImage(t, ic.cp.Registry), Command: []string{"sh", "-c", volumeSeed},
						ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
							Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/data/.seeded"}}}},
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
				},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := ic.volumeListing(ns)
	if !strings.Contains(before, "F ./db/wal/000001 644 3145728 ") || !strings.Contains(before, "L ./current -> db/meta") || !strings.Contains(before, "D ./db 750") {
		t.Fatalf("the application did not write what the test expects:\n%s", before)
	}

	ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: backup-volumes-%[1]s, namespace: arca-system}
spec: {storageLocation: default, includedNamespaces: [%[1]s]}
`, ns))
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "backup-volumes-" + ns, Namespace: v1alpha1.ExtensionNamespace}}
	if st := ic.waitJob(bj, 3*time.Minute); st.Phase != v1alpha1.JobCompleted || bj.Status.RecoveryPointID == "" {
		t.Fatalf("backup of %s through the pod: %+v\n%s", ns, bj.Status, ic.extensionLog())
	}

	// The disaster: the namespace, its pod and its claim are gone.
	if err := ic.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := ic.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("namespace %s not deleted: %v", ns, err)
	}

	ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: restore-volumes-%[1]s, namespace: arca-system}
spec: {recoveryPoint: %[2]s, storageLocation: default, includedNamespaces: [%[1]s]}
`, ns, bj.Status.RecoveryPointID))
	rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "restore-volumes-" + ns, Namespace: v1alpha1.ExtensionNamespace}}
	if st := ic.waitJob(rj, 3*time.Minute); st.Phase != v1alpha1.JobCompleted {
		t.Fatalf("restore of %s through the pod: %+v\n%s", ns, rj.Status, ic.extensionLog())
	}
	after := ic.volumeListing(ns)
	if after != before {
		t.Fatalf("restored volume differs.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	pvc, err := ic.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src := pvc.Spec.DataSource; src == nil || src.Kind != "VolumeSnapshot" {
		t.Fatalf("restored claim's data source %+v, want the recorded VolumeSnapshot", src)
	}
	t.Logf("volume restored through the extension pod, %d entries equal", strings.Count(after, "\n"))
}

// volumeListing waits for a Ready pod of the application in ns and returns
// volumeSums run in it.
func (ic *inCluster) volumeListing(ns string) string {
	t := ic.t
	pod := ic.readyPod(ns, "app=db")
	out, err := execIn(t, ic.cp.Config(), ic.cs, ns, pod.Name, "db", "sh", "-c", volumeSums)
	if err != nil {
		t.Fatalf("list the volume in %s/%s: %v\n%s", ns, pod.Name, err, out)
	}
	return out
}

// readyPod waits up to 3 minutes for a Ready pod in ns matching selector.
func (ic *inCluster) readyPod(ns, selector string) *corev1.Pod {
	t := ic.t
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 300*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := ic.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		for i := range l.Items {
			p := &l.Items[i]
			for _, c := range p.Status.Conditions {
				if p.DeletionTimestamp == nil && c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					pod = p
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no Ready pod %s in %s: %v", selector, ns, err)
	}
	return pod
}

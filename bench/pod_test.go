package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/cli"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/testenv"
)

// podMemory reads a pod's memory cgroup (cgroup v1) the way the kubelet
// does: usage, the kernel's high-water mark of usage, and the working set
// (usage less inactive file pages), which is what the kubelet reports and
// evicts on.
type podMemory struct{ dir string }

func (m podMemory) value(file string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// resetPeak starts memory.max_usage_in_bytes again from the current usage.
func (m podMemory) resetPeak() error {
	return os.WriteFile(filepath.Join(m.dir, "memory.max_usage_in_bytes"), []byte("0"), 0)
}

func (m podMemory) stat() (map[string]uint64, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, "memory.stat"))
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
			out[k] = n
		}
	}
	return out, nil
}

// memoryPeaks are one job's figures.
type memoryPeaks struct {
	MaxUsage, WorkingSet, RSS, Cache uint64 // peaks, bytes
	Before                           uint64 // usage when the job started
}

// watch resets the pod's peak, then samples it every 100 ms until stop is
// called; the max_usage peak is the kernel's, the others are sampled.
func (m podMemory) watch(b *testing.B) (stop func() memoryPeaks) {
	b.Helper()
	var p memoryPeaks
	var err error
	if p.Before, err = m.value("memory.usage_in_bytes"); err != nil {
		b.Fatal(err)
	}
	if err := m.resetPeak(); err != nil {
		b.Fatalf("reset the pod's memory peak: %v", err)
	}
	var mu sync.Mutex
	sample := func() {
		usage, err1 := m.value("memory.usage_in_bytes")
		st, err2 := m.stat()
		if err1 != nil || err2 != nil {
			return
		}
		ws := usage
		if inactive := st["total_inactive_file"]; inactive < ws {
			ws -= inactive
		} else {
			ws = 0
		}
		mu.Lock()
		p.WorkingSet = max(p.WorkingSet, ws)
		p.RSS = max(p.RSS, st["total_rss"])
		p.Cache = max(p.Cache, st["total_cache"])
		mu.Unlock()
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			sample()
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() memoryPeaks {
		close(done)
		<-finished
		sample()
		mu.Lock()
		defer mu.Unlock()
		v, err := m.value("memory.max_usage_in_bytes")
		if err != nil {
			b.Fatal(err)
		}
		p.MaxUsage = v
		return p
	}
}

func (p memoryPeaks) String() string {
	mib := func(v uint64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
	return fmt.Sprintf("pod peak memory %s (cgroup memory.max_usage_in_bytes), peak working set %s, peak RSS %s, peak page cache %s; %s in use before",
		mib(p.MaxUsage), mib(p.WorkingSet), mib(p.RSS), mib(p.Cache), mib(p.Before))
}

// waitJob polls a BackupJob or RestoreJob until it reaches a final phase.
func waitJob(b *testing.B, c client.Client, obj client.Object, phase func() v1alpha1.JobPhase, timeout time.Duration) time.Duration {
	b.Helper()
	start := time.Now()
	for {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			b.Fatalf("read %s: %v", obj.GetName(), err)
		}
		if phase().Terminal() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			b.Fatalf("%s still %q after %s", obj.GetName(), phase(), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkExtensionPodMemory runs the extension the way users run it, as a
// pod on a real node (installed by `arca extension install` from the
// locally built image, file:// storage on a node directory), backs up and
// restores ARCA_BENCH_OBJECTS objects (default 10000) with a BackupJob and a
// RestoreJob, and reads the pod's peak memory from its cgroup as the kubelet
// does. The API server's raw create and list rates of the same objects are
// measured in the same run, as BenchmarkEngine does. Run with -benchtime 1x.
func BenchmarkExtensionPodMemory(b *testing.B) {
	n, nsCount := benchSize(b)
	ctx := context.Background()
	// The repository's node directory, removed after the node stops (cleanups
	// run last-registered first).
	dir, err := os.MkdirTemp("", "arca-bench-pod-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	cp := testenv.StartControlPlane(b, testenv.ControlPlaneOptions{Nodes: 1})
	kubeconfig := cp.KubeconfigFile(b)
	cfg := kube.WithRateLimits(rest.CopyConfig(cp.Config()), 0, 0)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	image := testenv.ExtensionImage(b, cp.Registry)

	// Install as a user does: `arca extension install`, file:// storage on
	// the node's directory (the default on a one-node cluster), default
	// resources. Installed before the objects are made, so that the
	// controller manager's queues (its client is limited to 20 requests/s)
	// are empty: after 10,000 objects its Deployment waits minutes for a
	// ReplicaSet.
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		b.Fatal(err)
	}
	repoDir := filepath.Join(dir, "repo")
	root := cli.NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"extension", "install", "--kubeconfig", kubeconfig, "--storage", "file://" + repoDir,
		"--password-file", pwFile, "--image", image, "--timeout", "5m"})
	installStart := time.Now()
	if err := root.ExecuteContext(ctx); err != nil {
		b.Fatalf("arca extension install: %v\n%s", err, out.String())
	}
	installTook := time.Since(installStart)
	ready, err := extension.WaitReady(ctx, cfg, v1alpha1.ExtensionNamespace, extension.WaitOptions{Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	pod, err := cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).Get(ctx, ready.Pod, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("arca extension install:\n%s", out.String())
	restarts := int32(0)
	for _, st := range pod.Status.ContainerStatuses {
		restarts += st.RestartCount
	}
	var timeline []string
	for _, c := range pod.Status.Conditions {
		timeline = append(timeline, fmt.Sprintf("%s %s", c.Type, c.LastTransitionTime.Sub(pod.CreationTimestamp.Time)))
	}
	limit := "none"
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			limit = q.String()
		}
	}
	cgDir, err := cp.Nodes[0].PodCgroupDir("memory", string(pod.UID))
	if err != nil {
		b.Fatal(err)
	}
	mem := podMemory{cgDir}
	idle, err := mem.value("memory.usage_in_bytes")
	if err != nil {
		b.Fatal(err)
	}

	rawDyn := unlimitedClient(b, cfg)
	createRate, rawTime, rawJSONTime := createAndMeasure(b, cfg, dyn, rawDyn, nsCount, n)

	c, err := client.New(cfg, client.Options{Scheme: extension.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "bench-backup", Namespace: v1alpha1.ExtensionNamespace},
		Spec: v1alpha1.BackupJobSpec{StorageLocation: "default", BackupConfiguration: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"bench-*"}}}}
	stop := mem.watch(b)
	if err := c.Create(ctx, bj); err != nil {
		b.Fatal(err)
	}
	backupTook := waitJob(b, c, bj, func() v1alpha1.JobPhase { return bj.Status.Phase }, 30*time.Minute)
	backupMem := stop()
	if (bj.Status.Phase != v1alpha1.JobCompleted && bj.Status.Phase != v1alpha1.JobCompletedWithWarnings) || bj.Status.RecoveryPointID == "" {
		b.Fatalf("backup job %s: %s %+v", bj.Status.Phase, bj.Status.Message, bj.Status.Errors)
	}
	backedUp := int64(0)
	if p := bj.Status.Progress; p != nil {
		backedUp = p.ItemsDone
	}

	rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "bench-restore", Namespace: v1alpha1.ExtensionNamespace},
		Spec: v1alpha1.RestoreJobSpec{RecoveryPoint: bj.Status.RecoveryPointID, StorageLocation: "default",
			RestoreCriteria: v1alpha1.RestoreCriteria{NamespaceMappings: benchMapping(nsCount)}}}
	stop = mem.watch(b)
	if err := c.Create(ctx, rj); err != nil {
		b.Fatal(err)
	}
	restoreTook := waitJob(b, c, rj, func() v1alpha1.JobPhase { return rj.Status.Phase }, 90*time.Minute)
	restoreMem := stop()
	b.StopTimer()
	if rj.Status.Phase != v1alpha1.JobCompleted && rj.Status.Phase != v1alpha1.JobCompletedWithWarnings {
		b.Fatalf("restore job %s: %s %+v", rj.Status.Phase, rj.Status.Message, rj.Status.Errors)
	}
	created := rj.Status.Results[string(restore.Created)]

	// The raw create rate again, with the cluster at its final size.
	probeNS := []string{"probe-a", "probe-b"}
	for _, ns := range probeNS {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
		if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	probeN := min(n/20, 2000)
	probeRate := create(b, rawDyn, probeNS, probeN)

	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	restoreRate := float64(created) / restoreTook.Seconds()
	report := []string{
		fmt.Sprintf("machine: %d CPUs (%s), %s", runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02 15:04 UTC")),
		fmt.Sprintf("objects: %d in %d namespaces (config maps 40%%, secrets 30%%, deployments 15%% (paused), services 15%%)", n, nsCount),
		fmt.Sprintf("raw parallel create: %.0f objects/s (16 clients); raw paginated list: %s dynamic client, %s raw JSON",
			createRate, rawTime.Round(time.Millisecond), rawJSONTime.Round(time.Millisecond)),
		fmt.Sprintf("extension pod %s on node %s, image %s, memory limit %s; install took %s (pod after creation: %s; %d restarts); idle pod memory %.1f MiB",
			pod.Name, ready.Node, image, limit, installTook.Round(time.Millisecond), strings.Join(timeline, ", "), restarts, mib(idle)),
		fmt.Sprintf("backup job: %d objects in %s = %.0f objects/s, %.2f× the raw JSON list, %.2f× the dynamic-client list; %s",
			backedUp, backupTook.Round(time.Millisecond), float64(backedUp)/backupTook.Seconds(),
			backupTook.Seconds()/rawJSONTime.Seconds(), backupTook.Seconds()/rawTime.Seconds(), backupMem),
		fmt.Sprintf("restore job: %d created (results %v) in %s = %.0f objects/s (%.0f%% of the initial raw create rate); %s",
			created, rj.Status.Results, restoreTook.Round(time.Millisecond), restoreRate, 100*restoreRate/createRate, restoreMem),
		fmt.Sprintf("job warnings: backup %d, restore %d (%s)", len(bj.Status.Warnings), len(rj.Status.Warnings), firstWarnings(bj.Status.Warnings, rj.Status.Warnings)),
		fmt.Sprintf("raw parallel create after the restore (%d objects, same mix): %.0f objects/s; restore = %.0f%% of it",
			probeN, probeRate, 100*restoreRate/probeRate),
	}
	for _, l := range report {
		fmt.Println(l)
	}
	if f := os.Getenv("ARCA_BENCH_OUT"); f != "" {
		os.WriteFile(f, []byte(strings.Join(report, "\n")+"\n"), 0o644)
	}
	b.ReportMetric(mib(backupMem.MaxUsage), "backup-peak-MiB")
	b.ReportMetric(mib(restoreMem.MaxUsage), "restore-peak-MiB")
	b.ReportMetric(float64(backedUp)/backupTook.Seconds(), "backup-objects/s")
	b.ReportMetric(restoreRate, "restore-objects/s")
	if backedUp < int64(n) {
		b.Errorf("backup job backed up %d objects, want at least %d", backedUp, n)
	}
	if created < int64(n) {
		b.Errorf("restore job created %d objects, want at least %d (results %v)", created, n, rj.Status.Results)
	}
}

func firstWarnings(lists ...[]v1alpha1.JobIssue) string {
	var out []string
	for _, l := range lists {
		for i, w := range l {
			if i == 3 {
				break
			}
			out = append(out, w.Code+": "+w.Message)
		}
	}
	return strings.Join(out, "; ")
}

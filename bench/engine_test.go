// Package bench holds on-demand benchmarks; `go test ./...` runs none of
// them (they are Benchmark functions, run by `make bench`).
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/testenv"
)

const password = "bench-password"

// The backup runs in a child process (this test binary re-executed) so that
// its peak RSS is its own, read from the kernel's rusage.
func TestMain(m *testing.M) {
	switch os.Getenv("ARCA_BENCH_CHILD") {
	case "backup":
		if err := childBackup(); err != nil {
			fmt.Fprintln(os.Stderr, "child backup:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "restore":
		if err := childRestore(); err != nil {
			fmt.Fprintln(os.Stderr, "child restore:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type childResult struct {
	ID          string  `json:"id"`
	Seconds     float64 `json:"seconds"`
	Items       int     `json:"items"`
	Bytes       int64   `json:"bytes"`
	StoredBytes int64   `json:"storedBytes"`
	NewBlobs    int64   `json:"newBlobs"`
	HeapPeak    uint64  `json:"heapPeak"`
	// Seconds = OpenSeconds (repository open: key derivation) +
	// PrepareSeconds (discovery, validation) + RunSeconds (list, store, commit).
	OpenSeconds, PrepareSeconds, RunSeconds float64
	ListSeconds, CommitSeconds              float64
}

// heapPeak samples the Go heap in use every 50 ms until stop is called,
// which returns the peak. With profile set it also writes a heap profile
// there each time the peak grows by 10% (live objects as of the last
// garbage collection): what was held when memory was highest.
func heapPeak(profile string) (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		var profiled uint64
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			if profile != "" && ms.HeapInuse > profiled+profiled/10 {
				profiled = ms.HeapInuse
				if f, err := os.Create(profile); err == nil {
					pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// writeHeapProfile writes the live heap to ARCA_BENCH_MEMPROFILE_<what>, if set.
func writeHeapProfile(what string) error {
	f := os.Getenv("ARCA_BENCH_MEMPROFILE_" + what)
	if f == "" {
		return nil
	}
	runtime.GC()
	pf, err := os.Create(f)
	if err != nil {
		return err
	}
	defer pf.Close()
	return pprof.WriteHeapProfile(pf)
}

func childBackup() error {
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("ARCA_BENCH_KUBECONFIG"))
	if err != nil {
		return err
	}
	kube.WithRateLimits(cfg, 0, 0)
	stopPeak := heapPeak("")
	if f := os.Getenv("ARCA_BENCH_CPUPROFILE"); f != "" {
		pf, err := os.Create(f)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	be, err := local.Create(os.Getenv("ARCA_BENCH_REPO"))
	if err != nil {
		return err
	}
	r, _, err := repo.OpenOrInit(ctx, be, password)
	if err != nil {
		return err
	}
	opened := time.Now()
	// The first backup's own peak, after scrypt's 32 MiB.
	profile := os.Getenv("ARCA_BENCH_PEAKPROFILE_BACKUP")
	if _, err := os.Stat(profile); err == nil {
		profile = ""
	}
	stopProfile := heapPeak(profile)
	defer stopProfile()
	p, err := backup.Prepare(ctx, cfg, backup.Options{Config: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"bench-*"}}})
	if err != nil {
		return err
	}
	prepared := time.Now()
	res, err := p.Run(ctx, r)
	if err != nil {
		return err
	}
	heap := stopPeak()
	if err := writeHeapProfile("BACKUP"); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(childResult{ID: res.ID.String(), Seconds: time.Since(start).Seconds(), Items: res.RecoveryPoint.Summary.Items,
		ListSeconds: res.ListDuration.Seconds(), CommitSeconds: res.CommitDuration.Seconds(),
		OpenSeconds: opened.Sub(start).Seconds(), PrepareSeconds: prepared.Sub(opened).Seconds(), RunSeconds: time.Since(prepared).Seconds(),
		Bytes: res.RecoveryPoint.Summary.Bytes, StoredBytes: res.Stats.StoredBytes, NewBlobs: res.Stats.NewBlobs, HeapPeak: heap})
}

// restoreResult is what the restore child reports.
type restoreResult struct {
	Seconds  float64                `json:"seconds"`
	Summary  map[restore.Action]int `json:"summary"`
	Tiers    []restore.TierStat     `json:"tiers"`
	HeapPeak uint64                 `json:"heapPeak"`
}

// childRestore restores recovery point ARCA_BENCH_RP of ARCA_BENCH_REPO with
// namespaces bench-NNN mapped to restored-NNN (ARCA_BENCH_NAMESPACES of them).
func childRestore() error {
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("ARCA_BENCH_KUBECONFIG"))
	if err != nil {
		return err
	}
	kube.WithRateLimits(cfg, 0, 0)
	nsCount, err := strconv.Atoi(os.Getenv("ARCA_BENCH_NAMESPACES"))
	if err != nil {
		return err
	}
	stopPeak := heapPeak("")
	be, err := local.Open(os.Getenv("ARCA_BENCH_REPO"))
	if err != nil {
		return err
	}
	r, err := repo.Open(ctx, be, password)
	if err != nil {
		return err
	}
	rp, err := r.FindRecoveryPoint(ctx, os.Getenv("ARCA_BENCH_RP"))
	if err != nil {
		return err
	}
	// The repository open (scrypt key derivation: 32 MiB) is over: profile
	// the restore's own peak.
	stopProfile := heapPeak(os.Getenv("ARCA_BENCH_PEAKPROFILE"))
	start := time.Now()
	res, err := restore.Run(ctx, cfg, rp, r, restore.Options{Criteria: v1alpha1.RestoreCriteria{NamespaceMappings: benchMapping(nsCount)}, Workers: 32})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	stopProfile()
	heap := stopPeak()
	if err := writeHeapProfile("RESTORE"); err != nil {
		return err
	}
	runtime.KeepAlive(res)
	return json.NewEncoder(os.Stdout).Encode(restoreResult{Seconds: elapsed.Seconds(), Summary: res.Summary, Tiers: res.Tiers, HeapPeak: heap})
}

func benchMapping(nsCount int) map[string]string {
	m := map[string]string{}
	for i := 0; i < nsCount; i++ {
		m[fmt.Sprintf("bench-%03d", i)] = fmt.Sprintf("restored-%03d", i)
	}
	return m
}

// runChildProcess runs this test binary as the child named what, decodes its
// JSON output into out and returns the child's peak RSS.
func runChildProcess(b *testing.B, what string, env []string, out any) int64 {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "ARCA_BENCH_CHILD="+what), env...)
	cmd.Stderr = os.Stderr
	data, err := cmd.Output()
	if err != nil {
		b.Fatalf("child %s: %v", what, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		b.Fatalf("child %s output %q: %v", what, data, err)
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024 // kilobytes on Linux
}

func runChild(b *testing.B, kubeconfig, repoDir string) (childResult, int64) {
	b.Helper()
	var res childResult
	rss := runChildProcess(b, "backup", []string{"ARCA_BENCH_KUBECONFIG=" + kubeconfig, "ARCA_BENCH_REPO=" + repoDir}, &res)
	return res, rss
}

// types is the object mix. Deployments are paused: where a controller
// manager and a node run (BenchmarkExtensionPodMemory), the deployment
// controller then makes no ReplicaSets and no pods for them.
var types = []struct {
	gvr   schema.GroupVersionResource
	share int // per 20 objects
	make  func(ns, name string, i int) map[string]any
}{
	{schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, 8, func(ns, name string, i int) map[string]any {
		return map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name, "labels": map[string]any{"app": "bench"}},
			"data": map[string]any{"index": strconv.Itoa(i), "config.yaml": strings.Repeat("key: value\n", 20)}}
	}},
	{schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, 6, func(ns, name string, i int) map[string]any {
		return map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": name, "labels": map[string]any{"app": "bench"}},
			"stringData": map[string]any{"password": fmt.Sprintf("p-%d", i)}}
	}},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, 3, func(ns, name string, i int) map[string]any {
		return map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": name, "labels": map[string]any{"app": name}},
			"spec": map[string]any{"replicas": 1, "paused": true, "selector": map[string]any{"matchLabels": map[string]any{"app": name}},
				"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": name}},
					"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "example.com/app:1", "ports": []any{map[string]any{"containerPort": 8080}}}}}}}}
	}},
	{schema.GroupVersionResource{Version: "v1", Resource: "services"}, 3, func(ns, name string, i int) map[string]any {
		return map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": name, "labels": map[string]any{"app": name}},
			"spec": map[string]any{"selector": map[string]any{"app": name}, "ports": []any{map[string]any{"port": 80, "targetPort": 8080}}}}
	}},
}

// create makes n objects over the namespaces with 16 parallel clients and
// returns the objects/s achieved.
func create(b *testing.B, dyn dynamic.Interface, nss []string, n int) float64 {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				slot := i % 20
				var ty int
				for acc := 0; ty < len(types); ty++ {
					acc += types[ty].share
					if slot < acc {
						break
					}
				}
				ns := nss[i%len(nss)]
				name := fmt.Sprintf("obj-%06d", i)
				obj := &unstructured.Unstructured{Object: types[ty].make(ns, name, i)}
				if _, err := dyn.Resource(types[ty].gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatalf("create: %v", err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// rawJSONList lists the same objects as rawList through the engine's raw
// JSON lister (no gzip, no decoding into maps): the floor of any backup.
func rawJSONList(b *testing.B, cfg *rest.Config) time.Duration {
	b.Helper()
	l, err := kube.NewLister(cfg)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for _, ty := range types {
		r := kube.Resource{Group: ty.gvr.Group, Version: ty.gvr.Version, Resource: ty.gvr.Resource}
		cont := ""
		for {
			p, err := l.List(context.Background(), r, kube.ListOptions{Limit: 500, Continue: cont})
			if err != nil {
				b.Fatal(err)
			}
			if cont = p.Metadata.Continue; cont == "" {
				break
			}
		}
	}
	return time.Since(start)
}

// rawList lists every object of the benchmark's types with pages of 500,
// one type after another, decoding as the engine does.
func rawList(b *testing.B, dyn dynamic.Interface) (time.Duration, int) {
	b.Helper()
	start := time.Now()
	count := 0
	for _, ty := range types {
		cont := ""
		for {
			l, err := dyn.Resource(ty.gvr).List(context.Background(), metav1.ListOptions{Limit: 500, Continue: cont})
			if err != nil {
				b.Fatal(err)
			}
			count += len(l.Items)
			if cont = l.GetContinue(); cont == "" {
				break
			}
		}
	}
	return time.Since(start), count
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// benchSize returns the object count (ARCA_BENCH_OBJECTS, default 10000)
// and the namespaces they are spread over.
func benchSize(b *testing.B) (n, namespaces int) {
	n = 10000
	if s := os.Getenv("ARCA_BENCH_OBJECTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("ARCA_BENCH_OBJECTS: %v", err)
		}
	}
	if n >= 50000 {
		return n, 200
	}
	return n, 100
}

// createNamespaces creates bench-000 … and returns their names.
// unlimitedClient is a dynamic client without a client-side rate limit:
// raw creates through it meet the API server's own limit.
func unlimitedClient(b *testing.B, cfg *rest.Config) dynamic.Interface {
	b.Helper()
	rawCfg := rest.CopyConfig(cfg)
	rawCfg.QPS, rawCfg.Burst = 1e6, 1e6
	rawDyn, err := dynamic.NewForConfig(rawCfg)
	if err != nil {
		b.Fatal(err)
	}
	return rawDyn
}

// createAndMeasure makes n objects of the benchmark's mix in nsCount new
// namespaces with raw parallel creates through rawDyn (unlimitedClient) and
// measures the API server's own rates for them in this run, the limits
// Arca's figures are compared with: the create rate (16 clients) and the
// time of a paginated list of every type, through the dynamic client and as
// raw JSON.
func createAndMeasure(b *testing.B, cfg *rest.Config, dyn, rawDyn dynamic.Interface, nsCount, n int) (createRate float64, list, listJSON time.Duration) {
	b.Helper()
	nss := createNamespaces(b, dyn, nsCount)
	createRate = create(b, rawDyn, nss, n)
	b.Logf("created %d objects in %d namespaces: %.0f objects/s with 16 parallel clients", n, nsCount, createRate)
	list, listed := rawList(b, dyn)
	listJSON = rawJSONList(b, cfg)
	if listed < n {
		b.Fatalf("listed %d, want at least %d", listed, n)
	}
	return createRate, list, listJSON
}

func createNamespaces(b *testing.B, dyn dynamic.Interface, count int) []string {
	b.Helper()
	var nss []string
	for i := 0; i < count; i++ {
		ns := fmt.Sprintf("bench-%03d", i)
		nss = append(nss, ns)
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
		if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return nss
}

func cpuModel() string {
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				return strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
			}
		}
	}
	return "unknown"
}

// BenchmarkEngine measures backup and restore of ARCA_BENCH_OBJECTS objects
// (default 10000) against the physical limits of the same API server. Run
// with -benchtime 1x; it prints its figures.
func BenchmarkEngine(b *testing.B) {
	n, nsCount := benchSize(b)
	cp := testenv.StartControlPlane(b, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	kubeconfig := cp.KubeconfigFile(b)
	cfg := kube.WithRateLimits(rest.CopyConfig(cp.Config()), 0, 0)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rawDyn := unlimitedClient(b, cfg)
	createRate, rawTime, rawJSONTime := createAndMeasure(b, cfg, dyn, rawDyn, nsCount, n)
	repoDir := filepath.Join(b.TempDir(), "repo")
	b.ResetTimer()
	first, rss1 := runChild(b, kubeconfig, repoDir)
	size1 := dirSize(repoDir)
	second, rss2 := runChild(b, kubeconfig, repoDir)
	size2 := dirSize(repoDir)
	b.StopTimer()
	if os.Getenv("ARCA_BENCH_BACKUP_ONLY") != "" {
		fmt.Printf("backup: %.2fs wall, %d objects; peak RSS %.1f MiB, peak heap %.1f MiB; re-backup peak RSS %.1f MiB\n",
			first.Seconds, first.Items, float64(rss1)/(1<<20), float64(first.HeapPeak)/(1<<20), float64(rss2)/(1<<20))
		return
	}

	// The restore runs in a child process too, so that its peak RSS is its own.
	var rres restoreResult
	restoreRSS := runChildProcess(b, "restore", []string{"ARCA_BENCH_KUBECONFIG=" + kubeconfig, "ARCA_BENCH_REPO=" + repoDir,
		"ARCA_BENCH_RP=" + first.ID, "ARCA_BENCH_NAMESPACES=" + strconv.Itoa(nsCount)}, &rres)
	restoreTime := time.Duration(rres.Seconds * float64(time.Second))
	created := rres.Summary[restore.Created]

	mib := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
	report := []string{
		fmt.Sprintf("machine: %d CPUs (%s), %s", runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02")),
		fmt.Sprintf("objects: %d in %d namespaces (config maps 40%%, secrets 30%%, deployments 15%%, services 15%%)", n, nsCount),
		fmt.Sprintf("raw parallel create: %.0f objects/s (16 clients)", createRate),
		fmt.Sprintf("raw paginated list (pages of 500, type after type): %s with client-go's dynamic client (gzip, decoded into maps); %s as raw JSON without compression",
			rawTime.Round(time.Millisecond), rawJSONTime.Round(time.Millisecond)),
		fmt.Sprintf("backup: %.2fs wall = %.2f× raw list (repository open %.2fs, discovery and checks %.2fs, listing and storing %.2fs = %.2f× raw list, of which commit %.2fs); %d objects, %s of JSON; repository %s; peak RSS %s, peak heap %s",
			first.Seconds, first.Seconds/rawTime.Seconds(), first.OpenSeconds, first.PrepareSeconds, first.RunSeconds, first.RunSeconds/rawTime.Seconds(), first.CommitSeconds,
			first.Items, mib(first.Bytes), mib(size1), mib(rss1), mib(int64(first.HeapPeak))),
		fmt.Sprintf("unchanged re-backup: %.2fs wall; %d new blobs; %d bytes written = %.3f%% of the first backup; peak RSS %s",
			second.Seconds, second.NewBlobs, size2-size1, 100*float64(size2-size1)/float64(size1), mib(rss2)),
		fmt.Sprintf("restore into %d empty namespaces: %s wall, %d created, %.0f objects/s (%.0f%% of the initial raw create rate); peak RSS %s, peak heap %s",
			nsCount, restoreTime.Round(time.Millisecond), created, float64(created)/restoreTime.Seconds(), 100*float64(created)/restoreTime.Seconds()/createRate,
			mib(restoreRSS), mib(int64(rres.HeapPeak))),
	}
	for _, ts := range rres.Tiers {
		report = append(report, fmt.Sprintf("  restore tier %d (%s): %d objects in %s = %.0f objects/s", ts.Tier, strings.Join(ts.Types, ", "),
			ts.Items, ts.Duration.Round(time.Millisecond), float64(ts.Items)/ts.Duration.Seconds()))
	}
	// The same raw parallel create, now, with the cluster at its final size:
	// the API server's own cost per object grows with the objects it holds
	// (notably Service ClusterIP allocation).
	probeNS := []string{"probe-a", "probe-b"}
	for _, ns := range probeNS {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
		if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	probeN := n / 20
	if probeN > 2000 {
		probeN = 2000
	}
	probeRate := create(b, rawDyn, probeNS, probeN)
	report = append(report, fmt.Sprintf("raw parallel create after the restore (%d objects, same mix): %.0f objects/s; restore = %.0f%% of it",
		probeN, probeRate, 100*float64(created)/restoreTime.Seconds()/probeRate))
	for _, l := range report {
		fmt.Println(l)
	}
	if out := os.Getenv("ARCA_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(strings.Join(report, "\n")+"\n"), 0o644)
	}
	if created != n+nsCount {
		b.Errorf("restore created %d, want %d objects + %d namespaces (summary %v)", created, n, nsCount, rres.Summary)
	}
}

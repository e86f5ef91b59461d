package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/testenv"
)

// BenchmarkVerification measures a verification job (RestoreJob
// spec.verification, run by the extension in this process) of a recovery
// point of ARCA_BENCH_OBJECTS objects (default 10000, the engine
// benchmark's mix over 100 namespaces) against the raw create and list
// rates of the same API server in the same run: the job checks the
// repository (ARCA_BENCH_VERIFY_READ percent of the packs read whole,
// default 10), restores every object into sandbox namespaces, lists them
// back and compares them with the point, and deletes the sandbox. Run with
// -benchtime 1x; it prints its figures.
func BenchmarkVerification(b *testing.B) {
	ctrllog.SetLogger(logr.Discard())
	n, nsCount := benchSize(b)
	read := 10
	if s := os.Getenv("ARCA_BENCH_VERIFY_READ"); s != "" {
		var err error
		if read, err = strconv.Atoi(s); err != nil {
			b.Fatalf("ARCA_BENCH_VERIFY_READ: %v", err)
		}
	}
	cp := testenv.StartControlPlane(b, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	cfg := kube.WithRateLimits(rest.CopyConfig(cp.Config()), 0, 0)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	createRate, rawTime, rawJSONTime := createAndMeasure(b, cfg, dyn, unlimitedClient(b, cfg), nsCount, n)

	if err := extension.InstallCRDs(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: extension.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ExtensionNamespace}}))
	must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: v1alpha1.ExtensionNamespace}, StringData: map[string]string{"password": password}}))
	repoDir := filepath.Join(b.TempDir(), "repo")
	must(c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: v1alpha1.ExtensionNamespace},
		Spec: v1alpha1.StorageLocationSpec{URL: "file://" + repoDir, CredentialsSecret: "creds"}}))
	mgr, err := extension.NewManager(cfg, extension.Options{MetricsAddr: "0", ProbeAddr: "0", StatusInterval: time.Second, Log: logr.Discard()})
	must(err)
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	defer func() { stop(); <-done }()

	wait := func(obj interface {
		client.Object
		JobStatus() *v1alpha1.JobStatusCommon
	}) time.Duration {
		b.Helper()
		start := time.Now()
		for {
			must(c.Get(ctx, client.ObjectKeyFromObject(obj), obj))
			if obj.JobStatus().Phase.Terminal() {
				return time.Since(start)
			}
			if time.Since(start) > 30*time.Minute {
				b.Fatalf("%s not finished after 30 minutes: %+v", obj.GetName(), obj.JobStatus())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: v1alpha1.ExtensionNamespace},
		Spec: v1alpha1.BackupJobSpec{StorageLocation: "default", BackupConfiguration: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"bench-*"}}}}
	must(c.Create(ctx, bj))
	backupTime := wait(bj)
	if bj.Status.Phase != v1alpha1.JobCompleted {
		b.Fatalf("backup: %+v", bj.Status)
	}

	b.ResetTimer()
	rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: "verify", Namespace: v1alpha1.ExtensionNamespace},
		Spec: v1alpha1.RestoreJobSpec{RecoveryPoint: bj.Status.RecoveryPointID, StorageLocation: "default",
			Verification: &v1alpha1.VerificationSpec{ReadDataPercent: int32(read)}}}
	must(c.Create(ctx, rj))
	wall := wait(rj)
	b.StopTimer()
	v := rj.Status.Verification
	if rj.Status.Phase != v1alpha1.JobCompleted || v == nil || v.Verdict != v1alpha1.VerdictVerified {
		b.Fatalf("verification: %s %s %+v %+v", rj.Status.Phase, rj.Status.Message, rj.Status.Errors, v)
	}
	job := wall
	if st := rj.Status.StartTime; st != nil && rj.Status.CompletionTime != nil {
		job = rj.Status.CompletionTime.Sub(st.Time)
	}
	created := rj.Status.Results["Created"]
	report := []string{
		fmt.Sprintf("machine: %d CPUs (%s), %s", runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02")),
		fmt.Sprintf("objects: %d in %d namespaces (config maps 40%%, secrets 30%%, deployments 15%%, services 15%%)", n, nsCount),
		fmt.Sprintf("raw parallel create: %.0f objects/s (16 clients); raw paginated list: %s (dynamic client), %s (raw JSON)",
			createRate, rawTime.Round(time.Millisecond), rawJSONTime.Round(time.Millisecond)),
		fmt.Sprintf("backup through the extension: %s", backupTime.Round(time.Millisecond)),
		fmt.Sprintf("verification job (%d%% of %d packs read whole): %s from start to verdict (%s until the status said so); %d objects restored into %d sandbox namespaces and %d compared = %.0f objects/s; a raw parallel create of as many objects takes %s (the verification: %.2f× that), the raw list of the objects %s (%.1f× that)",
			read, v.PacksChecked, job.Round(time.Millisecond), wall.Round(time.Millisecond), created, len(v.SandboxNamespaces), v.ObjectsCompared,
			float64(v.ObjectsCompared)/job.Seconds(), (time.Duration(float64(created) / createRate * float64(time.Second))).Round(time.Millisecond),
			job.Seconds()/(float64(created)/createRate), rawTime.Round(time.Millisecond), job.Seconds()/rawTime.Seconds()),
	}
	for _, l := range report {
		fmt.Println(l)
	}
	if out := os.Getenv("ARCA_BENCH_OUT"); out != "" {
		_ = os.WriteFile(out, []byte(strings.Join(report, "\n")+"\n"), 0o644)
	}
	if v.ObjectsCompared < int64(n) {
		b.Errorf("compared %d objects, want at least %d", v.ObjectsCompared, n)
	}
}

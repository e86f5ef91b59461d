package backup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/mem"
	"github.com/arca-backup/arca/internal/testenv"
)

var shared *testenv.ControlPlane

func TestMain(m *testing.M) {
	t, cleanup := testenv.NewMainT("backup")
	shared = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	code := m.Run()
	cleanup()
	os.Exit(code)
}

var gvrCM = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// fill creates n config maps in namespace ns with 16 parallel clients.
func fill(t *testing.T, cfg *rest.Config, ns string, n int) {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 2000, 4000
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
					"metadata": map[string]any{"name": fmt.Sprintf("cm-%05d", i), "labels": map[string]any{"app": "fill"}},
					"data":     map[string]any{"index": fmt.Sprint(i)}}}
				if _, err := dyn.Resource(gvrCM).Namespace(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func TestWarningsAndUnchangedRebackup(t *testing.T) {
	ctx := context.Background()
	fill(t, shared.Config(), "warn-a", 300)
	r, err := repo.Init(ctx, mem.New(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	c := v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"warn-a", "does-not-exist"}}
	first, err := backup.Run(ctx, shared.Config(), r, backup.Options{Config: c, Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	rp := first.RecoveryPoint
	if rp.Summary.Counts["configmaps"] != 300 {
		t.Errorf("configmaps %d, want 300 (kube-root-ca.crt is excluded)", rp.Summary.Counts["configmaps"])
	}
	found := false
	for _, w := range rp.Summary.Warnings {
		if w.Code == backup.WarnNamespaceNotFound && w.Object == "does-not-exist" {
			found = true
		}
	}
	if !found {
		t.Errorf("no NamespaceNotFound warning: %+v", rp.Summary.Warnings)
	}
	if rp.Source.Cluster == "" || rp.Source.KubernetesVersion == "" || len(rp.Config) == 0 {
		t.Errorf("source or config missing: %+v %s", rp.Source, rp.Config)
	}
	var back v1alpha1.BackupConfiguration
	if err := jsonUnmarshal(rp.Config, &back); err != nil || len(back.IncludedNamespaces) != 2 {
		t.Errorf("stored configuration %s (%v)", rp.Config, err)
	}
	second, err := backup.Run(ctx, shared.Config(), r, backup.Options{Config: c, Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(second.Stats.StoredBytes) / float64(first.Stats.StoredBytes)
	t.Logf("first backup stored %d bytes, unchanged re-backup %d (%.2f%%); new blobs %d", first.Stats.StoredBytes, second.Stats.StoredBytes, 100*ratio, second.Stats.NewBlobs)
	if second.Stats.NewBlobs != 0 {
		t.Errorf("unchanged re-backup stored %d new blobs", second.Stats.NewBlobs)
	}
}

// TestAPIServerStopsMidBackup stops the API server while a backup is
// listing: the backup fails and leaves no recovery point.
func TestAPIServerStopsMidBackup(t *testing.T) {
	ctx := context.Background()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	fill(t, cp.Config(), "stop-a", 2000)
	r, err := repo.Init(ctx, mem.New(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	_, err = backup.Run(ctx, cp.Config(), r, backup.Options{
		PageSize: 100,
		Progress: func(p backup.Progress) {
			if p.Items >= 100 {
				once.Do(func() {
					if err := cp.Stop(); err != nil {
						t.Logf("stop: %v", err)
					}
				})
			}
		},
	})
	if err == nil {
		t.Fatal("backup succeeded although the API server stopped")
	}
	t.Logf("backup error: %v", err)
	rps, lerr := r.ListRecoveryPoints(ctx)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(rps) != 0 {
		t.Fatalf("%d recovery points after a failed backup", len(rps))
	}
	if locks, err := r.Locks(ctx); err != nil || len(locks) != 0 {
		t.Errorf("locks left: %v (%v)", locks, err)
	}
	var ce *backup.ConfigError
	if errors.As(err, &ce) {
		t.Errorf("a connection failure reported as a configuration error: %v", err)
	}
}

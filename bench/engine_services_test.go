package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/internal/testenv"
)

// BenchmarkServiceCreate shows how Service creation slows down as the test
// API server holds more Services (ClusterIP allocation).
func BenchmarkServiceCreate(b *testing.B) {
	if os.Getenv("ARCA_BENCH_SERVICES") == "" {
		b.Skip("set ARCA_BENCH_SERVICES")
	}
	cp := testenv.StartControlPlane(b, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	cfg := rest.CopyConfig(cp.Config())
	cfg.QPS, cfg.Burst = 1e6, 1e6
	dyn, _ := dynamic.NewForConfig(cfg)
	ctx := context.Background()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "svc"}}}
	dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, ns, metav1.CreateOptions{})
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "services"}
	var next atomic.Int64
	for block := 0; block < 10; block++ {
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64((block+1)*2000) {
						return
					}
					name := fmt.Sprintf("s-%06d", i)
					obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": name},
						"spec": map[string]any{"ports": []any{map[string]any{"port": 80}}}}}
					if _, err := dyn.Resource(gvr).Namespace("svc").Create(ctx, obj, metav1.CreateOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		fmt.Printf("services %d-%d: %.0f/s\n", block*2000, (block+1)*2000, 2000/time.Since(start).Seconds())
	}
}

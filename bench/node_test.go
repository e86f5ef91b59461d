package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/arca-backup/arca/internal/testenv"
)

// BenchmarkNodeStart prints how long a test cluster with one real node
// takes to start, component by component, and how long a first pod takes
// from create to Running on it (image pull from the loopback registry
// included). There is no physical limit to compare with; the figure is
// reported so that a slower start shows up in docs/benchmarks.md.
func BenchmarkNodeStart(b *testing.B) {
	for i := 0; i < b.N; i++ {
		start := time.Now()
		cp := testenv.StartControlPlane(b, testenv.ControlPlaneOptions{Nodes: 1})
		total := time.Since(start)
		cs := cp.Clientset(b)
		img := testenv.AppImage(b, cp.Registry)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		podStart := time.Now()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "first", Namespace: "default"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: img, Command: []string{"sleep", "3600"}}}},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "first", metav1.GetOptions{})
			return err == nil && p.Status.Phase == corev1.PodRunning, nil
		})
		cancel()
		if err != nil {
			b.Fatalf("first pod not Running: %v", err)
		}
		podTook := time.Since(podStart)
		fmt.Printf("node start: cluster with 1 node ready in %s (", total.Round(time.Millisecond))
		for _, k := range []string{"etcd+kube-apiserver", "kube-controller-manager", "node network", "registry+pause image", "kube-scheduler", "node arca-node-0"} {
			fmt.Printf("%s %s; ", k, cp.StartupTimes[k].Round(time.Millisecond))
		}
		fmt.Printf("); first pod Running %s after create\n", podTook.Round(time.Millisecond))
		b.ReportMetric(total.Seconds(), "cluster-s")
		b.ReportMetric(cp.StartupTimes["node arca-node-0"].Seconds(), "node-s")
		b.ReportMetric(podTook.Seconds(), "first-pod-s")
	}
}

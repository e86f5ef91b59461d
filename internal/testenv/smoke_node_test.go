package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestNodeRunsPods starts a cluster with two real nodes and shows what the
// rest of the tests rely on: pods are scheduled onto both nodes and run from
// the loopback registry's image, a command runs in a container through the
// API server's exec subresource, an in-cluster client in a pod reaches the
// API server through the `kubernetes` Service with its service-account
// token (and is refused what its identity may not do), and pods on
// different nodes reach each other.
func TestNodeRunsPods(t *testing.T) {
	cp := StartControlPlane(t, ControlPlaneOptions{Nodes: 2})
	cs := cp.Clientset(t)
	app := AppImage(t, cp.Registry)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	if len(cp.Nodes) != 2 {
		t.Fatalf("want 2 nodes, got %d", len(cp.Nodes))
	}
	for name, d := range cp.StartupTimes {
		t.Logf("startup %s: %s", name, d.Round(time.Millisecond))
	}

	// One server pod per node (spread by a hostname anti-affinity-free
	// nodeSelector on the hostname label the kubelet sets).
	var pods []*corev1.Pod
	for _, n := range cp.Nodes {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + n.Name, Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/hostname": n.Name},
				Containers: []corev1.Container{{
					Name:    "web",
					Image:   app,
					Command: []string{"sh", "-c", "mkdir -p /www && echo hello-from-" + n.Name + " > /www/index.html && exec busybox httpd -f -p 8080 -h /www"},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod: %v", err)
		}
		pods = append(pods, waitPodRunning(t, ctx, cs, "default", pod.Name))
	}
	for i, p := range pods {
		if p.Spec.NodeName != cp.Nodes[i].Name {
			t.Errorf("pod %s on node %q, want %q", p.Name, p.Spec.NodeName, cp.Nodes[i].Name)
		}
	}

	// Exec through the API server and the kubelet.
	out := execIn(t, cp.Config(), cs, "default", pods[0].Name, "web", "cat", "/www/index.html")
	if strings.TrimSpace(out) != "hello-from-"+cp.Nodes[0].Name {
		t.Fatalf("exec output %q", out)
	}
	// Pod to pod across nodes.
	out = execIn(t, cp.Config(), cs, "default", pods[0].Name, "web", "wget", "-q", "-O", "-", "http://"+pods[1].Status.PodIP+":8080/index.html")
	if strings.TrimSpace(out) != "hello-from-"+cp.Nodes[1].Name {
		t.Fatalf("cross-node fetch gave %q", out)
	}

	// An in-cluster client: arca from its own image, with no kubeconfig,
	// uses the pod's service-account token and CA (verified, no skip) to
	// reach the API server through the `kubernetes` Service. The default
	// service account may read nothing, so the answer is a 403 naming that
	// identity: proof that routing, TLS and token authentication all work.
	ext := ExtensionImage(t, cp.Registry)
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "in-cluster-probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeName:      cp.Nodes[1].Name,
			Containers: []corev1.Container{{
				Name:  "arca",
				Image: ext,
				Args:  []string{"extension", "show"},
			}},
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create probe pod: %v", err)
	}
	err := wait.PollUntilContextCancel(ctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, probe.Name, metav1.GetOptions{})
		return err == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed), err
	})
	if err != nil {
		t.Fatalf("probe pod did not finish: %v", err)
	}
	logs, err := cs.CoreV1().Pods("default").GetLogs(probe.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("probe logs: %v", err)
	}
	if !strings.Contains(string(logs), "system:serviceaccount:default:default") || !strings.Contains(string(logs), "forbidden") {
		t.Fatalf("in-cluster arca should reach the API server as system:serviceaccount:default:default and be refused; it printed:\n%s", logs)
	}
}

func waitPodRunning(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not Running: %v; status: %+v", ns, name, err, pod.Status)
	}
	return pod
}

func execIn(t *testing.T, cfg *rest.Config, cs kubernetes.Interface, ns, pod, container string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _, err := Exec(ctx, cfg, cs, ns, pod, container, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

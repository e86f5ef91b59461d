package extension

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// PodExecutor runs hook commands through the pods/exec API (WebSocket, with
// SPDY as fallback), like kubectl exec.
type PodExecutor struct {
	cfg *rest.Config
	cs  kubernetes.Interface
}

// NewPodExecutor returns an executor for the cluster of cfg.
func NewPodExecutor(cfg *rest.Config) (*PodExecutor, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &PodExecutor{cfg: cfg, cs: cs}, nil
}

// Exec implements Executor. A pod that is not Running, or whose container
// is not running, fails with an error wrapping ErrPodNotRunning before any
// exec request is made.
func (e *PodExecutor) Exec(ctx context.Context, nn types.NamespacedName, container string, command []string) (string, string, error) {
	pod, err := e.cs.CoreV1().Pods(nn.Namespace).Get(ctx, nn.Name, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("get pod %s: %w", nn, err)
	}
	if container == "" {
		if len(pod.Spec.Containers) == 0 {
			return "", "", fmt.Errorf("pod %s has no containers", nn)
		}
		container = pod.Spec.Containers[0].Name
	}
	found := false
	for _, c := range pod.Spec.Containers {
		found = found || c.Name == container
	}
	if !found {
		return "", "", fmt.Errorf("pod %s has no container %q", nn, container)
	}
	if pod.Status.Phase != corev1.PodRunning {
		phase := pod.Status.Phase
		if phase == "" {
			phase = "without a phase"
		}
		return "", "", fmt.Errorf("pod %s is %s: %w (cannot exec in container %q)", nn, phase, ErrPodNotRunning, container)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Running == nil {
			return "", "", fmt.Errorf("pod %s: container %q is not running: %w", nn, container, ErrPodNotRunning)
		}
	}
	req := e.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(nn.Namespace).Name(nn.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", req.URL().String())
	if err != nil {
		return "", "", err
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", req.URL())
	if err != nil {
		return "", "", err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
	if err != nil {
		return "", "", err
	}
	stdout, stderr := &tailBuffer{max: execOutputLimit}, &tailBuffer{max: execOutputLimit}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	return string(stdout.buf), string(stderr.buf), err
}

// execOutputLimit bounds what PodExecutor keeps of each stream: more than
// the runner keeps (v1alpha1.MaxHookOutput), so that it can tell the
// output was longer, and small, so that a chatty command costs no memory.
const execOutputLimit = 4 * v1alpha1.MaxHookOutput

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p = p[len(p)-b.max:]
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

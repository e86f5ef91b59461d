package extension

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// InstallError is an installation whose pod did not become Ready, with a
// stable code (v1alpha1.CodeExtension*) and a message naming the cause and
// the fix. The applied objects stay: fixing the cause and running
// `arca extension update` continues from there.
type InstallError struct {
	Code string
	Pod  string
	Msg  string
}

func (e *InstallError) Error() string { return e.Code + ": " + e.Msg }

// WaitOptions tune WaitReady.
type WaitOptions struct {
	// Timeout bounds the whole wait (default 3 minutes).
	Timeout time.Duration
	// UnschedulableGrace is how long the pod may stay unschedulable before
	// that is reported (default 15 s: the scheduler retries when nodes
	// change, and a node may just be joining).
	UnschedulableGrace time.Duration
	// Interval between looks (default 1 s).
	Interval time.Duration
}

// Ready is the extension's pod once it is Ready.
type Ready struct {
	Pod  string
	Node string
}

// WaitReady waits until the Deployment in ns has rolled out its current
// template and that pod is Ready. It fails early, with an *InstallError, on
// an image the node cannot pull, a crash-looping container (quoting the
// last lines it logged) and a pod the scheduler places on no node.
func WaitReady(ctx context.Context, cfg *rest.Config, ns string, o WaitOptions) (*Ready, error) {
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.UnschedulableGrace <= 0 {
		o.UnschedulableGrace = 15 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	deadline := start.Add(o.Timeout)
	var unschedSince time.Time
	last := "the Deployment has not created a pod yet"
	lastPod := ""
	for {
		r, state, err := lookOnce(ctx, cs, ns)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return r, nil
		}
		if state.pod != "" {
			last, lastPod = state.summary, state.pod
		}
		if state.fail != nil {
			return nil, state.fail
		}
		if state.unschedulable != "" {
			if unschedSince.IsZero() {
				unschedSince = time.Now()
			}
			if time.Since(unschedSince) >= o.UnschedulableGrace || time.Now().After(deadline) {
				return nil, &InstallError{Code: v1alpha1.CodeExtensionUnschedulable, Pod: state.pod, Msg: fmt.Sprintf(
					"no node accepts the extension pod %s/%s: %s. Fix the placement (--node-selector, --tolerations) or the "+
						"resources (--cpu-request, --memory-request), or add a node that fits, then run `arca extension update`",
					ns, state.pod, state.unschedulable)}
			}
		} else {
			unschedSince = time.Time{}
		}
		if time.Now().After(deadline) {
			pod := lastPod
			if pod == "" {
				pod = "(none)"
			} else if w := lastWarning(ctx, cs, ns, pod); w != "" {
				last += "; last warning event: " + w
			}
			return nil, &InstallError{Code: v1alpha1.CodeExtensionNotReady, Pod: lastPod, Msg: fmt.Sprintf(
				"the extension pod %s/%s was not Ready after %s: %s; see `kubectl -n %s describe pod %s` and its events, "+
					"or wait longer with --timeout", ns, pod, o.Timeout, last, ns, pod)}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.Interval):
		}
	}
}

type podState struct {
	pod, summary  string
	unschedulable string
	fail          *InstallError
}

// lookOnce reads the Deployment, its current ReplicaSet and that
// ReplicaSet's pods once.
func lookOnce(ctx context.Context, cs kubernetes.Interface, ns string) (*Ready, podState, error) {
	var st podState
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, v1alpha1.ExtensionName, metav1.GetOptions{})
	if err != nil {
		return nil, st, fmt.Errorf("read deployment %s/%s: %w", ns, v1alpha1.ExtensionName, err)
	}
	if d.Status.ObservedGeneration < d.Generation {
		// The controller has not seen the change yet: the revision
		// annotation, and so the pods found below, would be the previous
		// template's (a crash loop that the update just fixed).
		return nil, st, nil
	}
	hash, err := currentTemplateHash(ctx, cs, d)
	if err != nil || hash == "" {
		return nil, st, err
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelName + "=" + v1alpha1.ExtensionName + ",pod-template-hash=" + hash})
	if err != nil {
		return nil, st, fmt.Errorf("list extension pods: %w", err)
	}
	rolledOut := d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == ptr.Deref(d.Spec.Replicas, 1) &&
		d.Status.Replicas == d.Status.UpdatedReplicas
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		st.pod = p.Name
		if podReady(p) && rolledOut {
			return &Ready{Pod: p.Name, Node: p.Spec.NodeName}, st, nil
		}
		st.summary = summarize(p)
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				st.unschedulable = strings.TrimRight(strings.TrimSpace(c.Message), ".")
			}
		}
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, c := range statuses {
			if c.State.Waiting == nil {
				continue
			}
			switch c.State.Waiting.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
				st.fail = &InstallError{Code: v1alpha1.CodeExtensionImagePullFailed, Pod: p.Name, Msg: fmt.Sprintf(
					"node %s cannot pull the extension image %q (%s: %s). Make the image reachable from the node: "+
						"on kind, `kind load image-archive bin/arca-image.tar` (built by `make image`); or push it to a registry "+
						"the node reaches (`make image PUSH=REGISTRY/arca:TAG`) and pass --image REGISTRY/arca:TAG; for a private "+
						"registry create a docker-registry Secret in namespace %s and pass --image-pull-secret NAME; then run "+
						"`arca extension update`", orNone(p.Spec.NodeName), c.Image, c.State.Waiting.Reason,
					strings.TrimSpace(c.State.Waiting.Message), ns)}
				return nil, st, nil
			case "CrashLoopBackOff":
				st.fail = crashLoop(ctx, cs, p, c)
				return nil, st, nil
			}
		}
	}
	return nil, st, nil
}

// currentTemplateHash is the pod-template-hash of the ReplicaSet of the
// Deployment's current revision ("" until the controller made it).
func currentTemplateHash(ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment) (string, error) {
	rev := d.Annotations["deployment.kubernetes.io/revision"]
	if rev == "" {
		return "", nil
	}
	rss, err := cs.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelName + "=" + v1alpha1.ExtensionName})
	if err != nil {
		return "", fmt.Errorf("list replica sets: %w", err)
	}
	for _, rs := range rss.Items {
		if rs.Annotations["deployment.kubernetes.io/revision"] == rev && metav1.IsControlledBy(&rs, d) {
			return rs.Labels["pod-template-hash"], nil
		}
	}
	return "", nil
}

// lastWarning is the newest Warning event of a pod ("Reason: message"),
// e.g. a volume that cannot be mounted.
func lastWarning(ctx context.Context, cs kubernetes.Interface, ns, pod string) string {
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",type=Warning"})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	latest := evs.Items[0]
	for _, e := range evs.Items[1:] {
		if eventTime(e).After(eventTime(latest)) {
			latest = e
		}
	}
	return latest.Reason + ": " + strings.TrimSpace(latest.Message)
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func crashLoop(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod, c corev1.ContainerStatus) *InstallError {
	ended := "it exited"
	if t := c.LastTerminationState.Terminated; t != nil {
		ended = fmt.Sprintf("its last run ended with exit code %d (%s)", t.ExitCode, t.Reason)
		if t.Reason == "OOMKilled" {
			ended += fmt.Sprintf(": it used more than its memory limit %s; raise it with `arca extension update --memory-limit …`", memoryLimit(p, c.Name))
		}
	}
	logs, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, Previous: true, TailLines: ptr.To[int64](15)}).DoRaw(ctx)
	quoted := "(no log lines)"
	if err != nil {
		quoted = "(its log could not be read: " + err.Error() + ")"
	} else if s := strings.TrimSpace(string(logs)); s != "" {
		quoted = "\n    " + strings.ReplaceAll(s, "\n", "\n    ")
	}
	return &InstallError{Code: v1alpha1.CodeExtensionCrashLooping, Pod: p.Name, Msg: fmt.Sprintf(
		"the extension container %q in pod %s/%s keeps exiting (restarts: %d); %s. Its last log lines: %s\n"+
			"Fix the cause they name (storage, credentials, arguments), then run `arca extension update`",
		c.Name, p.Namespace, p.Name, c.RestartCount, ended, quoted)}
}

func memoryLimit(p *corev1.Pod, container string) string {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == container {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				return q.String()
			}
		}
	}
	return "(none set)"
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// summarize describes a pod that is not Ready in one line.
func summarize(p *corev1.Pod) string {
	parts := []string{"phase " + string(p.Status.Phase)}
	if p.Spec.NodeName != "" {
		parts = append(parts, "node "+p.Spec.NodeName)
	}
	for _, c := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case c.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("container %s waiting (%s %s)", c.Name, c.State.Waiting.Reason, strings.TrimSpace(c.State.Waiting.Message)))
		case c.State.Running != nil && !c.Ready:
			parts = append(parts, fmt.Sprintf("container %s running, not ready (restarts %d)", c.Name, c.RestartCount))
		case c.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("container %s terminated (%s, exit %d)", c.Name, c.State.Terminated.Reason, c.State.Terminated.ExitCode))
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", c.Type, c.Message))
		}
	}
	return strings.Join(parts, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

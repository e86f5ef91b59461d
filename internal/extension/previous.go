package extension

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// previousExit is why this extension's previous container ended, as its
// own pod's status tells (lastState.terminated): jobs still InProgress at
// start were interrupted by that end.
type previousExit struct {
	oomKilled   bool
	memoryLimit string // the container's limit, "" when none
}

// lastExit reads the pod named by Options.PodName/PodNamespace (the
// Deployment passes them through the downward API) once. Out of the
// cluster, or when the pod cannot be read, it knows nothing.
func (x *Extension) lastExit(ctx context.Context) previousExit {
	x.exitOnce.Do(func() {
		if x.opts.PodName == "" || x.opts.PodNamespace == "" {
			return
		}
		pod := &corev1.Pod{}
		if err := x.api.Get(ctx, types.NamespacedName{Namespace: x.opts.PodNamespace, Name: x.opts.PodName}, pod); err != nil {
			x.log.Info("cannot read the extension's own pod; interrupted jobs get the generic restart code", "pod", x.opts.PodName, "err", err.Error())
			return
		}
		x.exit = exitOf(pod)
		if x.exit.oomKilled {
			x.log.Info("the previous extension container was OOMKilled", "memoryLimit", x.exit.memoryLimit)
		}
	})
	return x.exit
}

func exitOf(pod *corev1.Pod) previousExit {
	var e previousExit
	for _, c := range pod.Spec.Containers {
		if c.Name == ContainerName {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				e.memoryLimit = q.String()
			}
		}
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == ContainerName && s.LastTerminationState.Terminated != nil && s.LastTerminationState.Terminated.Reason == "OOMKilled" {
			e.oomKilled = true
		}
	}
	return e
}

// interruptedResult is the failure of a job the previous container left
// InProgress: ExtensionOOMKilled, naming the limit and the flag that raises
// it, when that container was killed for memory; otherwise the kind's
// generic restart code.
func (x *Extension) interruptedResult(ctx context.Context, k *kind) result {
	after := "nothing was committed to the repository"
	if k.name == "restore" {
		after = "objects written before the restart remain"
	}
	if e := x.lastExit(ctx); e.oomKilled {
		limit, raise := e.memoryLimit, "a higher value"
		if q, err := resource.ParseQuantity(limit); err == nil {
			q.Add(q) // twice the limit: a step that usually suffices
			raise = q.String()
		}
		if limit == "" {
			limit = "(none set in the pod; the node ran out of memory)"
		}
		msg := fmt.Sprintf("the extension was OOMKilled while this %s ran: it needed more than its memory limit %s; %s. "+
			"Raise the limit with `arca extension update --memory-limit %s` (chart: resources.limits.memory), then create a new job to retry",
			k.name, limit, after, raise)
		return result{phase: v1alpha1.JobFailed, message: msg, errors: []v1alpha1.JobIssue{{Code: v1alpha1.CodeExtensionOOMKilled, Message: msg}}}
	}
	msg := fmt.Sprintf("the extension restarted while this %s ran; %s; create a new job to retry", k.name, after)
	return result{phase: v1alpha1.JobFailed, message: msg, errors: []v1alpha1.JobIssue{{Code: k.restartCode, Message: msg}}}
}

package extension

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Executor runs a command in a container of a pod. The real one uses the
// pods/exec API (PodExecutor); tests record calls instead.
type Executor interface {
	Exec(ctx context.Context, pod types.NamespacedName, container string, command []string) (stdout, stderr string, err error)
}

// ErrPodNotRunning is returned by PodExecutor for a pod that cannot run a
// command (Pending, Succeeded, Failed, or its container not started).
var ErrPodNotRunning = errors.New("pod is not running")

// hookTarget is one hook applied to one pod.
type hookTarget struct {
	hook string // namespace/name of the BackupHook or RestoreHook
	pod  types.NamespacedName
	spec *v1alpha1.HookSpec
}

// resolveHooks reads the referenced hooks (uncached) and finds their pods:
// in hook order, pods sorted by namespace and name. inScope says whether
// the job covers a namespace.
func (x *Extension) resolveHooks(ctx context.Context, refs []v1alpha1.NamespacedName, restoreHooks bool, inScope func(ns string) bool) ([]hookTarget, error) {
	var out []hookTarget
	for _, ref := range refs {
		var spec v1alpha1.HookSpec
		nn := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
		var err error
		if restoreHooks {
			h := &v1alpha1.RestoreHook{}
			err = x.api.Get(ctx, nn, h)
			spec = h.Spec
		} else {
			h := &v1alpha1.BackupHook{}
			err = x.api.Get(ctx, nn, h)
			spec = h.Spec
		}
		if apierrors.IsNotFound(err) {
			return nil, coded(v1alpha1.CodeHookNotFound, "hook %s not found", nn)
		}
		if err != nil {
			return nil, fmt.Errorf("read hook %s: %w", nn, err)
		}
		sel, err := v1alpha1.ParseLabelSelectors([]string{spec.LabelSelector})
		if err != nil {
			return nil, coded(v1alpha1.CodeInvalidSpec, "hook %s: labelSelector: %v", nn, err)
		}
		pods := &corev1.PodList{}
		if err := x.api.List(ctx, pods, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("hook %s: list pods: %w", nn, err)
		}
		sort.Slice(pods.Items, func(i, j int) bool {
			a, b := pods.Items[i], pods.Items[j]
			if a.Namespace != b.Namespace {
				return a.Namespace < b.Namespace
			}
			return a.Name < b.Name
		})
		s := spec
		for _, p := range pods.Items {
			if !inScope(p.Namespace) || !matchNamespace(p.Namespace, s.IncludedNamespaces, s.ExcludedNamespaces) {
				continue
			}
			out = append(out, hookTarget{hook: nn.String(), pod: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, spec: &s})
		}
	}
	return out, nil
}

func matchNamespace(ns string, include, exclude []string) bool {
	match := func(pats []string) bool {
		for _, p := range pats {
			if ok, _ := path.Match(p, ns); ok || p == "*" {
				return true
			}
		}
		return false
	}
	return (len(include) == 0 || match(include)) && !match(exclude)
}

// hookRunner runs the hooks of one job and collects their warnings.
type hookRunner struct {
	ex       Executor
	targets  []hookTarget
	reached  int // targets whose pre hooks were started: their post hooks run
	warnings []v1alpha1.JobIssue
}

// pre runs every target's pre hooks in order. A failing hook with
// onError Fail stops everything and returns an error coded PreHookFailed;
// with Continue it is a warning.
func (h *hookRunner) pre(ctx context.Context) error {
	for i, t := range h.targets {
		h.reached = i + 1
		for _, e := range t.spec.Pre {
			if err := h.exec(ctx, t, e); err != nil {
				msg := fmt.Sprintf("pre hook %s in pod %s: %v", t.hook, t.pod, err)
				if e.OnError == v1alpha1.HookContinue {
					h.warnings = append(h.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodeHookFailed, Message: msg, Object: t.pod.String()})
					continue
				}
				return coded(v1alpha1.CodePreHookFailed, "%s", msg)
			}
		}
	}
	return nil
}

// post runs the post hooks of the targets whose pre hooks started, also
// after a failure, so that what a pre hook froze is thawed. Failures are
// warnings: HookFailed (onError Continue) or PostHookFailed (onError Fail,
// which also skips that pod's remaining post hooks).
func (h *hookRunner) post(ctx context.Context) {
	for _, t := range h.targets[:h.reached] {
		for _, e := range t.spec.Post {
			if err := h.exec(ctx, t, e); err != nil {
				msg := fmt.Sprintf("post hook %s in pod %s: %v", t.hook, t.pod, err)
				if e.OnError == v1alpha1.HookContinue {
					h.warnings = append(h.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodeHookFailed, Message: msg, Object: t.pod.String()})
					continue
				}
				h.warnings = append(h.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodePostHookFailed, Message: msg, Object: t.pod.String()})
				break
			}
		}
	}
}

func (h *hookRunner) exec(ctx context.Context, t hookTarget, e v1alpha1.ExecHook) error {
	timeout := time.Duration(v1alpha1.DefaultHookTimeout) * time.Second
	if e.Timeout != nil && e.Timeout.Duration > 0 {
		timeout = e.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, stderr, err := h.ex.Exec(ctx, t.pod, e.Container, e.Command)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%q timed out after %s", strings.Join(e.Command, " "), timeout)
		}
		if s := strings.TrimSpace(stderr); s != "" {
			return fmt.Errorf("%q: %w: %s", strings.Join(e.Command, " "), err, s)
		}
		return fmt.Errorf("%q: %w", strings.Join(e.Command, " "), err)
	}
	return nil
}

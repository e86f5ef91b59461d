package extension

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilexec "k8s.io/client-go/util/exec"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/operations"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/selection"
)

// Executor runs a command in a container of a pod. The real one uses the
// pods/exec API (PodExecutor); unit tests record calls instead. A command
// that ran and exited non-zero returns an error implementing
// k8s.io/client-go/util/exec.ExitError.
type Executor interface {
	Exec(ctx context.Context, pod types.NamespacedName, container string, command []string) (stdout, stderr string, err error)
}

// ErrPodNotRunning is returned by PodExecutor for a pod that cannot run a
// command (Pending, Succeeded, Failed, or its container not started).
var ErrPodNotRunning = errors.New("pod is not running")

// hookDef is one referenced BackupHook or RestoreHook, read and checked.
type hookDef struct {
	name string // namespace/name
	ns   string // the hook object's namespace
	spec v1alpha1.HookSpec
	sel  labels.Selector
	// own: the hook lives in the extension's namespace, where only those
	// who control every job can write; it may act in every namespace the
	// job covers. Any other hook acts only in its own namespace.
	own bool
	// refusedAll: every includedNamespaces entry was refused, so the hook
	// acts nowhere (its HookNamespaceRefused warnings say why).
	refusedAll bool
}

// loadHooks reads the referenced hooks (uncached) and checks them. Entries
// of a hook's includedNamespaces that the namespace rule refuses become
// HookNamespaceRefused warnings.
func (x *Extension) loadHooks(ctx context.Context, refs []v1alpha1.NamespacedName, restoreHooks bool) ([]*hookDef, []v1alpha1.JobIssue, error) {
	var defs []*hookDef
	var warnings []v1alpha1.JobIssue
	for _, ref := range refs {
		nn := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
		var spec v1alpha1.HookSpec
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
			return nil, nil, coded(v1alpha1.CodeHookNotFound, "hook %s not found", nn)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read hook %s: %w", nn, err)
		}
		sel, err := v1alpha1.ParseLabelSelectors([]string{spec.LabelSelector})
		if err != nil {
			return nil, nil, coded(v1alpha1.CodeInvalidSpec, "hook %s: labelSelector: %v", nn, err)
		}
		for i, e := range spec.Pre {
			if e.WaitTimeout != nil {
				return nil, nil, coded(v1alpha1.CodeInvalidSpec, "hook %s: pre[%d].waitTimeout: only restore post hooks wait for their pods; remove it", nn, i)
			}
		}
		if !restoreHooks {
			for i, e := range spec.Post {
				if e.WaitTimeout != nil {
					return nil, nil, coded(v1alpha1.CodeInvalidSpec, "hook %s: post[%d].waitTimeout: only restore post hooks wait for their pods; remove it", nn, i)
				}
			}
		}
		d := &hookDef{name: nn.String(), ns: nn.Namespace, spec: spec, sel: sel, own: nn.Namespace == x.opts.Namespace}
		if !d.own {
			var kept []string
			for _, p := range spec.IncludedNamespaces {
				if p == d.ns {
					kept = append(kept, p)
					continue
				}
				warnings = append(warnings, v1alpha1.JobIssue{Code: v1alpha1.CodeHookNamespaceRefused, Object: d.name,
					Message: fmt.Sprintf("hook %s: includedNamespaces entry %q refused: a hook outside the extension's namespace %s acts only in its own namespace %s; "+
						"move the hook into namespace %s, or into %s to reach other namespaces", d.name, p, x.opts.Namespace, d.ns, d.ns, x.opts.Namespace)})
			}
			d.refusedAll = len(spec.IncludedNamespaces) > 0 && len(kept) == 0
			d.spec.IncludedNamespaces = kept
		}
		defs = append(defs, d)
	}
	return defs, warnings, nil
}

// acts says whether the hook may act on pods in namespace ns: a hook in
// the extension's namespace wherever its patterns match (source is the
// namespace ns was restored from, "" for a backup); any other hook only in
// home, its own namespace (restore: the one its namespace is restored
// into), when its patterns do not exclude its own namespace.
func (d *hookDef) acts(ns, source, home string) bool {
	if d.own {
		return matchNamespace(ns, d.spec.IncludedNamespaces, d.spec.ExcludedNamespaces) ||
			source != "" && matchNamespace(source, d.spec.IncludedNamespaces, d.spec.ExcludedNamespaces)
	}
	return !d.refusedAll && ns == home && matchNamespace(d.ns, d.spec.IncludedNamespaces, d.spec.ExcludedNamespaces)
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

// where says in words where a hook looks for pods, for its warnings.
func (d *hookDef) where() string {
	sel := d.spec.LabelSelector
	if sel == "" {
		sel = "(every pod)"
	}
	if d.own {
		return fmt.Sprintf("labelSelector %q in the job's namespaces", sel)
	}
	return fmt.Sprintf("labelSelector %q in its own namespace %s", sel, d.ns)
}

func (d *hookDef) noPod(why string) v1alpha1.JobIssue {
	return v1alpha1.JobIssue{Code: v1alpha1.CodeHookMatchedNoPod, Object: d.name,
		Message: fmt.Sprintf("hook %s matched no pod (%s)%s; its commands did not run", d.name, d.where(), why)}
}

// listPods lists the pods a hook selects in namespace ns ("" for all),
// sorted by namespace and name, without those being deleted or finished.
func (x *Extension) listPods(ctx context.Context, d *hookDef, ns string) ([]corev1.Pod, error) {
	pods := &corev1.PodList{}
	opts := []client.ListOption{client.MatchingLabelsSelector{Selector: d.sel}}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := x.api.List(ctx, pods, opts...); err != nil {
		return nil, fmt.Errorf("hook %s: list pods: %w", d.name, err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// hookTarget is one hook applied to one pod.
type hookTarget struct {
	hook string // namespace/name of the BackupHook or RestoreHook
	pod  types.NamespacedName
	spec *v1alpha1.HookSpec
}

// hookRunner runs hook commands and collects their results and warnings.
type hookRunner struct {
	ex       Executor
	now      func() time.Time
	warnings []v1alpha1.JobIssue
	results  []v1alpha1.HookResult
}

// run runs one phase's commands in one pod, in order. In the pre phase a
// failing command with onError Fail stops and returns an error coded
// PreHookFailed; in the post phase it is a PostHookFailed warning and the
// pod's remaining post commands are skipped. onError Continue makes any
// failure a HookFailed warning.
func (h *hookRunner) run(ctx context.Context, t hookTarget, phase string, cmds []v1alpha1.ExecHook) error {
	for _, e := range cmds {
		err := h.exec(ctx, t, phase, e)
		if err == nil {
			continue
		}
		msg := fmt.Sprintf("%s hook %s in pod %s: %v", phase, t.hook, t.pod, err)
		switch {
		case e.OnError == v1alpha1.HookContinue:
			h.warnings = append(h.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodeHookFailed, Message: msg, Object: t.pod.String()})
		case phase == v1alpha1.HookPhasePre:
			return coded(v1alpha1.CodePreHookFailed, "%s", msg)
		default:
			h.warnings = append(h.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodePostHookFailed, Message: msg, Object: t.pod.String()})
			return nil
		}
	}
	return nil
}

// exec runs one command, bounded by its timeout, and records its result.
func (h *hookRunner) exec(ctx context.Context, t hookTarget, phase string, e v1alpha1.ExecHook) error {
	timeout := time.Duration(v1alpha1.DefaultHookTimeout) * time.Second
	if e.Timeout != nil && e.Timeout.Duration > 0 {
		timeout = e.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := h.now()
	stdout, stderr, err := h.ex.Exec(ctx, t.pod, e.Container, e.Command)
	res := v1alpha1.HookResult{Hook: t.hook, Phase: phase, Pod: t.pod.String(), Container: e.Container, Command: e.Command,
		StartTime: metav1.NewTime(start), Duration: metav1.Duration{Duration: h.now().Sub(start).Round(time.Millisecond)}}
	var tr1, tr2 bool
	res.Stdout, tr1 = tail(stdout, v1alpha1.MaxHookOutput)
	res.Stderr, tr2 = tail(stderr, v1alpha1.MaxHookOutput)
	res.Truncated = tr1 || tr2
	var exitErr utilexec.ExitError
	if errors.As(err, &exitErr) {
		code := int32(exitErr.ExitStatus())
		res.ExitCode = &code
	} else if err == nil {
		zero := int32(0)
		res.ExitCode = &zero
	}
	cmd := strings.Join(e.Command, " ")
	switch {
	case err == nil:
	case ctx.Err() == context.DeadlineExceeded:
		err = fmt.Errorf("%q timed out after %s (the exec stream was closed; the command may still run in the container)", cmd, timeout)
	case res.ExitCode != nil:
		err = fmt.Errorf("%q exited with code %d", cmd, *res.ExitCode)
		if s := lastLine(res.Stderr); s != "" {
			err = fmt.Errorf("%w: %s", err, s)
		}
	default:
		err = fmt.Errorf("%q: %w", cmd, err)
	}
	if err != nil {
		res.Error = err.Error()
	}
	if len(h.results) < v1alpha1.MaxHookResults {
		h.results = append(h.results, res)
	}
	return err
}

// tail returns the last max bytes of s (starting at a character boundary)
// and whether anything was cut.
func tail(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	i := len(s) - max
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:], true
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// backupTarget is one hook in one pod during a backup: its pre commands
// run before the pod's claims are snapshotted, its post commands once
// every one of those snapshots is cut.
type backupTarget struct {
	hookTarget
	claims  []types.NamespacedName // the pod's claims
	waiting map[types.NamespacedName]bool
	pre     bool // pre commands started
	post    bool // post commands run
}

// backupHooks runs a backup's hooks around its volume snapshots; it is the
// volume layer's volume.SnapshotHooks.
type backupHooks struct {
	run *hookRunner
	// resolve finds the targets when the snapshots are about to start
	// (pods are looked up then, not before the object scan).
	resolve func(ctx context.Context) ([]*backupTarget, []v1alpha1.JobIssue, error)
	// postCtx is not cancelled with the job: a frozen pod is thawed even
	// when the backup is stopped.
	postCtx context.Context
	targets []*backupTarget
}

var _ operations.BackupHooks = (*backupHooks)(nil)

// BeforeSnapshots runs the pre commands of every target, in order. A pod
// none of whose claims is about to be snapshotted has nothing to be held
// for: its post commands follow its pre commands at once.
func (b *backupHooks) BeforeSnapshots(ctx context.Context, claims []types.NamespacedName) error {
	targets, warnings, err := b.resolve(ctx)
	if err != nil {
		return err
	}
	b.run.warnings = append(b.run.warnings, warnings...)
	b.targets = targets
	snap := map[types.NamespacedName]bool{}
	for _, c := range claims {
		snap[c] = true
	}
	for _, t := range b.targets {
		t.waiting = map[types.NamespacedName]bool{}
		for _, c := range t.claims {
			if snap[c] {
				t.waiting[c] = true
			}
		}
		t.pre = true
		if err := b.run.run(ctx, t.hookTarget, v1alpha1.HookPhasePre, t.spec.Pre); err != nil {
			return err
		}
		if len(t.waiting) == 0 {
			b.post(t)
		}
	}
	return nil
}

// SnapshotCut runs the post commands of the targets whose last snapshot
// this was.
func (b *backupHooks) SnapshotCut(_ context.Context, claim types.NamespacedName) {
	for _, t := range b.targets {
		if !t.pre || t.post || !t.waiting[claim] {
			continue
		}
		delete(t.waiting, claim)
		if len(t.waiting) == 0 {
			b.post(t)
		}
	}
}

// Finish runs the post commands still owed: for every target whose pre
// commands started, whatever happened since (a failed pre hook, a failed
// or cancelled backup).
func (b *backupHooks) Finish() {
	for _, t := range b.targets {
		if t.pre && !t.post {
			b.post(t)
		}
	}
}

func (b *backupHooks) post(t *backupTarget) {
	t.post = true
	_ = b.run.run(b.postCtx, t.hookTarget, v1alpha1.HookPhasePost, t.spec.Post)
}

// backupTargets finds, when the snapshots are about to be cut, the pods of
// a backup's hooks: those the hook selects (namespace rule: hookDef.acts)
// in namespaces the backup covers, with the claims their volumes use. A
// hook that finds none gives a HookMatchedNoPod warning.
func (x *Extension) backupTargets(ctx context.Context, defs []*hookDef, inScope func(ns string) bool) ([]*backupTarget, []v1alpha1.JobIssue, error) {
	var out []*backupTarget
	var warnings []v1alpha1.JobIssue
	for _, d := range defs {
		if d.refusedAll {
			continue // HookNamespaceRefused said why
		}
		if !d.own && !inScope(d.ns) {
			warnings = append(warnings, d.noPod(fmt.Sprintf(": the backup does not include namespace %s", d.ns)))
			continue
		}
		ns := ""
		if !d.own {
			ns = d.ns
		}
		pods, err := x.listPods(ctx, d, ns)
		if err != nil {
			return nil, nil, err
		}
		n := 0
		for i := range pods {
			p := &pods[i]
			if !inScope(p.Namespace) || !d.acts(p.Namespace, "", d.ns) {
				continue
			}
			n++
			out = append(out, &backupTarget{hookTarget: hookTarget{hook: d.name, pod: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, spec: &d.spec},
				claims: podClaims(p)})
		}
		if n == 0 {
			warnings = append(warnings, d.noPod(""))
		}
	}
	return out, warnings, nil
}

// podClaims lists the claims a pod's volumes use (generic ephemeral
// volumes included: their claim is <pod>-<volume>).
func podClaims(p *corev1.Pod) []types.NamespacedName {
	var out []types.NamespacedName
	for _, v := range p.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: v.PersistentVolumeClaim.ClaimName})
		case v.Ephemeral != nil:
			out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: p.Name + "-" + v.Name})
		}
	}
	return out
}

// restorePre runs restore pre hooks in the pods that exist before the
// restore writes, in the namespaces it restores into (inScope). Their
// post commands are not tied to them: restore post hooks run in the
// restored pods (restorePost).
func (x *Extension) restorePre(ctx context.Context, hr *hookRunner, defs []*hookDef, inScope func(ns string) bool, mapNS func(string) string) error {
	for _, d := range defs {
		if len(d.spec.Pre) == 0 || d.refusedAll {
			continue
		}
		home := mapNS(d.ns)
		ns := ""
		if !d.own {
			ns = home
		}
		pods, err := x.listPods(ctx, d, ns)
		if err != nil {
			return err
		}
		n := 0
		for _, p := range pods {
			if !inScope(p.Namespace) || !d.acts(p.Namespace, "", home) {
				continue
			}
			n++
			t := hookTarget{hook: d.name, pod: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, spec: &d.spec}
			if err := hr.run(ctx, t, v1alpha1.HookPhasePre, d.spec.Pre); err != nil {
				return err
			}
		}
		if n == 0 {
			hr.warnings = append(hr.warnings, d.noPod(" before the restore"))
		}
	}
	return nil
}

// restoreHooks runs a restore's hooks (operations.RestoreHooks): pre hooks
// in the pods that exist before, post hooks in the restored pods.
type restoreHooks struct {
	x    *Extension
	run  *hookRunner
	defs []*hookDef
	sel  *selection.Selector
	crit *v1alpha1.RestoreCriteria
	// name and rpLabel are the restore's labels on what it writes.
	name, rpLabel string
}

var _ operations.RestoreHooks = (*restoreHooks)(nil)

func (h *restoreHooks) mapNS(ns string) string {
	if to, ok := h.crit.NamespaceMappings[ns]; ok {
		return to
	}
	return ns
}

// inScope tells the namespaces the restore writes into: included ones, mapped.
func (h *restoreHooks) inScope(target string) bool {
	for from, to := range h.crit.NamespaceMappings {
		if to == target && h.sel.Namespaces.Includes(from) {
			return true
		}
	}
	_, mapped := h.crit.NamespaceMappings[target]
	return !mapped && h.sel.Namespaces.Includes(target)
}

func (h *restoreHooks) BeforeRestore(ctx context.Context) error {
	return h.x.restorePre(ctx, h.run, h.defs, h.inScope, h.mapNS)
}

func (h *restoreHooks) AfterRestore(ctx context.Context, res *restore.Result) {
	rs := restored{name: h.name, rpLabel: h.rpLabel, namespaces: map[string]string{}, mapNS: h.mapNS}
	for it := range res.Items.All() {
		if it.Namespace != "" && (it.Action == restore.Created || it.Action == restore.Patched) {
			rs.namespaces[it.Namespace] = it.SourceNamespace
		}
	}
	h.x.restorePost(ctx, h.run, h.defs, rs)
}

// restored describes what a restore wrote, for its post hooks.
type restored struct {
	name, rpLabel string            // the restore's labels on what it wrote
	namespaces    map[string]string // namespaces it wrote into → the source namespace
	mapNS         func(string) string
}

// restorePost runs restore post hooks in the restored pods: pods the
// restore created, or whose controller (through at most four owners) it
// created, in the namespaces it wrote into. Each hook waits, up to the
// largest waitTimeout of its post commands, until it sees restored pods
// and all of them are Ready; a pod still not Ready then is a warning, as
// is a hook that found no restored pod (HookMatchedNoPod).
func (x *Extension) restorePost(ctx context.Context, hr *hookRunner, defs []*hookDef, rs restored) {
	for _, d := range defs {
		if len(d.spec.Post) == 0 || d.refusedAll {
			continue
		}
		home := rs.mapNS(d.ns)
		var nss []string
		for ns, src := range rs.namespaces {
			if d.acts(ns, src, home) {
				nss = append(nss, ns)
			}
		}
		sort.Strings(nss)
		if len(nss) == 0 {
			where := "in the job's namespaces"
			if !d.own {
				where = "in namespace " + home
			}
			hr.warnings = append(hr.warnings, d.noPod(": the restore wrote nothing "+where))
			continue
		}
		wait := time.Duration(0)
		for _, e := range d.spec.Post {
			w := time.Duration(v1alpha1.DefaultHookWaitTimeout) * time.Second
			if e.WaitTimeout != nil {
				w = e.WaitTimeout.Duration
			}
			wait = max(wait, w)
		}
		pods, notReady, err := x.waitRestoredPods(ctx, d, nss, rs, wait)
		if err != nil {
			hr.warnings = append(hr.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodeHookFailed, Object: d.name,
				Message: fmt.Sprintf("post hook %s: %v", d.name, err)})
			continue
		}
		if len(pods) == 0 && len(notReady) == 0 {
			hr.warnings = append(hr.warnings, d.noPod(fmt.Sprintf(" among the restored pods in %s within waitTimeout %s", strings.Join(nss, ", "), wait)))
			continue
		}
		for _, p := range notReady {
			code := v1alpha1.CodePostHookFailed
			if slices.ContainsFunc(d.spec.Post, func(e v1alpha1.ExecHook) bool { return e.OnError == v1alpha1.HookContinue }) {
				code = v1alpha1.CodeHookFailed
			}
			hr.warnings = append(hr.warnings, v1alpha1.JobIssue{Code: code, Object: p.Namespace + "/" + p.Name,
				Message: fmt.Sprintf("post hook %s in pod %s/%s: not run, the pod was not Ready within waitTimeout %s (%s)", d.name, p.Namespace, p.Name, wait, notReadyReason(&p))})
		}
		for _, p := range pods {
			t := hookTarget{hook: d.name, pod: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, spec: &d.spec}
			_ = hr.run(ctx, t, v1alpha1.HookPhasePost, d.spec.Post)
		}
	}
}

// waitRestoredPods polls the hook's restored pods in nss until there are
// some and all are Ready, or wait passes: it returns the Ready ones and
// the others.
func (x *Extension) waitRestoredPods(ctx context.Context, d *hookDef, nss []string, rs restored, wait time.Duration) (ready, notReady []corev1.Pod, err error) {
	deadline := time.Now().Add(wait)
	known := map[types.UID]bool{} // owner UID → restored by this restore
	for {
		ready, notReady = nil, nil
		for _, ns := range nss {
			pods, err := x.listPods(ctx, d, ns)
			if err != nil {
				return nil, nil, err
			}
			for _, p := range pods {
				if !x.restoredBy(ctx, &p.ObjectMeta, p.Namespace, rs, known, 0) {
					continue
				}
				if podReady(&p) {
					ready = append(ready, p)
				} else {
					notReady = append(notReady, p)
				}
			}
		}
		if len(ready) > 0 && len(notReady) == 0 || !time.Now().Before(deadline) {
			return ready, notReady, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// restoredBy says whether an object carries the restore's labels, or its
// controller does (through at most four owners: Pod → ReplicaSet →
// Deployment, Pod → Job → CronJob, …).
func (x *Extension) restoredBy(ctx context.Context, m *metav1.ObjectMeta, ns string, rs restored, known map[types.UID]bool, depth int) bool {
	if m.Labels[v1alpha1.LabelRestore] == rs.name && m.Labels[v1alpha1.LabelRecoveryPoint] == rs.rpLabel {
		return true
	}
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil || depth >= 4 {
		return false
	}
	if v, ok := known[ref.UID]; ok {
		return v
	}
	owner := &metav1.PartialObjectMetadata{}
	owner.SetGroupVersionKind(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	if err := x.api.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, owner); err != nil || owner.UID != ref.UID {
		return false // not cached: the owner may appear in a later round
	}
	v := x.restoredBy(ctx, &owner.ObjectMeta, ns, rs, known, depth+1)
	known[ref.UID] = v
	return v
}

// notReadyReason says in a few words why a pod is not Ready (podReady
// is in wait.go).
func notReadyReason(p *corev1.Pod) string {
	s := "phase " + string(p.Status.Phase)
	if p.Status.Phase == "" {
		s = "no phase yet"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return s + ", container " + cs.Name + " " + w.Reason
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return s + ", " + c.Message
		}
	}
	return s
}

// Package restore is the resource restore engine: it reads a recovery
// point, selects objects by the restore criteria, rewrites them (server
// fields stripped, namespaces mapped, resource modifiers, owner references)
// and creates them in dependency tiers, in parallel within a tier, with the
// conflict policy Skip or Patch. Every object gets a per-item result.
//
// A dry run goes through the same code with the API server's dry-run mode,
// so its plan is the real run's plan. The rules are described in
// docs/engine.md.
package restore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/modifiers"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/selection"
)

// Reader is what a restore reads from a repository.
type Reader interface {
	LoadBlob(ctx context.Context, id repo.ID) ([]byte, error)
	WalkTree(ctx context.Context, t repo.Tree, fn func(repo.TreeEntry) error) error
}

// Action is what happened (or, in a dry run, would happen) to one object.
type Action string

const (
	Created         Action = "Created"
	Patched         Action = "Patched"
	Unchanged       Action = "Unchanged"       // exists and already equal (Patch policy)
	SkippedExists   Action = "SkippedExists"   // exists; Skip policy
	SkippedFiltered Action = "SkippedFiltered" // not selected by the criteria
	SkippedOwned    Action = "SkippedOwned"    // its controller is restored and recreates it
	Failed          Action = "Failed"
)

// Warning codes of a restore.
const (
	// WarnMappingUnused: a namespace mapping names a namespace the recovery point does not hold.
	WarnMappingUnused = "NamespaceMappingUnused"
	// WarnCRDNotEstablished: a restored CRD did not become Established in time.
	WarnCRDNotEstablished = "CRDNotEstablished"
	// WarnOwnerDropped: an owner reference was dropped because its owner is not restored.
	WarnOwnerDropped = "OwnerReferenceDropped"
)

// Item is the result of one object.
type Item struct {
	Group           string `json:"group,omitempty"`
	Version         string `json:"version"`
	Resource        string `json:"resource"`
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace,omitempty"`       // in the target cluster
	SourceNamespace string `json:"sourceNamespace,omitempty"` // when mapped
	Name            string `json:"name"`
	Tier            int    `json:"tier"`
	Action          Action `json:"action"`
	Reason          string `json:"reason,omitempty"`
}

// Ref formats the item as resource.group namespace/name.
func (it Item) Ref() string {
	s := kube.GroupResource(it.Group, it.Resource) + " "
	if it.Namespace != "" {
		s += it.Namespace + "/"
	}
	return s + it.Name
}

// Warning is a non-fatal problem of a restore.
type Warning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Object  string `json:"object,omitempty"`
}

// Result is the outcome of a restore.
type Result struct {
	Name          string         `json:"name"`
	RecoveryPoint string         `json:"recoveryPoint"`
	DryRun        bool           `json:"dryRun"`
	Started       time.Time      `json:"started"`
	Finished      time.Time      `json:"finished"`
	Summary       map[Action]int `json:"summary"`
	Warnings      []Warning      `json:"warnings,omitempty"`
	// Tiers says how long each tier took, for tiers that had objects.
	Tiers []TierStat `json:"tiers,omitempty"`
	// Items has one result per object, sorted by tier, type, namespace
	// and name; kept compactly (items.go).
	Items Items `json:"items"`
}

// TierStat is the duration of one restore tier.
type TierStat struct {
	Tier     int           `json:"tier"`
	Types    []string      `json:"types"`
	Items    int           `json:"items"`
	Duration time.Duration `json:"duration"`
}

// Failures are the failed items.
func (r *Result) Failures() []Item {
	var out []Item
	for it := range r.Items.All() {
		if it.Action == Failed {
			out = append(out, it)
		}
	}
	return out
}

// ItemsFailedError is returned by Run when the restore ran but items failed.
type ItemsFailedError struct{ Items []Item }

func (e *ItemsFailedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d item(s) failed to restore:", len(e.Items))
	for i, it := range e.Items {
		if i == 20 {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Items)-20)
			break
		}
		fmt.Fprintf(&b, "\n  %s: %s", it.Ref(), it.Reason)
	}
	return b.String()
}

// CriteriaError is returned for criteria that cannot work; nothing has been
// written when it is.
type CriteriaError struct{ Err error }

func (e *CriteriaError) Error() string { return "invalid restore criteria: " + e.Err.Error() }
func (e *CriteriaError) Unwrap() error { return e.Err }

// Options configure one restore.
type Options struct {
	Criteria v1alpha1.RestoreCriteria
	// Modifiers overrides Criteria.ResourceModifiers when set.
	Modifiers *modifiers.Modifiers
	// Name labels restored objects (arca.io/restore); default restore-<time>.
	Name string
	// Workers is how many objects are written at once (default 16).
	Workers int
	// CRDTimeout bounds the wait for restored CRDs (default 60 s).
	CRDTimeout time.Duration
	Now        func() time.Time
	Progress   func(Progress)
	// Volumes, when set, decides how volumes and claims are restored (volumes.go).
	Volumes VolumeRestorer
}

// Progress reports a running restore.
type Progress struct {
	Done, Total int64
	Tier        int
}

// Prepared is a validated restore.
type Prepared struct {
	opts    Options
	crit    *v1alpha1.RestoreCriteria
	mods    *modifiers.Modifiers
	sel     *selection.Selector
	rp      *repo.RecoveryPoint
	rd      Reader
	dyn     dynamic.Interface
	dc      discovery.DiscoveryInterface
	rpLabel string
}

// Prepare validates the criteria against the recovery point and the target
// cluster; errors here mean nothing was written.
func Prepare(ctx context.Context, cfg *rest.Config, rp *repo.RecoveryPoint, rd Reader, opts Options) (*Prepared, error) {
	crit := opts.Criteria
	if err := crit.Validate(); err != nil {
		return nil, &CriteriaError{err}
	}
	sel, err := selection.ForRestore(&crit)
	if err != nil {
		return nil, &CriteriaError{err}
	}
	mods := opts.Modifiers
	if mods == nil {
		if mods, err = modifiers.Compile(crit.ResourceModifiers); err != nil {
			return nil, &CriteriaError{err}
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	known := []kube.Resource{}
	for _, t := range rp.Resources {
		known = append(known, kube.Resource{Group: t.Group, Version: t.Version, Resource: t.Resource, Kind: t.Kind, Namespaced: t.Namespaced})
	}
	if d, err := kube.Discover(dc); err == nil {
		known = append(known, d.Resources...)
		known = append(known, d.Excluded...)
	}
	if err := sel.Types.Resolve(known); err != nil {
		return nil, &CriteriaError{err}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.CRDTimeout <= 0 {
		opts.CRDTimeout = 60 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Name == "" {
		opts.Name = "restore-" + opts.Now().UTC().Format("20060102-150405")
	}
	if msgs := validationLabelValue(opts.Name); msgs != "" {
		return nil, &CriteriaError{fmt.Errorf("restore name %q: %s", opts.Name, msgs)}
	}
	return &Prepared{opts: opts, crit: &crit, mods: mods, sel: sel, rp: rp, rd: rd, dyn: dyn, dc: dc,
		rpLabel: RecoveryPointLabel(rp.ID.String())}, nil
}

// Run restores rp into the cluster of cfg. When items fail the result is
// returned together with an *ItemsFailedError.
func Run(ctx context.Context, cfg *rest.Config, rp *repo.RecoveryPoint, rd Reader, opts Options) (*Result, error) {
	p, err := Prepare(ctx, cfg, rp, rd, opts)
	if err != nil {
		return nil, err
	}
	return p.Run(ctx)
}

// objKey identifies an object by group, kind, target namespace and name:
// what an owner reference names.
type objKey struct{ group, kind, namespace, name string }

type run struct {
	*Prepared
	res *Result

	// What the restore knows of every object is kept per object, so it is
	// kept small: objects are named by a 128-bit hash of their key
	// (objects.go), not by their strings.
	ids      objIDs
	owners   ownerSet // selected objects of the recovery point (potential owners)
	mu       sync.Mutex
	objs     objStates       // objects restored (or found existing): UID; created in this run
	needNS   map[string]bool // target namespaces of selected namespaced objects
	deferred []deferredItem  // objects waiting for their owners
	crds     []*unstructured.Unstructured
	// sensitive counts the RBAC and admission objects written (warnings).
	sensitive int
	done      atomic.Int64
	total     int64
	// stop is the first error that ends the restore before its next tier
	// (a StopsRestore error: the repository became unreachable while a
	// claim was filled).
	stop error
}

// StoppedError is a restore that stopped before a tier: what was written
// until then stays, and is listed, and the workloads of later tiers were
// not created.
type StoppedError struct {
	Err error
	// Tier is the tier that stopped it; Result lists what was done.
	Tier   int
	Result *Result
}

func (e *StoppedError) Error() string {
	s := e.Result.Summary
	return fmt.Sprintf("%v; the restore stopped after tier %d (%d objects created, %d patched, %d failed) and created nothing of the later tiers (workloads)",
		e.Err, e.Tier, s[Created], s[Patched], s[Failed])
}

func (e *StoppedError) Unwrap() error { return e.Err }

// deferredItem is an object waiting for its owners, held as its JSON (a
// decoded object takes several times its size).
type deferredItem struct {
	tree repo.ResourceTree
	doc  []byte
	item Item
}

func (d deferredItem) object() (*unstructured.Unstructured, error) {
	obj := map[string]any{}
	if err := json.Unmarshal(d.doc, &obj); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

// Run performs the restore.
func (p *Prepared) Run(ctx context.Context) (*Result, error) {
	r := &run{Prepared: p,
		res: &Result{Name: p.opts.Name, RecoveryPoint: p.rp.ID.String(), DryRun: p.crit.DryRun, Started: p.opts.Now(),
			Summary: map[Action]int{}},
		ids: newObjIDs(), needNS: map[string]bool{}}
	if err := r.survey(ctx); err != nil {
		return nil, err
	}
	r.objs = newObjStates(&r.owners)
	byTier := make([][]repo.ResourceTree, len(Tiers))
	for _, t := range p.rp.Resources {
		tier := TierOf(kube.GroupResource(t.Group, t.Resource))
		byTier[tier] = append(byTier[tier], t)
	}
	for tier, trees := range byTier {
		tierStart, before := time.Now(), r.done.Load()
		if err := r.tier(ctx, tier, trees); err != nil {
			return nil, err
		}
		if r.stop != nil {
			r.res.Finished = p.opts.Now()
			r.res.Items.sort()
			return nil, &StoppedError{Err: r.stop, Tier: tier, Result: r.res}
		}
		if len(trees) > 0 {
			st := TierStat{Tier: tier, Items: int(r.done.Load() - before), Duration: time.Since(tierStart)}
			for _, t := range trees {
				st.Types = append(st.Types, kube.GroupResource(t.Group, t.Resource))
			}
			r.res.Tiers = append(r.res.Tiers, st)
		}
		switch tier {
		case TierCRDs:
			r.waitCRDs(ctx)
		case TierNamespaces:
			if err := r.ensureNamespaces(ctx); err != nil {
				return nil, err
			}
		}
	}
	if err := r.runDeferred(ctx); err != nil {
		return nil, err
	}
	res := r.res
	res.Finished = p.opts.Now()
	if n := r.sensitive - MaxSensitiveWarnings; n > 0 {
		res.Warnings = append(res.Warnings, Warning{Code: v1alpha1.CodeRBACObjectRestored, Message: fmt.Sprintf(
			"and %d more RBAC or admission objects restored (only the first %d are named; the restore's items list them all)", n, MaxSensitiveWarnings)})
	}
	res.Items.sort()
	if f := res.Failures(); len(f) > 0 {
		return res, &ItemsFailedError{Items: f}
	}
	return res, nil
}

func (r *run) treeSelected(t repo.ResourceTree) bool {
	res := kube.Resource{Group: t.Group, Version: t.Version, Resource: t.Resource, Kind: t.Kind, Namespaced: t.Namespaced}
	if r.withClaims(t) {
		// Read without includeClusterScopeResources: each volume is then
		// restored only with its claim (restoreObject checks the claim's
		// namespace).
		return r.sel.Types.Includes(res)
	}
	return r.sel.IncludesType(res)
}

// withClaims reports a tree of PersistentVolumes restored with the claims
// they are bound to, like a namespace with its contents: cluster-scoped,
// but not left out when includeClusterScopeResources is off (with it, every
// volume is restored).
func (r *run) withClaims(t repo.ResourceTree) bool {
	return t.Group == "" && t.Resource == "persistentvolumes" && !r.sel.ClusterScope
}

func (r *run) mapNS(ns string) string {
	if to, ok := r.crit.NamespaceMappings[ns]; ok {
		return to
	}
	return ns
}

// survey walks every tree once without loading objects: it learns which
// objects are restored (the owners of the owner-reference rule) and which
// target namespaces are needed.
func (r *run) survey(ctx context.Context) error {
	seenNS := map[string]bool{}
	for _, t := range r.rp.Resources {
		selected := r.treeSelected(t)
		err := r.rd.WalkTree(ctx, t.Tree, func(e repo.TreeEntry) error {
			r.total++
			if t.Namespaced {
				seenNS[e.Namespace] = true
			} else if t.Group == "" && t.Resource == "namespaces" {
				seenNS[e.Name] = true
			}
			if !selected || (t.Namespaced && !r.sel.Namespaces.Includes(e.Namespace)) {
				return nil
			}
			if t.Group == "" && t.Resource == "namespaces" && !r.sel.Namespaces.Includes(e.Name) {
				return nil
			}
			ns, name := "", e.Name
			if t.Namespaced {
				ns = r.mapNS(e.Namespace)
				r.needNS[ns] = true
			} else if t.Group == "" && t.Resource == "namespaces" {
				name = r.mapNS(name)
			}
			r.owners.add(r.ids.of(objKey{t.Group, t.Kind, ns, name}))
			return nil
		})
		if err != nil {
			return fmt.Errorf("read tree of %s: %w", kube.GroupResource(t.Group, t.Resource), err)
		}
	}
	r.owners.seal()
	for _, from := range selection.SortedKeys(r.crit.NamespaceMappings) {
		if !seenNS[from] {
			r.res.Warnings = append(r.res.Warnings, Warning{Code: WarnMappingUnused, Object: from,
				Message: fmt.Sprintf("namespace mapping %s=%s: the recovery point holds no namespace %q", from, r.crit.NamespaceMappings[from], from)})
		}
	}
	return nil
}

type job struct {
	tree  repo.ResourceTree
	entry repo.TreeEntry
}

// tier restores the trees of one tier in parallel.
func (r *run) tier(ctx context.Context, tier int, trees []repo.ResourceTree) error {
	if len(trees) == 0 {
		return nil
	}
	jobs := make(chan job, r.opts.Workers*2)
	var wg sync.WaitGroup
	for i := 0; i < r.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				r.restoreEntry(ctx, tier, j.tree, j.entry)
			}
		}()
	}
	// Trees are walked concurrently so that a slow type (Services wait for
	// ClusterIP allocation) does not hold back the others of its tier.
	var walkErr error
	var errOnce sync.Once
	var walkers sync.WaitGroup
	for _, t := range trees {
		walkers.Add(1)
		go func(t repo.ResourceTree) {
			defer walkers.Done()
			selected := r.treeSelected(t)
			err := r.rd.WalkTree(ctx, t.Tree, func(e repo.TreeEntry) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				if !selected || (t.Namespaced && !r.sel.Namespaces.Includes(e.Namespace)) ||
					(t.Group == "" && t.Resource == "namespaces" && !r.sel.Namespaces.Includes(e.Name)) {
					it := r.item(tier, t, e.Namespace, e.Name)
					r.record(it, SkippedFiltered, "not selected by the restore criteria")
					return nil
				}
				jobs <- job{t, e}
				return nil
			})
			if err != nil {
				errOnce.Do(func() { walkErr = fmt.Errorf("read tree of %s: %w", kube.GroupResource(t.Group, t.Resource), err) })
			}
		}(t)
	}
	walkers.Wait()
	close(jobs)
	wg.Wait()
	if walkErr != nil {
		return walkErr
	}
	return ctx.Err()
}

func (r *run) item(tier int, t repo.ResourceTree, ns, name string) Item {
	it := Item{Group: t.Group, Version: t.Version, Resource: t.Resource, Kind: t.Kind, Name: name, Tier: tier}
	if t.Namespaced {
		it.Namespace = r.mapNS(ns)
		if it.Namespace != ns {
			it.SourceNamespace = ns
		}
	} else if t.Group == "" && t.Resource == "namespaces" {
		it.Name = r.mapNS(name)
		if it.Name != name {
			it.SourceNamespace = name
		}
	}
	return it
}

func (r *run) record(it Item, a Action, reason string) {
	it.Action, it.Reason = a, reason
	r.mu.Lock()
	r.res.Items.Append(it)
	r.res.Summary[a]++
	if a == Created || a == Patched {
		if w, ok := r.sensitiveWarning(it); ok {
			if r.sensitive++; r.sensitive <= MaxSensitiveWarnings {
				r.res.Warnings = append(r.res.Warnings, w)
			}
		}
	}
	r.mu.Unlock()
	d := r.done.Add(1)
	if r.opts.Progress != nil && (d%500 == 0 || d == r.total) {
		r.opts.Progress(Progress{Done: d, Total: r.total, Tier: it.Tier})
	}
}

// MaxSensitiveWarnings bounds the RBACObjectRestored and
// AdmissionObjectRestored warnings of one restore, so that restoring a
// whole cluster's RBAC still fits a RestoreJob's status; one more warning
// counts the rest.
const MaxSensitiveWarnings = 100

// sensitiveWarning is the warning for an RBAC or admission object the
// restore wrote (or, in a dry run, would write): each one changes who may
// do what in the target cluster, so each is named.
func (r *run) sensitiveWarning(it Item) (Warning, bool) {
	verb := "restored"
	if r.crit.DryRun {
		verb = "would restore"
	}
	if it.Action == Patched {
		verb = "patched"
		if r.crit.DryRun {
			verb = "would patch"
		}
	}
	switch v1alpha1.SensitiveKind(it.Group, it.Resource) {
	case "rbac":
		return Warning{Code: v1alpha1.CodeRBACObjectRestored, Object: it.Ref(), Message: fmt.Sprintf(
			"%s RBAC object %s %s: it grants permissions in this cluster; review it", verb, it.Kind, it.Ref())}, true
	case "admission":
		return Warning{Code: v1alpha1.CodeAdmissionObjectRestored, Object: it.Ref(), Message: fmt.Sprintf(
			"%s admission object %s %s: it intercepts API requests in this cluster; review it", verb, it.Kind, it.Ref())}, true
	}
	return Warning{}, false
}

// restoreEntry loads, selects, rewrites and writes one object.
func (r *run) restoreEntry(ctx context.Context, tier int, t repo.ResourceTree, e repo.TreeEntry) {
	it := r.item(tier, t, e.Namespace, e.Name)
	var data []byte
	for _, id := range e.Blobs {
		b, err := r.rd.LoadBlob(ctx, id)
		if err != nil {
			r.record(it, Failed, fmt.Sprintf("read from repository: %v", err))
			return
		}
		data = append(data, b...)
	}
	obj := map[string]any{}
	if err := json.Unmarshal(data, &obj); err != nil {
		r.record(it, Failed, fmt.Sprintf("decode: %v", err))
		return
	}
	u := &unstructured.Unstructured{Object: obj}
	if r.withClaims(t) {
		claimNS, _, _ := unstructured.NestedString(obj, "spec", "claimRef", "namespace")
		if claimNS == "" || !r.sel.Namespaces.Includes(claimNS) {
			r.record(it, SkippedFiltered, "a PersistentVolume is restored with its claim, and its claim's namespace is not restored (includeClusterScopeResources restores every volume)")
			return
		}
	}
	srcLabels := u.GetLabels()
	// Namespaces travel with their contents whatever their labels.
	isNS := t.Group == "" && t.Resource == "namespaces"
	if !isNS && !r.sel.Labels.Matches(labels.Set(srcLabels)) {
		r.record(it, SkippedFiltered, "labels not selected by the restore criteria")
		return
	}
	// Owned objects whose controller is restored are left to the controller.
	if t.Group != "" || t.Resource != "persistentvolumeclaims" {
		for _, ref := range u.GetOwnerReferences() {
			if ref.Controller != nil && *ref.Controller && r.owners.has(r.ids.of(objKey{groupOf(ref.APIVersion), ref.Kind, it.Namespace, ref.Name})) {
				r.record(it, SkippedOwned, fmt.Sprintf("controlled by %s %s, which is restored and recreates it", ref.Kind, ref.Name))
				return
			}
		}
	}
	PrepareObject(t.Group, t.Resource, obj, r.crit, r.rpLabel, r.opts.Name)
	if r.mods.Len() > 0 {
		doc, err := json.Marshal(obj)
		if err == nil {
			doc, _, err = r.mods.Apply(modifiers.Object{Group: t.Group, Resource: t.Resource, Namespace: e.Namespace, Name: e.Name, Labels: srcLabels}, doc)
		}
		if err == nil {
			obj = map[string]any{}
			err = json.Unmarshal(doc, &obj)
		}
		if err != nil {
			r.record(it, Failed, err.Error())
			return
		}
		u = &unstructured.Unstructured{Object: obj}
	}
	if !r.volumeHook(ctx, t, u, it, e.Namespace) {
		return
	}
	// Owner references: re-pointed to restored owners, dropped otherwise;
	// an object whose owner is restored later waits for it.
	if refs := u.GetOwnerReferences(); len(refs) > 0 {
		if wait := r.pointOwners(u, it.Namespace, refs); wait {
			doc, err := json.Marshal(u.Object)
			if err != nil {
				r.record(it, Failed, "encode: "+err.Error())
				return
			}
			r.mu.Lock()
			r.deferred = append(r.deferred, deferredItem{tree: t, doc: doc, item: it})
			r.mu.Unlock()
			return
		}
	}
	r.write(ctx, t, u, it)
}

// pointOwners rewrites u's owner references; it returns true when an owner
// that will be restored has not been yet (the object must wait).
func (r *run) pointOwners(u *unstructured.Unstructured, ns string, refs []metav1.OwnerReference) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var kept []metav1.OwnerReference
	for _, ref := range refs {
		k := r.ids.of(objKey{groupOf(ref.APIVersion), ref.Kind, ns, ref.Name})
		if !r.owners.has(k) {
			// Cluster-scoped owners are keyed without namespace.
			k = r.ids.of(objKey{groupOf(ref.APIVersion), ref.Kind, "", ref.Name})
			if !r.owners.has(k) {
				continue // owner not restored: reference dropped
			}
		}
		if uid, ok := r.objs.uid(k); ok {
			ref.UID = uid
		} else if !r.crit.DryRun {
			return true
		}
		kept = append(kept, ref)
	}
	u.SetOwnerReferences(kept)
	return false
}

func (r *run) runDeferred(ctx context.Context) error {
	for len(r.deferred) > 0 {
		batch := r.deferred
		r.deferred = nil
		progress := false
		for _, d := range batch {
			u, err := d.object()
			if err != nil {
				r.record(d.item, Failed, "decode: "+err.Error())
				progress = true
				continue
			}
			wait := r.pointOwners(u, d.item.Namespace, u.GetOwnerReferences())
			if wait {
				r.deferred = append(r.deferred, d)
				continue
			}
			progress = true
			r.write(ctx, d.tree, u, d.item)
		}
		if !progress {
			// The remaining owners failed or were skipped: drop the
			// references that cannot be resolved and write anyway.
			for _, d := range r.deferred {
				u, err := d.object()
				if err != nil {
					r.record(d.item, Failed, "decode: "+err.Error())
					continue
				}
				var kept []metav1.OwnerReference
				r.mu.Lock()
				for _, ref := range u.GetOwnerReferences() {
					k := r.ids.of(objKey{groupOf(ref.APIVersion), ref.Kind, d.item.Namespace, ref.Name})
					if uid, ok := r.objs.uid(k); ok {
						ref.UID = uid
						kept = append(kept, ref)
					} else if uid, ok := r.objs.uid(r.ids.of(objKey{groupOf(ref.APIVersion), ref.Kind, "", ref.Name})); ok {
						ref.UID = uid
						kept = append(kept, ref)
					}
				}
				r.mu.Unlock()
				u.SetOwnerReferences(kept)
				r.write(ctx, d.tree, u, d.item)
			}
			r.deferred = nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) resource(t repo.ResourceTree, ns string) dynamic.ResourceInterface {
	gvr := schema.GroupVersionResource{Group: t.Group, Version: t.Version, Resource: t.Resource}
	if t.Namespaced {
		return r.dyn.Resource(gvr).Namespace(ns)
	}
	return r.dyn.Resource(gvr)
}

func (r *run) dryRun() []string {
	if r.crit.DryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// write creates the object, or applies the conflict policy, fills a
// claim's volume data (ClaimFiller), and records the item.
func (r *run) write(ctx context.Context, t repo.ResourceTree, u *unstructured.Unstructured, it Item) {
	a, reason := r.writeObject(ctx, t, u, it)
	a, reason, err := r.fillClaim(ctx, t, it, a, reason)
	if err != nil {
		r.volumeFailed(it, "volume data", err)
		var st interface{ StopsRestore() bool }
		if errors.As(err, &st) && st.StopsRestore() {
			r.mu.Lock()
			if r.stop == nil {
				r.stop = err
			}
			r.mu.Unlock()
		}
		return
	}
	r.record(it, a, reason)
}

// writeObject creates the object, or applies the conflict policy, and
// returns what happened.
func (r *run) writeObject(ctx context.Context, t repo.ResourceTree, u *unstructured.Unstructured, it Item) (Action, string) {
	ri := r.resource(t, it.Namespace)
	key := objKey{t.Group, t.Kind, it.Namespace, it.Name}
	created, err := ri.Create(ctx, u, metav1.CreateOptions{DryRun: r.dryRun(), FieldManager: "arca"})
	switch {
	case err == nil:
		r.remember(key, created.GetUID(), true)
		if t.Group == "apiextensions.k8s.io" && t.Resource == "customresourcedefinitions" && !r.crit.DryRun {
			r.mu.Lock()
			r.crds = append(r.crds, created)
			r.mu.Unlock()
		}
		return Created, ""
	case apierrors.IsAlreadyExists(err):
		return r.conflict(ctx, t, ri, u, it, key)
	case r.crit.DryRun && r.plannedDependency(t, it, err):
		r.remember(key, "", true)
		return Created, "dry run: validated without the namespace or CRD that the restore creates first"
	default:
		return Failed, "create: " + err.Error()
	}
}

// plannedDependency reports whether a dry-run create failed only because
// its namespace or CRD does not exist yet but is created earlier by this
// restore.
func (r *run) plannedDependency(t repo.ResourceTree, it Item, err error) bool {
	if !apierrors.IsNotFound(err) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.Namespaced && r.objs.planned(r.ids.of(objKey{"", "Namespace", "", it.Namespace})) {
		return true
	}
	return r.objs.planned(r.ids.of(objKey{"apiextensions.k8s.io", "CustomResourceDefinition", "", t.Resource + "." + t.Group}))
}

func (r *run) remember(k objKey, uid types.UID, planned bool) {
	id := r.ids.of(k)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objs.set(id, uid, planned)
}

// arcaLabels are ignored when deciding whether an existing object is unchanged.
var arcaLabels = []string{v1alpha1.LabelRecoveryPoint, v1alpha1.LabelRestore}

// conflict handles an object that already exists.
func (r *run) conflict(ctx context.Context, t repo.ResourceTree, ri dynamic.ResourceInterface, u *unstructured.Unstructured, it Item, key objKey) (Action, string) {
	live, err := ri.Get(ctx, it.Name, metav1.GetOptions{})
	if err != nil {
		return Failed, "exists, but reading it failed: " + err.Error()
	}
	r.remember(key, live.GetUID(), false)
	if r.crit.Conflict() == v1alpha1.ConflictSkip {
		return SkippedExists, ""
	}
	// Patch: a JSON merge patch of the backed-up content (everything but
	// identity, status and server-owned metadata) onto the live object.
	patch := map[string]any{}
	for k, v := range u.Object {
		switch k {
		case "apiVersion", "kind", "status", "metadata":
			continue
		}
		patch[k] = v
	}
	md := map[string]any{}
	if l := u.GetLabels(); l != nil {
		md["labels"] = l
	}
	if a := u.GetAnnotations(); a != nil {
		md["annotations"] = a
	}
	if refs, ok := u.Object["metadata"].(map[string]any)["ownerReferences"]; ok {
		md["ownerReferences"] = refs
	}
	patch["metadata"] = md
	patchJSON, err := json.Marshal(patch)
	if err != nil {
		return Failed, "encode patch: " + err.Error()
	}
	liveJSON, err := json.Marshal(live.Object)
	if err != nil {
		return Failed, "encode live object: " + err.Error()
	}
	merged, err := jsonpatch.MergePatch(liveJSON, patchJSON)
	if err != nil {
		return Failed, "merge patch: " + err.Error()
	}
	if equalIgnoringArca(liveJSON, merged) {
		return Unchanged, ""
	}
	_, err = ri.Patch(ctx, it.Name, types.MergePatchType, patchJSON, metav1.PatchOptions{DryRun: r.dryRun(), FieldManager: "arca"})
	if err != nil {
		reason := "patch: " + err.Error()
		if apierrors.IsInvalid(err) && strings.Contains(err.Error(), "immutable") {
			reason = "patch: an immutable field differs from the backup: " + err.Error()
		}
		return Failed, reason
	}
	return Patched, ""
}

func equalIgnoringArca(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	for _, m := range []map[string]any{x, y} {
		if md, ok := m["metadata"].(map[string]any); ok {
			if l, ok := md["labels"].(map[string]any); ok {
				for _, k := range arcaLabels {
					delete(l, k)
				}
				if len(l) == 0 {
					delete(md, "labels")
				}
			}
		}
	}
	return reflect.DeepEqual(x, y)
}

// ensureNamespaces creates the target namespaces that namespaced objects
// need and that the recovery point does not hold (mapped namespaces,
// typically), after the namespace tier.
func (r *run) ensureNamespaces(ctx context.Context) error {
	nsRes := r.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"})
	for _, ns := range selection.SortedKeys(r.needNS) {
		key := objKey{"", "Namespace", "", ns}
		id := r.ids.of(key)
		r.mu.Lock()
		_, known := r.objs.uid(id)
		planned := r.objs.planned(id)
		r.mu.Unlock()
		if known || planned {
			continue
		}
		it := Item{Version: "v1", Resource: "namespaces", Kind: "Namespace", Name: ns, Tier: TierNamespaces}
		if live, err := nsRes.Get(ctx, ns, metav1.GetOptions{}); err == nil {
			r.remember(key, live.GetUID(), false)
			continue
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("read namespace %s: %w", ns, err)
		}
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": ns, "labels": map[string]any{
				v1alpha1.LabelRecoveryPoint: r.rpLabel, v1alpha1.LabelRestore: r.opts.Name}}}}
		created, err := nsRes.Create(ctx, u, metav1.CreateOptions{DryRun: r.dryRun(), FieldManager: "arca"})
		switch {
		case err == nil:
			r.remember(key, created.GetUID(), true)
			r.record(it, Created, "target namespace of restored objects")
		case apierrors.IsAlreadyExists(err):
		default:
			r.record(it, Failed, "create: "+err.Error())
		}
	}
	return nil
}

// waitCRDs waits until the restored CRDs are Established and their
// resources are served (discovery refreshed), so that the custom resources
// of later tiers can be created.
func (r *run) waitCRDs(ctx context.Context) {
	if len(r.crds) == 0 {
		return
	}
	deadline := time.Now().Add(r.opts.CRDTimeout)
	crdRes := r.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, crd := range r.crds {
		name := crd.GetName()
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		ok := false
		for time.Now().Before(deadline) && ctx.Err() == nil {
			live, err := crdRes.Get(ctx, name, metav1.GetOptions{})
			if err == nil && established(live) && r.served(group, plural, versions) {
				ok = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !ok {
			r.res.Warnings = append(r.res.Warnings, Warning{Code: WarnCRDNotEstablished, Object: name,
				Message: fmt.Sprintf("CustomResourceDefinition %s not Established and served after %s", name, r.opts.CRDTimeout)})
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		if cm["type"] == "Established" && cm["status"] == "True" {
			return true
		}
	}
	return false
}

func (r *run) served(group, plural string, versions []any) bool {
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		if served, _ := vm["served"].(bool); !served {
			continue
		}
		name, _ := vm["name"].(string)
		l, err := r.dc.ServerResourcesForGroupVersion(group + "/" + name)
		if err != nil {
			return false
		}
		found := false
		for _, ar := range l.APIResources {
			if ar.Name == plural {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func validationLabelValue(v string) string {
	if len(v) > 63 {
		return "longer than 63 characters"
	}
	for i, c := range v {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || ((c == '-' || c == '_' || c == '.') && i > 0 && i < len(v)-1)
		if !ok {
			return "must be alphanumeric, with - _ . inside"
		}
	}
	return ""
}

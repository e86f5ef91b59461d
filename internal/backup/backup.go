// Package backup is the resource backup engine: it discovers a cluster's
// resource types, lists the selected ones with pagination in a bounded
// worker pool and streams every object, serialised deterministically, into
// a repository writer as it arrives, one tree per resource type. The
// recovery point manifest is written last; a backup that fails or is
// interrupted aborts the writer and leaves no recovery point.
//
// The algorithm, the excluded types and the warning codes are described in
// docs/engine.md.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/selection"
)

// Warning codes of a backup. They are stable: scripts and the vault match on them.
const (
	// WarnNamespaceNotFound: a namespace named in includedNamespaces does not exist.
	WarnNamespaceNotFound = "NamespaceNotFound"
	// WarnListFailed: a resource type could not be listed (forbidden, or
	// gone between discovery and listing); its objects are missing.
	WarnListFailed = "ListFailed"
	// WarnDiscoveryFailed: an API group could not be discovered (typically an
	// aggregated API whose backend is down); its types are missing.
	WarnDiscoveryFailed = "DiscoveryFailed"
	// WarnDependencyNotFound: a cluster-scoped object an included object
	// refers to (a PV, a storage class, a cluster role) does not exist.
	WarnDependencyNotFound = "DependencyNotFound"
	// WarnListRestarted: a type's paginated list was restarted from the
	// beginning because its continue token expired (HTTP 410); the type was
	// then listed completely, from one consistent snapshot.
	WarnListRestarted = "ListRestarted"
)

// CodeListExpired is the code of ListExpiredError: a type's continue token
// expired on every attempt, ListRestarts restarts included.
const CodeListExpired = "ListExpired"

// DefaultListRestarts is how many times a type's list is restarted after
// its continue token expired, when Options.ListRestarts is 0.
const DefaultListRestarts = 3

// ListExpiredError fails a backup whose list of one resource type kept
// expiring (HTTP 410 Gone, reason Expired: "continue parameter is too old")
// although it was restarted from the beginning Attempts-1 times.
type ListExpiredError struct {
	Resource string // group resource, e.g. "deployments.apps"
	Attempts int
	Err      error // the last 410 from the API server
}

func (e *ListExpiredError) Error() string {
	return fmt.Sprintf("%s: list of %s expired on each of %d attempts (each restarted from the beginning; the API server compacts its history faster than the type can be listed: raise etcd's compaction interval or the page size): %v",
		CodeListExpired, e.Resource, e.Attempts, e.Err)
}
func (e *ListExpiredError) Unwrap() error { return e.Err }

// isListExpired tells whether err is the API server's answer to a continue
// token too old to resume from.
func isListExpired(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// Options configure one backup.
type Options struct {
	Config v1alpha1.BackupConfiguration
	// Name is an optional human name stored in the recovery point.
	Name string
	Tags map[string]string
	// Workers is how many resource types are listed at once (default 4).
	Workers int
	// PageSize is the list page size (default 500).
	PageSize int64
	// ListRestarts is how many times a type's list is restarted from the
	// beginning after its continue token expired (default
	// DefaultListRestarts; negative: never).
	ListRestarts int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Progress, when set, is called after every page with running totals.
	Progress func(Progress)
	// Volumes, when set, snapshots the included claims' volumes (volumes.go).
	Volumes VolumeSnapshotter
	// AllowNamespace, when set, leaves out every namespace it refuses,
	// whatever Config selects (the cluster owner's trust policy).
	AllowNamespace func(ns string) bool
}

// Progress reports a running backup.
type Progress struct {
	Items int64
	Bytes int64
	Types int // resource types finished
}

// Result is a completed backup.
type Result struct {
	ID            repo.ID
	RecoveryPoint *repo.RecoveryPoint
	Stats         repo.WriterStats
	// ListDuration is the time spent listing and storing objects;
	// CommitDuration the time to flush packs and write index and manifest.
	ListDuration, CommitDuration time.Duration
}

// ConfigError is returned for a configuration that cannot work (bad
// syntax, unknown resource types); nothing has been written when it is.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "invalid backup configuration: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Prepared is a validated backup, ready to run: the configuration parsed and
// resolved against the cluster's discovery.
type Prepared struct {
	opts      Options
	cfg       *rest.Config
	dyn       dynamic.Interface
	lister    *kube.Lister
	sel       *selection.Selector
	disc      *kube.Discovery
	cluster   kube.ClusterInfo
	warnings  []repo.Warning
	allNS     bool     // list namespaced types cluster-wide rather than per namespace
	nsList    []string // included namespaces that exist, sorted
	namespace kube.Resource
}

// Prepare validates the configuration against the cluster: a typo in a
// selector, a namespace pattern or a resource type is an error here, before
// the repository is touched.
func Prepare(ctx context.Context, cfg *rest.Config, opts Options) (*Prepared, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, &ConfigError{err}
	}
	sel, err := selection.ForBackup(&opts.Config)
	if err != nil {
		return nil, &ConfigError{err}
	}
	if opts.AllowNamespace != nil {
		sel.Namespaces.Restrict(opts.AllowNamespace)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := kube.Discover(dc)
	if err != nil {
		return nil, err
	}
	if err := sel.Types.Resolve(append(append([]kube.Resource{}, disc.Resources...), disc.Excluded...)); err != nil {
		return nil, &ConfigError{err}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	lister, err := kube.NewLister(cfg)
	if err != nil {
		return nil, err
	}
	p := &Prepared{opts: opts, cfg: cfg, dyn: dyn, lister: lister, sel: sel, disc: disc}
	if p.opts.Workers <= 0 {
		p.opts.Workers = 4
	}
	if p.opts.PageSize <= 0 {
		p.opts.PageSize = 500
	}
	if p.opts.Now == nil {
		p.opts.Now = time.Now
	}
	for _, gv := range selection.SortedKeys(disc.FailedGroups) {
		p.warnings = append(p.warnings, repo.Warning{Code: WarnDiscoveryFailed, Object: gv, Message: disc.FailedGroups[gv].Error()})
	}
	p.cluster, err = kube.Identify(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, r := range disc.Resources {
		if r.Group == "" && r.Resource == "namespaces" {
			p.namespace = r
		}
	}
	// The namespaces that exist and are selected.
	nsl, err := dyn.Resource(p.namespace.GVR()).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	exists := map[string]bool{}
	for _, ns := range nsl.Items {
		exists[ns.GetName()] = true
		if sel.Namespaces.Includes(ns.GetName()) {
			p.nsList = append(p.nsList, ns.GetName())
		}
	}
	sort.Strings(p.nsList)
	for _, n := range sel.Namespaces.Literals() {
		if !exists[n] {
			p.warnings = append(p.warnings, repo.Warning{Code: WarnNamespaceNotFound, Object: n, Message: fmt.Sprintf("namespace %q does not exist", n)})
		}
	}
	// List cluster-wide (and filter here) unless a few namespaces out of
	// many are selected: one request per page beats one per namespace and
	// type, and most clusters have dozens of resource types.
	p.allNS = sel.Namespaces.All() || len(p.nsList) > 10 || len(p.nsList)*4 > len(nsl.Items)
	return p, nil
}

// Run backs up the cluster into r.
func Run(ctx context.Context, cfg *rest.Config, r *repo.Repository, opts Options) (*Result, error) {
	p, err := Prepare(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	return p.Run(ctx, r)
}

// run is the state of one running backup.
type run struct {
	*Prepared
	w       *repo.Writer // nil when scanning
	scan    ScanFunc
	items   atomic.Int64
	bytes   atomic.Int64
	typesOK atomic.Int64

	mu        sync.Mutex
	trees     []repo.ResourceTree
	counts    map[string]int
	warnings  []repo.Warning
	deps      map[string]map[string]bool // resource.group → names of cluster-scoped objects needed
	crdsUsed  map[string]bool            // CRD names (resource.group) of included custom resources
	crdGroups map[string]bool            // CRD names (resource.group) served in the cluster
	depsFound map[string]map[string]bool // dependencies seen while listing
	listed    map[string]bool            // cluster-scoped types listed
	claims    []types.NamespacedName     // included claims, for Options.Volumes
}

// Run writes the recovery point.
func (p *Prepared) Run(ctx context.Context, r *repo.Repository) (res *Result, err error) {
	started := p.opts.Now()
	w, err := r.NewWriter(ctx)
	if err != nil {
		return nil, fmt.Errorf("start repository writer: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Aborting must happen even when ctx is cancelled.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if aerr := w.Abort(actx); aerr != nil {
				err = errors.Join(err, fmt.Errorf("abort repository writer: %w", aerr))
			}
		}
	}()
	b := p.newRun(w, nil)
	if err := b.phases(ctx); err != nil {
		return nil, err
	}
	volumes, volumeData, err := b.snapshotVolumes(ctx)
	if err != nil {
		return nil, errors.Join(err, b.discardSnapshots(ctx, volumes))
	}
	defer func() {
		if !committed {
			err = errors.Join(err, b.discardSnapshots(ctx, volumes))
		}
	}()
	listed := p.opts.Now()

	sort.Slice(b.trees, func(i, j int) bool {
		if b.trees[i].Group != b.trees[j].Group {
			return b.trees[i].Group < b.trees[j].Group
		}
		return b.trees[i].Resource < b.trees[j].Resource
	})
	cfgJSON, err := json.Marshal(p.opts.Config)
	if err != nil {
		return nil, err
	}
	rp := &repo.RecoveryPoint{
		Name:       p.opts.Name,
		Started:    started,
		Finished:   p.opts.Now(),
		Tags:       p.opts.Tags,
		Source:     repo.Source{Cluster: p.cluster.ID, Server: p.cluster.Server, KubernetesVersion: p.cluster.KubernetesVersion},
		Config:     cfgJSON,
		Resources:  b.trees,
		Volumes:    volumes,
		VolumeData: volumeData,
		Summary: repo.Summary{
			Items:    int(b.items.Load()),
			Bytes:    b.bytes.Load(),
			Counts:   b.counts,
			Warnings: b.warnings,
		},
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, err := w.Commit(ctx, rp)
	if err != nil {
		return nil, fmt.Errorf("commit recovery point: %w", err)
	}
	committed = true
	rp.ID = id
	return &Result{ID: id, RecoveryPoint: rp, Stats: w.Stats(), ListDuration: listed.Sub(started), CommitDuration: p.opts.Now().Sub(listed)}, nil
}

func (p *Prepared) newRun(w *repo.Writer, scan ScanFunc) *run {
	b := &run{Prepared: p, w: w, scan: scan, counts: map[string]int{}, deps: map[string]map[string]bool{}, crdsUsed: map[string]bool{},
		depsFound: map[string]map[string]bool{}, listed: map[string]bool{}}
	b.warnings = append(b.warnings, p.warnings...)
	return b
}

// phases lists every selected type. Namespaced types first: they name the
// cluster-scoped objects they depend on. Then cluster role bindings and
// volumes (which name cluster roles and storage classes), then the rest.
func (b *run) phases(ctx context.Context) error {
	if err := b.crdGroupsFromCluster(ctx); err != nil {
		return err
	}
	var namespaced, clusterFirst, clusterRest []kube.Resource
	for _, res := range b.disc.Resources {
		if res.Namespaced {
			if b.sel.IncludesType(res) {
				namespaced = append(namespaced, res)
			}
			continue
		}
		if b.sel.Types.Excludes(res) || (!b.sel.ClusterScope && res.Resource != "namespaces") {
			continue
		}
		switch res.GroupResource() {
		case "clusterrolebindings.rbac.authorization.k8s.io", "persistentvolumes":
			clusterFirst = append(clusterFirst, res)
		default:
			clusterRest = append(clusterRest, res)
		}
	}
	for _, phase := range [][]kube.Resource{namespaced, clusterFirst, clusterRest} {
		if err := b.pool(ctx, phase); err != nil {
			return err
		}
	}
	b.checkDeps()
	return nil
}

// ScanFunc receives every object a backup would store, with its serialised
// form. It is called from several goroutines at once.
type ScanFunc func(res kube.Resource, obj *kube.Object, data []byte) error

// Scan runs the backup's selection without a repository: fn receives what
// Run would store. Used to compare a recovery point with the live cluster.
func (p *Prepared) Scan(ctx context.Context, fn ScanFunc) ([]repo.Warning, error) {
	b := p.newRun(nil, fn)
	if err := b.phases(ctx); err != nil {
		return nil, err
	}
	return b.warnings, nil
}

// crdGroupsFromCluster learns which resource types are custom resources, so
// that their CRDs can be included as dependencies.
func (b *run) crdGroupsFromCluster(ctx context.Context) error {
	b.crdGroups = map[string]bool{}
	if !b.sel.ClusterScope {
		return nil
	}
	for _, r := range b.disc.Resources {
		if r.GroupResource() != "customresourcedefinitions.apiextensions.k8s.io" {
			continue
		}
		l, err := b.dyn.Resource(r.GVR()).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list custom resource definitions: %w", err)
		}
		for _, crd := range l.Items {
			b.crdGroups[crd.GetName()] = true
		}
	}
	return nil
}

// pool backs up the given types with a bounded number of workers. The first
// fatal error cancels the others.
func (b *run) pool(ctx context.Context, types []kube.Resource) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ch := make(chan kube.Resource)
	var wg sync.WaitGroup
	for i := 0; i < b.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for res := range ch {
				if err := b.backupType(ctx, res); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for _, res := range types {
		select {
		case ch <- res:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// backupType lists one resource type and writes its tree.
func (b *run) backupType(ctx context.Context, res kube.Resource) error {
	gr := res.GroupResource()
	var deps map[string]bool
	if !res.Namespaced {
		b.mu.Lock()
		deps = b.deps[gr]
		if gr == "customresourcedefinitions.apiextensions.k8s.io" {
			deps = b.crdsUsed
		}
		if len(deps) == 0 && gr != "namespaces" && !b.sel.Types.Includes(res) {
			b.mu.Unlock()
			return nil // neither selected nor needed
		}
		b.listed[gr] = true
		b.mu.Unlock()
	}
	// Which objects of this type are selected.
	serverSelector := b.sel.Labels.String()
	filterLabels := false
	isNamespaceType := gr == "namespaces"
	if isNamespaceType || len(deps) > 0 {
		// Namespaces travel with their contents whatever their labels;
		// dependencies are included whatever theirs.
		serverSelector, filterLabels = "", !isNamespaceType
	}
	include := func(obj *kube.Object, data []byte) bool {
		if isNamespaceType {
			return b.sel.Namespaces.Includes(obj.GetName())
		}
		if res.Namespaced && !b.sel.Namespaces.Includes(obj.GetNamespace()) {
			return false
		}
		if deps[obj.GetName()] {
			return true
		}
		if gr == "clusterrolebindings.rbac.authorization.k8s.io" && !b.allNS && b.bindsIncludedServiceAccount(data) {
			return true
		}
		if !res.Namespaced && !b.sel.Types.Includes(res) {
			return false // listed for its dependencies only
		}
		if filterLabels && !b.sel.Labels.Matches(labels.Set(obj.GetLabels())) {
			return false
		}
		return true
	}

	scopes := []string{""}
	if res.Namespaced && !b.allNS {
		scopes = b.nsList // list namespace by namespace when only some are selected
	}
	restarts := b.opts.ListRestarts
	if restarts == 0 {
		restarts = DefaultListRestarts
	}
	var a *attempt
	for n := 1; ; n++ {
		// Each attempt lists the type from the beginning into a fresh tree:
		// entries of an expired attempt are discarded with its tree (the
		// blobs it stored are content-addressed and deduplicate).
		a = &attempt{found: map[string]bool{}}
		if b.w != nil {
			a.tw = b.w.NewTree()
		}
		skip, err := b.listType(ctx, res, scopes, serverSelector, deps, include, a)
		if err == nil {
			if skip {
				return nil
			}
			break
		}
		if !isListExpired(err) || ctx.Err() != nil {
			return err
		}
		b.items.Add(-a.items)
		b.bytes.Add(-a.bytes)
		if n > restarts {
			return &ListExpiredError{Resource: gr, Attempts: n, Err: err}
		}
		b.warn(repo.Warning{Code: WarnListRestarted, Object: gr, Message: fmt.Sprintf("attempt %d: %v; listing again from the beginning", n, err)})
	}
	count, found, tw := a.count, a.found, a.tw
	var tree repo.Tree
	if tw != nil {
		var err error
		if tree, err = tw.Close(ctx); err != nil {
			return fmt.Errorf("write tree of %s: %w", gr, err)
		}
	}
	b.typesOK.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.claims = append(b.claims, a.claims...)
	if len(found) > 0 {
		b.depsFound[gr] = found
	}
	if count == 0 {
		return nil
	}
	b.trees = append(b.trees, repo.ResourceTree{Group: res.Group, Version: res.Version, Resource: res.Resource, Kind: res.Kind, Namespaced: res.Namespaced, Tree: tree})
	b.counts[gr] += count
	if b.crdGroups[gr] {
		b.crdsUsed[gr] = true
	}
	return nil
}

// attempt is one listing of a resource type: what it stored, to be kept
// when it completes and discarded when its continue token expires.
type attempt struct {
	tw           *repo.TreeWriter // nil when scanning
	count        int
	items, bytes int64
	found        map[string]bool        // dependencies seen
	claims       []types.NamespacedName // included claims
}

// listType lists res from the beginning, page by page, into a. skip is
// true when the type cannot be listed (warned as ListFailed). An expired
// continue token is returned as the API server's error (isListExpired).
func (b *run) listType(ctx context.Context, res kube.Resource, scopes []string, serverSelector string, deps map[string]bool,
	include func(*kube.Object, []byte) bool, a *attempt) (skip bool, err error) {
	gr := res.GroupResource()
	for _, ns := range scopes {
		cont := ""
		for {
			page, err := b.lister.List(ctx, res, kube.ListOptions{Namespace: ns, Limit: b.opts.PageSize, Continue: cont, LabelSelector: serverSelector})
			if err != nil {
				if ctx.Err() != nil {
					return false, ctx.Err()
				}
				if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
					b.warn(repo.Warning{Code: WarnListFailed, Object: gr, Message: err.Error()})
					return true, nil
				}
				return false, fmt.Errorf("list %s: %w", gr, err)
			}
			for i, item := range page.Items {
				obj, err := kube.DecodeObject(item)
				if err != nil {
					return false, fmt.Errorf("decode %s: %w", gr, err)
				}
				if deps[obj.GetName()] {
					a.found[obj.GetName()] = true
				}
				if _, excluded := kube.ExcludedObject(res.Group, res.Resource, obj); excluded {
					continue
				}
				if !include(obj, item) {
					continue
				}
				if err := b.writeObject(ctx, a, res, obj, kube.WithTypeMeta(item, obj, res)); err != nil {
					return false, err
				}
				page.Items[i] = nil // let the page's memory go as it is written
				a.count++
			}
			if b.opts.Progress != nil {
				b.opts.Progress(Progress{Items: b.items.Load(), Bytes: b.bytes.Load(), Types: int(b.typesOK.Load())})
			}
			cont = page.Metadata.Continue
			if cont == "" {
				break
			}
		}
	}
	return false, nil
}

// writeObject serialises one object and stores it.
func (b *run) writeObject(ctx context.Context, a *attempt, res kube.Resource, obj *kube.Object, data []byte) error {
	if b.scan != nil {
		if err := b.scan(res, obj, data); err != nil {
			return err
		}
		a.add(b, data)
		if b.sel.ClusterScope && res.Namespaced || res.GroupResource() == "clusterrolebindings.rbac.authorization.k8s.io" || res.GroupResource() == "persistentvolumes" {
			b.collectDeps(res, data)
		}
		return nil
	}
	id, err := b.w.PutBlob(ctx, data)
	if err != nil {
		return fmt.Errorf("store %s %s/%s: %w", res.GroupResource(), obj.GetNamespace(), obj.GetName(), err)
	}
	if err := a.tw.Add(ctx, repo.TreeEntry{
		Group: res.Group, Version: res.Version, Resource: res.Resource, Kind: res.Kind,
		Namespace: obj.GetNamespace(), Name: obj.GetName(),
		Blobs: []repo.ID{id}, Size: int64(len(data)),
	}); err != nil {
		return fmt.Errorf("add %s %s/%s to tree: %w", res.GroupResource(), obj.GetNamespace(), obj.GetName(), err)
	}
	a.add(b, data)
	if b.sel.ClusterScope && res.Namespaced || res.GroupResource() == "clusterrolebindings.rbac.authorization.k8s.io" || res.GroupResource() == "persistentvolumes" {
		b.collectDeps(res, data)
	}
	b.noteClaim(a, res, obj)
	return nil
}

// add counts one stored object, in the attempt and in the running totals
// that Progress reports.
func (a *attempt) add(b *run, data []byte) {
	a.items++
	a.bytes += int64(len(data))
	b.items.Add(1)
	b.bytes.Add(int64(len(data)))
}

// collectDeps records the cluster-scoped objects obj refers to.
func (b *run) collectDeps(res kube.Resource, data []byte) {
	add := func(gr, name string) {
		if name == "" {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		m := b.deps[gr]
		if m == nil {
			m = map[string]bool{}
			b.deps[gr] = m
		}
		m[name] = true
	}
	gr := res.GroupResource()
	switch gr {
	case "persistentvolumeclaims", "persistentvolumes", "rolebindings.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
		"ingresses.networking.k8s.io", "volumesnapshots.snapshot.storage.k8s.io":
	default:
		return
	}
	refs, err := kube.DecodeReferences(data)
	if err != nil {
		return // not the shape we know: no references to follow
	}
	switch gr {
	case "persistentvolumeclaims":
		add("persistentvolumes", refs.Spec.VolumeName)
		add("storageclasses.storage.k8s.io", refs.Spec.StorageClassName)
	case "persistentvolumes":
		add("storageclasses.storage.k8s.io", refs.Spec.StorageClassName)
	case "rolebindings.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io":
		if refs.RoleRef.Kind == "ClusterRole" {
			add("clusterroles.rbac.authorization.k8s.io", refs.RoleRef.Name)
		}
	case "ingresses.networking.k8s.io":
		add("ingressclasses.networking.k8s.io", refs.Spec.IngressClassName)
	case "volumesnapshots.snapshot.storage.k8s.io":
		add("volumesnapshotclasses.snapshot.storage.k8s.io", refs.Spec.VolumeSnapshotClassName)
	}
}

// checkDeps warns about dependencies that do not exist in the cluster.
func (b *run) checkDeps() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, gr := range selection.SortedKeys(b.deps) {
		if !b.listed[gr] {
			continue // type not served or not selected: nothing to compare with
		}
		for _, name := range selection.SortedKeys(b.deps[gr]) {
			if !b.depsFound[gr][name] {
				b.warnings = append(b.warnings, repo.Warning{Code: WarnDependencyNotFound, Object: gr + "/" + name,
					Message: fmt.Sprintf("%s %q is referred to by an included object but does not exist", gr, name)})
			}
		}
	}
}

func (b *run) warn(w repo.Warning) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.warnings = append(b.warnings, w)
}

// TypeKey is the key of Summary.Counts: resource.group.
func TypeKey(group, resource string) string { return kube.GroupResource(group, resource) }

// bindsIncludedServiceAccount reports whether a cluster role binding grants
// something to a service account of an included namespace: such bindings
// are dependencies of the namespace's workloads.
func (b *run) bindsIncludedServiceAccount(data []byte) bool {
	refs, err := kube.DecodeReferences(data)
	if err != nil {
		return false
	}
	for _, s := range refs.Subjects {
		if s.Kind == "ServiceAccount" && b.sel.Namespaces.Includes(s.Namespace) {
			return true
		}
	}
	return false
}

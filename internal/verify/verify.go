// Package verify is what a verification adds to a restore: the sandbox
// namespaces a recovery point is restored into, the object-by-object
// comparison of what came back with the point, and the removal of the
// sandbox. The extension runs it (docs/extension.md, Verification); like
// the engines it knows neither the vault nor the extension.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/diff"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
)

// Token is the part of the sandbox names that tells verifications apart:
// 5 characters derived from the job's UID.
func Token(jobUID string) string {
	sum := sha256.Sum256([]byte(jobUID))
	return hex.EncodeToString(sum[:])[:5]
}

// SandboxName is the sandbox namespace of ns for the verification token:
// arca-verify-<token>-<ns>, shortened with a hash of ns when longer than a
// namespace name may be (63 characters).
func SandboxName(token, ns string) string {
	name := v1alpha1.VerificationNamespacePrefix + token + "-" + ns
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(ns))
	keep := 63 - len(v1alpha1.VerificationNamespacePrefix) - len(token) - 1 - 6
	return v1alpha1.VerificationNamespacePrefix + token + "-" + strings.TrimRight(ns[:keep], "-") + "-" + hex.EncodeToString(sum[:])[:5]
}

// Mapping maps every namespace of rp (namespace objects and the namespaces
// of namespaced objects) to its sandbox.
func Mapping(ctx context.Context, r restore.Reader, rp *repo.RecoveryPoint, token string) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range rp.Resources {
		err := r.WalkTree(ctx, t.Tree, func(e repo.TreeEntry) error {
			ns := e.Namespace
			if t.Group == "" && t.Resource == "namespaces" {
				ns = e.Name
			}
			if ns != "" {
				out[ns] = SandboxName(token, ns)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read recovery point %s: %w", rp.ID.Short(), err)
		}
	}
	return out, nil
}

// Difference is one object that did not come back as the point holds it.
type Difference struct {
	Object  string // resource.group namespace/name, as in the recovery point
	Problem string
}

// Comparison is the outcome of Compare.
type Comparison struct {
	Compared    int64
	Differences []Difference // sorted by object
}

// Options of Compare.
type Options struct {
	// Criteria are the restore's (namespace mappings in particular).
	Criteria *v1alpha1.RestoreCriteria
	// RestoreName is the restore's name (label arca.io/restore).
	RestoreName string
	// PageSize of the sandbox listings (default 500).
	PageSize int64
}

type objKey struct{ group, resource, ns, name string }

// Compare reads every object the restore created (res, Created) from the
// cluster of cfg and compares it with the point, after taking out on both
// sides what the restore itself changes and what the API server and
// controllers set (normalize). Objects are listed by type with the
// restore's label, one paginated list per type.
func Compare(ctx context.Context, cfg *rest.Config, r restore.Reader, rp *repo.RecoveryPoint, res *restore.Result, o Options) (*Comparison, error) {
	if o.PageSize == 0 {
		o.PageSize = 500
	}
	// The objects to compare, by type.
	unmapped := map[string]string{}
	if o.Criteria != nil {
		for from, to := range o.Criteria.NamespaceMappings {
			unmapped[to] = from
		}
	}
	created := map[objKey]restore.Item{}
	types := map[string]kube.Resource{}
	for it := range res.Items.All() {
		if it.Action != restore.Created {
			continue
		}
		src, name := it.Namespace, it.Name
		if it.SourceNamespace != "" {
			src = it.SourceNamespace
		}
		if it.Group == "" && it.Resource == "namespaces" {
			// A namespace is restored under its sandbox name (and its
			// source name is in SourceNamespace).
			src, name = "", unmapped[it.Name]
			if name == "" {
				continue // made for mapped objects, not in the point
			}
		}
		created[objKey{it.Group, it.Resource, src, name}] = it
		types[it.Group+"/"+it.Resource] = kube.Resource{Group: it.Group, Version: it.Version, Resource: it.Resource, Kind: it.Kind, Namespaced: it.Namespace != ""}
	}
	lister, err := kube.NewLister(cfg)
	if err != nil {
		return nil, err
	}
	rpLabel := restore.RecoveryPointLabel(rp.ID.String())
	cmp := &Comparison{}
	for _, t := range rp.Resources {
		kr, ok := types[t.Group+"/"+t.Resource]
		if !ok {
			continue
		}
		live, err := listSandbox(ctx, lister, kr, o)
		if err != nil {
			return nil, err
		}
		err = r.WalkTree(ctx, t.Tree, func(e repo.TreeEntry) error {
			k := objKey{t.Group, t.Resource, e.Namespace, e.Name}
			it, ok := created[k]
			if !ok {
				return nil
			}
			ref := kube.GroupResource(t.Group, t.Resource) + " " + nsName(e.Namespace, e.Name)
			cmp.Compared++
			var data []byte
			for _, id := range e.Blobs {
				b, err := r.LoadBlob(ctx, id)
				if err != nil {
					cmp.Differences = append(cmp.Differences, Difference{ref, fmt.Sprintf("cannot read it from the repository: %v", err)})
					return nil
				}
				data = append(data, b...)
			}
			var want map[string]any
			if err := json.Unmarshal(data, &want); err != nil {
				cmp.Differences = append(cmp.Differences, Difference{ref, fmt.Sprintf("the recovery point's copy does not decode: %v", err)})
				return nil
			}
			raw, ok := live[it.Namespace+"/"+it.Name]
			if !ok {
				cmp.Differences = append(cmp.Differences, Difference{ref, fmt.Sprintf("the restore created it as %s but it is not in the sandbox", nsName(it.Namespace, it.Name))})
				return nil
			}
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				return fmt.Errorf("decode %s from the cluster: %w", it.Ref(), err)
			}
			normalize(t.Group, t.Resource, want, o.Criteria, rpLabel, o.RestoreName)
			normalize(t.Group, t.Resource, got, o.Criteria, rpLabel, o.RestoreName)
			paths, err := diffPaths(want, got)
			if err != nil {
				return fmt.Errorf("compare %s: %w", it.Ref(), err)
			}
			if len(paths) > 0 {
				cmp.Differences = append(cmp.Differences, Difference{ref, describe(paths)})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", kube.GroupResource(t.Group, t.Resource), err)
		}
	}
	sort.Slice(cmp.Differences, func(i, j int) bool { return cmp.Differences[i].Object < cmp.Differences[j].Object })
	return cmp, nil
}

func nsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// listSandbox lists the restore's objects of one type (label
// arca.io/restore), keyed namespace/name.
func listSandbox(ctx context.Context, l *kube.Lister, kr kube.Resource, o Options) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	cont := ""
	for {
		page, err := l.List(ctx, kr, kube.ListOptions{Limit: o.PageSize, Continue: cont, LabelSelector: v1alpha1.LabelRestore + "=" + o.RestoreName})
		if err != nil {
			return nil, fmt.Errorf("list %s in the sandbox: %w", kube.GroupResource(kr.Group, kr.Resource), err)
		}
		for _, item := range page.Items {
			obj, err := kube.DecodeObject(item)
			if err != nil {
				return nil, err
			}
			out[obj.GetNamespace()+"/"+obj.GetName()] = item
		}
		cont = page.Metadata.Continue
		if cont == "" {
			return out, nil
		}
	}
}

// ignoredAnnotations are set by controllers, so a restored object's value
// differs from the original's without anything being wrong.
var ignoredAnnotations = []string{
	"deployment.kubernetes.io/revision",
	"volume.beta.kubernetes.io/storage-provisioner",
	"volume.kubernetes.io/storage-provisioner",
	"kubectl.kubernetes.io/restartedAt",
}

// normalize takes out of obj what differs between a point's object and
// its restored copy by design: what the restore changes
// (restore.PrepareObject: server metadata, status, mapped namespaces,
// cluster IPs, node ports, node names, generated selectors, restore
// labels), the UIDs in owner references (new owners), type and version,
// and a few fields the API server or controllers set (ignoredAnnotations,
// a namespace's name label, a claim's binding and data source).
func normalize(group, resource string, obj map[string]any, crit *v1alpha1.RestoreCriteria, rpLabel, restoreName string) {
	restore.PrepareObject(group, resource, obj, crit, rpLabel, restoreName)
	delete(obj, "apiVersion")
	delete(obj, "kind")
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return
	}
	if refs, ok := meta["ownerReferences"].([]any); ok {
		for _, r := range refs {
			if m, ok := r.(map[string]any); ok {
				delete(m, "uid")
			}
		}
	}
	if ann, ok := meta["annotations"].(map[string]any); ok {
		for _, a := range ignoredAnnotations {
			delete(ann, a)
		}
		if len(ann) == 0 {
			delete(meta, "annotations")
		}
	}
	switch group + "/" + resource {
	case "/namespaces":
		if l, ok := meta["labels"].(map[string]any); ok {
			delete(l, "kubernetes.io/metadata.name")
		}
	case "/persistentvolumeclaims":
		if spec, ok := obj["spec"].(map[string]any); ok {
			delete(spec, "volumeName")
			delete(spec, "dataSource")
			delete(spec, "dataSourceRef")
		}
	}
}

// maxPaths is how many differing fields a difference names.
const maxPaths = 5

// diffPaths names the fields where the point's copy (a) and the sandbox's
// (b) differ, at most maxPaths, compared field by field as internal/diff
// compares a point with the live cluster.
func diffPaths(a, b map[string]any) ([]string, error) {
	ab, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	bb, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	changes, err := diff.Fields(ab, bb, diff.Options{IncludeStatus: true})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range changes {
		if len(out) == maxPaths {
			break
		}
		switch {
		case c.Old == nil:
			out = append(out, c.Path+" (only in the sandbox)")
		case c.New == nil:
			out = append(out, c.Path+" (missing in the sandbox)")
		default:
			out = append(out, fmt.Sprintf("%s (point %s, sandbox %s)", c.Path, short(c.Old), short(c.New)))
		}
	}
	return out, nil
}

func short(b json.RawMessage) string {
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}

func describe(paths []string) string {
	return "differs from the recovery point at " + strings.Join(paths, ", ")
}

// Cleanup deletes the sandbox namespaces that the restore named
// restoreName created: only names with the sandbox prefix, and only
// namespaces labelled arca.io/restore=restoreName. The API server deletes
// their objects in the background; Cleanup does not wait. It returns the
// namespaces it could not delete with the error of each.
func Cleanup(ctx context.Context, cfg *rest.Config, names []string, restoreName string) (map[string]error, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	failed := map[string]error{}
	for _, n := range names {
		if !strings.HasPrefix(n, v1alpha1.VerificationNamespacePrefix) {
			failed[n] = fmt.Errorf("not a sandbox namespace (no %s prefix): left alone", v1alpha1.VerificationNamespacePrefix)
			continue
		}
		ns, err := cs.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			failed[n] = err
			continue
		}
		if ns.Labels[v1alpha1.LabelRestore] != restoreName {
			failed[n] = fmt.Errorf("label %s is %q, not this verification's %q: left alone", v1alpha1.LabelRestore, ns.Labels[v1alpha1.LabelRestore], restoreName)
			continue
		}
		if ns.DeletionTimestamp != nil {
			continue
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			failed[n] = err
		}
	}
	return failed, nil
}

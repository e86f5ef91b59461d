package restore

import (
	"context"
	"fmt"
	"sort"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/repo"
)

// Targets is what a restore may write, judged from the recovery point's
// trees (types, namespaces, names) before any object is read: label
// selectors and the owner rule can only narrow it. The extension checks it
// against the cluster owner's trust policy before the restore writes
// anything.
type Targets struct {
	// Namespaces are the target namespaces (after mappings) of the
	// selected namespaced objects and namespace objects, sorted.
	Namespaces []string
	// ClusterScoped are the selected cluster-scoped objects other than
	// namespaces, as "resource.group name".
	ClusterScoped []string
	// RBAC and Admission are the selected objects of those kinds
	// (v1alpha1.SensitiveKind), namespaced or not, as Item.Ref names them.
	RBAC, Admission []string
}

// Targets walks the recovery point's trees (no object is loaded) and
// returns what the restore may write.
func (p *Prepared) Targets(ctx context.Context) (*Targets, error) {
	r := &run{Prepared: p}
	out := &Targets{}
	nss := map[string]bool{}
	for _, t := range p.rp.Resources {
		if !r.treeSelected(t) {
			continue
		}
		if r.withClaims(t) {
			// Restored only with their claims, whose namespaces are judged.
			continue
		}
		isNS := t.Group == "" && t.Resource == "namespaces"
		kind := v1alpha1.SensitiveKind(t.Group, t.Resource)
		err := p.rd.WalkTree(ctx, t.Tree, func(e repo.TreeEntry) error {
			switch {
			case isNS:
				if p.sel.Namespaces.Includes(e.Name) {
					nss[r.mapNS(e.Name)] = true
				}
				return nil
			case t.Namespaced:
				if !p.sel.Namespaces.Includes(e.Namespace) {
					return nil
				}
				nss[r.mapNS(e.Namespace)] = true
			default:
				out.ClusterScoped = append(out.ClusterScoped, kube.GroupResource(t.Group, t.Resource)+" "+e.Name)
			}
			it := r.item(0, t, e.Namespace, e.Name)
			switch kind {
			case "rbac":
				out.RBAC = append(out.RBAC, it.Ref())
			case "admission":
				out.Admission = append(out.Admission, it.Ref())
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read tree of %s: %w", kube.GroupResource(t.Group, t.Resource), err)
		}
	}
	for ns := range nss {
		out.Namespaces = append(out.Namespaces, ns)
	}
	sort.Strings(out.Namespaces)
	sort.Strings(out.ClusterScoped)
	sort.Strings(out.RBAC)
	sort.Strings(out.Admission)
	return out, nil
}

package prereq

import (
	"context"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Velero is what gives a Velero installation away in a cluster. Two backup
// systems on one cluster run hooks twice, fight over snapshots and restore
// over each other: `arca extension install` refuses (unless told
// --allow-velero), and the NoVelero check fails.
type Velero struct {
	// Found names each sign, e.g. "API group velero.io (backups.velero.io,
	// restores.velero.io)" or "deployment velero/velero"; empty: none.
	Found []string
	// DeploymentsUnchecked says why Deployments were not looked at (the
	// identity may not list them cluster-wide); "" when they were.
	DeploymentsUnchecked string
}

// Installed reports whether any sign of Velero was found.
func (v *Velero) Installed() bool { return len(v.Found) > 0 }

// DetectVelero looks for Velero in the cluster of cfg: served API groups
// velero.io or *.velero.io (through discovery, which every identity may
// read and which sees CRDs and aggregated APIs alike), and Deployments named
// velero or labelled as Velero by its Helm chart
// (app.kubernetes.io/name=velero) or by `velero install` (component=velero).
// An error means discovery failed.
func DetectVelero(ctx context.Context, cfg *rest.Config) (*Velero, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return detectVelero(ctx, cs)
}

func detectVelero(ctx context.Context, cs kubernetes.Interface) (*Velero, error) {
	v := &Velero{}
	groups, err := cs.Discovery().ServerGroups()
	if err != nil {
		return nil, fmt.Errorf("discover the API groups: %w", err)
	}
	for _, g := range groups.Groups {
		if g.Name != "velero.io" && !strings.HasSuffix(g.Name, ".velero.io") {
			continue
		}
		sign := "API group " + g.Name
		// The resources make the sign recognisable (backups.velero.io);
		// the group alone is enough when they cannot be read.
		if l, err := cs.Discovery().ServerResourcesForGroupVersion(g.PreferredVersion.GroupVersion); err == nil {
			var names []string
			for _, r := range l.APIResources {
				if !strings.Contains(r.Name, "/") {
					names = append(names, r.Name+"."+g.Name)
				}
			}
			sort.Strings(names)
			if len(names) > 0 {
				sign += " (" + strings.Join(names, ", ") + ")"
			}
		}
		v.Found = append(v.Found, sign)
	}
	ds, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		v.DeploymentsUnchecked = err.Error()
		return v, nil
	}
	for _, d := range ds.Items {
		if d.Name == "velero" || d.Labels["app.kubernetes.io/name"] == "velero" || d.Labels["component"] == "velero" {
			v.Found = append(v.Found, "deployment "+d.Namespace+"/"+d.Name)
		}
	}
	return v, nil
}

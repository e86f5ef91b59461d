// Package kube holds what the backup and restore engines need from a
// cluster beyond a client: a REST config with explicit client rate limits,
// discovery of every served resource type in its preferred version, and the
// rules for what the cluster regenerates and is therefore never backed up.
package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options select a kubeconfig and the client's rate limits.
type Options struct {
	Kubeconfig string // path; empty means the default loading rules ($KUBECONFIG, ~/.kube/config, in-cluster)
	Context    string
	// QPS and Burst bound the client's request rate. Zero means the defaults
	// below, far above client-go's 5/10: what protects the API server is the
	// engines' bounded concurrency (a backup has at most Workers lists in
	// flight, a restore at most Workers writes), so the rate limit is only a
	// safety net and must not be what limits a restore.
	QPS   float32
	Burst int
}

const (
	DefaultQPS   = 2000
	DefaultBurst = 4000
)

// RESTConfig loads a client configuration.
func RESTConfig(o Options) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	WithRateLimits(cfg, o.QPS, o.Burst)
	return cfg, nil
}

// WithRateLimits sets QPS and Burst on cfg (defaults when zero) and returns it.
func WithRateLimits(cfg *rest.Config, qps float32, burst int) *rest.Config {
	if qps <= 0 {
		qps = DefaultQPS
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	cfg.QPS, cfg.Burst = qps, burst
	return cfg
}

// Resource is one served resource type in the version used for it.
type Resource struct {
	Group      string `json:"group"`
	Version    string `json:"version"`
	Resource   string `json:"resource"`
	Kind       string `json:"kind"`
	Namespaced bool   `json:"namespaced"`
}

// GVR is the resource's group, version and resource.
func (r Resource) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
}

// GroupResource names the type without version: `deployments.apps`, `configmaps`.
func (r Resource) GroupResource() string { return GroupResource(r.Group, r.Resource) }

// GroupResource formats resource.group, or resource for the core group.
func GroupResource(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// APIVersion is group/version, or version for the core group.
func (r Resource) APIVersion() string {
	if r.Group == "" {
		return r.Version
	}
	return r.Group + "/" + r.Version
}

// Discovery is the result of discovering a cluster's resource types.
type Discovery struct {
	// Resources are the types that can be listed, read and created, in their
	// preferred versions, sorted by group then resource. Excluded types are
	// not among them.
	Resources []Resource
	// Excluded are the served types left out because the cluster
	// regenerates them (see ExcludedTypes).
	Excluded []Resource
	// FailedGroups are API groups whose discovery failed (an aggregated API
	// whose backend is down, typically); their types are unknown.
	FailedGroups map[string]error
}

// Discover lists every served resource type in its preferred version,
// custom resources included.
func Discover(dc discovery.DiscoveryInterface) (*Discovery, error) {
	lists, err := dc.ServerPreferredResources()
	d := &Discovery{}
	if err != nil {
		var gdf *discovery.ErrGroupDiscoveryFailed
		if !errors.As(err, &gdf) {
			return nil, fmt.Errorf("discover API resources: %w", err)
		}
		d.FailedGroups = map[string]error{}
		for gv, e := range gdf.Groups {
			d.FailedGroups[gv.String()] = e
		}
	}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, fmt.Errorf("discovery: bad group version %q: %w", l.GroupVersion, err)
		}
		for _, ar := range l.APIResources {
			if strings.Contains(ar.Name, "/") { // subresource
				continue
			}
			if !hasVerbs(ar.Verbs, "list", "get", "create") {
				continue
			}
			r := Resource{Group: gv.Group, Version: gv.Version, Resource: ar.Name, Kind: ar.Kind, Namespaced: ar.Namespaced}
			if _, excluded := ExcludedTypes[r.GroupResource()]; excluded {
				d.Excluded = append(d.Excluded, r)
				continue
			}
			d.Resources = append(d.Resources, r)
		}
	}
	sortResources(d.Resources)
	sortResources(d.Excluded)
	return d, nil
}

func sortResources(rs []Resource) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Group != rs[j].Group {
			return rs[i].Group < rs[j].Group
		}
		return rs[i].Resource < rs[j].Resource
	})
}

func hasVerbs(have metav1.Verbs, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ExcludedTypes are never backed up: the cluster (its control plane, its
// controllers or its nodes) creates them, so restoring them would at best
// duplicate and at worst fight what the target cluster makes itself. The
// reason is shown in docs/engine.md.
var ExcludedTypes = map[string]string{
	"events":                                         "ephemeral records of what happened",
	"events.events.k8s.io":                           "ephemeral records of what happened",
	"endpoints":                                      "maintained by the endpoints controller from Services",
	"endpointslices.discovery.k8s.io":                "maintained by the endpoint slice controller from Services",
	"leases.coordination.k8s.io":                     "leader election and node heartbeats",
	"nodes":                                          "registered by kubelets of the cluster",
	"csinodes.storage.k8s.io":                        "registered by kubelets of the cluster",
	"volumeattachments.storage.k8s.io":               "state of the attach/detach controller",
	"csistoragecapacities.storage.k8s.io":            "published by CSI drivers",
	"componentstatuses":                              "deprecated health view of the control plane",
	"ipaddresses.networking.k8s.io":                  "ClusterIP allocations, made again when Services are created",
	"servicecidrs.networking.k8s.io":                 "the API server's service ranges",
	"resourceslices.resource.k8s.io":                 "published by DRA drivers on nodes",
	"certificatesigningrequests.certificates.k8s.io": "bound to the credentials of the source cluster",
	"pods.metrics.k8s.io":                            "metrics",
	"nodes.metrics.k8s.io":                           "metrics",
}

// ExcludedObject reports whether one object of an otherwise included type is
// regenerated by the cluster, with the reason.
func ExcludedObject(group, resource string, o *Object) (string, bool) {
	name, ns := o.Metadata.Name, o.Metadata.Namespace
	lbls, ann := o.Metadata.Labels, o.Metadata.Annotations
	switch GroupResource(group, resource) {
	case "secrets":
		if o.TypeString() == "kubernetes.io/service-account-token" {
			return "service account token, issued again by the token controller", true
		}
	case "serviceaccounts":
		if name == "default" && len(lbls) == 0 && len(ann) == 0 && isNull(o.ImagePullSecrets) &&
			isNull(o.AutomountServiceAccountToken) && isNull(o.Secrets) {
			return "created in every namespace by the service account controller", true
		}
	case "configmaps":
		if name == "kube-root-ca.crt" {
			return "published into every namespace by the root CA publisher", true
		}
	case "services":
		if ns == "default" && name == "kubernetes" {
			return "the API server's own Service", true
		}
	case "clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
		"roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io":
		if lbls["kubernetes.io/bootstrapping"] == "rbac-defaults" {
			return "default RBAC, reconciled by the API server", true
		}
	case "flowschemas.flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations.flowcontrol.apiserver.k8s.io":
		if ann["apf.kubernetes.io/autoupdate-spec"] == "true" {
			return "built-in API priority and fairness configuration", true
		}
	case "priorityclasses.scheduling.k8s.io":
		if strings.HasPrefix(name, "system-") {
			return "built-in priority class", true
		}
	case "apiservices.apiregistration.k8s.io":
		if _, ok := lbls["kube-aggregator.kubernetes.io/automanaged"]; ok {
			return "registered by the API server for its own groups", true
		}
	}
	return "", false
}

func isNull(r []byte) bool { return len(r) == 0 || string(r) == "null" }

// ClusterInfo identifies a cluster.
type ClusterInfo struct {
	// ID is the UID of the kube-system namespace, the conventional stable
	// identity of a cluster.
	ID                string
	Server            string
	KubernetesVersion string
}

// Identify reads the cluster's identity and version.
func Identify(ctx context.Context, cfg *rest.Config) (ClusterInfo, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return ClusterInfo{}, err
	}
	info := ClusterInfo{Server: cfg.Host}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return info, fmt.Errorf("read server version: %w", err)
	}
	info.KubernetesVersion = v.GitVersion
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		return info, fmt.Errorf("read cluster identity (namespace kube-system): %w", err)
	}
	info.ID = string(ns.UID)
	return info, nil
}

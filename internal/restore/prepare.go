package restore

import (
	"strings"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Tiers is the restore order: a tier starts when the one before it has
// finished; objects within a tier are written in parallel. Types not named
// here go to the workload tier (TierWorkloads); admission webhooks and
// policies and aggregated API registrations go last (TierAdmission) so that
// a webhook whose backend is not running yet cannot block the objects it
// validates. Keys are resource.group.
var Tiers = [][]string{
	{"customresourcedefinitions.apiextensions.k8s.io"},
	{"namespaces"},
	{"storageclasses.storage.k8s.io", "volumesnapshotclasses.snapshot.storage.k8s.io", "priorityclasses.scheduling.k8s.io", "runtimeclasses.node.k8s.io", "csidrivers.storage.k8s.io", "ingressclasses.networking.k8s.io"},
	{"persistentvolumes", "volumesnapshotcontents.snapshot.storage.k8s.io"},
	{"persistentvolumeclaims", "volumesnapshots.snapshot.storage.k8s.io"},
	{"clusterroles.rbac.authorization.k8s.io", "roles.rbac.authorization.k8s.io"},
	{"serviceaccounts"},
	{"clusterrolebindings.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io"},
	{"secrets", "configmaps"},
	{"limitranges", "resourcequotas"},
	// workloads and everything else
	{},
	{"validatingwebhookconfigurations.admissionregistration.k8s.io", "mutatingwebhookconfigurations.admissionregistration.k8s.io",
		"validatingadmissionpolicies.admissionregistration.k8s.io", "validatingadmissionpolicybindings.admissionregistration.k8s.io",
		"mutatingadmissionpolicies.admissionregistration.k8s.io", "mutatingadmissionpolicybindings.admissionregistration.k8s.io",
		"apiservices.apiregistration.k8s.io"},
}

const (
	TierCRDs       = 0
	TierNamespaces = 1
	TierWorkloads  = 10
	TierAdmission  = 11
)

var tierOf = func() map[string]int {
	m := map[string]int{}
	for i, t := range Tiers {
		for _, gr := range t {
			m[gr] = i
		}
	}
	return m
}()

// TierOf returns the tier of a resource type given as resource.group.
func TierOf(groupResource string) int {
	if t, ok := tierOf[groupResource]; ok {
		return t
	}
	return TierWorkloads
}

// serverFields are set by the API server and refused or meaningless on create.
var serverMetadataFields = []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}

// PrepareObject turns a backed-up object into the object to create: server-
// populated fields stripped, namespaces mapped, restore labels added. It
// does not touch owner references (see the restorer). obj is modified.
func PrepareObject(group, resource string, obj map[string]any, crit *v1alpha1.RestoreCriteria, rpLabel, restoreName string) {
	meta := mapOf(obj, "metadata")
	for _, f := range serverMetadataFields {
		delete(meta, f)
	}
	delete(obj, "status")
	mapNS := func(ns string) string {
		if to, ok := crit.NamespaceMappings[ns]; ok {
			return to
		}
		return ns
	}
	if ns, ok := meta["namespace"].(string); ok && ns != "" {
		meta["namespace"] = mapNS(ns)
	}
	switch group + "/" + resource {
	case "/namespaces":
		name, _ := meta["name"].(string)
		if to := mapNS(name); to != name {
			meta["name"] = to
			if l, ok := meta["labels"].(map[string]any); ok {
				delete(l, "kubernetes.io/metadata.name") // the API server sets it to the new name
			}
		}
	case "/services":
		spec := mapOf(obj, "spec")
		if ip, _ := spec["clusterIP"].(string); ip != "None" {
			delete(spec, "clusterIP")
			delete(spec, "clusterIPs")
		}
		if !crit.PreserveNodePorts {
			delete(spec, "healthCheckNodePort")
			if ports, ok := spec["ports"].([]any); ok {
				for _, p := range ports {
					if pm, ok := p.(map[string]any); ok {
						delete(pm, "nodePort")
					}
				}
			}
		}
	case "/persistentvolumes":
		spec := mapOf(obj, "spec")
		if cr, ok := spec["claimRef"].(map[string]any); ok {
			delete(cr, "uid")
			delete(cr, "resourceVersion")
			if ns, ok := cr["namespace"].(string); ok {
				cr["namespace"] = mapNS(ns)
			}
		}
	case "/persistentvolumeclaims":
		if ann, ok := meta["annotations"].(map[string]any); ok {
			delete(ann, "pv.kubernetes.io/bind-completed")
			delete(ann, "pv.kubernetes.io/bound-by-controller")
			delete(ann, "volume.kubernetes.io/selected-node")
		}
	case "rbac.authorization.k8s.io/rolebindings", "rbac.authorization.k8s.io/clusterrolebindings":
		if subjects, ok := obj["subjects"].([]any); ok {
			for _, s := range subjects {
				if sm, ok := s.(map[string]any); ok {
					if ns, ok := sm["namespace"].(string); ok && ns != "" {
						sm["namespace"] = mapNS(ns)
					}
				}
			}
		}
	case "batch/jobs":
		spec := mapOf(obj, "spec")
		if manual, _ := spec["manualSelector"].(bool); !manual {
			// The selector was generated from the old Job's UID; the API
			// server generates a new one and refuses the old.
			delete(spec, "selector")
			if tl, ok := mapOf(mapOf(spec, "template"), "metadata")["labels"].(map[string]any); ok {
				delete(tl, "controller-uid")
				delete(tl, "batch.kubernetes.io/controller-uid")
			}
		}
	case "/pods":
		spec := mapOf(obj, "spec")
		delete(spec, "nodeName") // scheduled again in the target cluster
	}
	lbls, ok := meta["labels"].(map[string]any)
	if !ok {
		lbls = map[string]any{}
		meta["labels"] = lbls
	}
	lbls[v1alpha1.LabelRecoveryPoint] = rpLabel
	lbls[v1alpha1.LabelRestore] = restoreName
}

// mapOf returns m[key] as a map, creating it when missing.
func mapOf(m map[string]any, key string) map[string]any {
	if v, ok := m[key].(map[string]any); ok {
		return v
	}
	v := map[string]any{}
	m[key] = v
	return v
}

// RecoveryPointLabel is the label value naming a recovery point: label
// values hold at most 63 characters, so a 32-character prefix of the ID.
func RecoveryPointLabel(id string) string {
	if len(id) > 32 {
		return id[:32]
	}
	return id
}

// groupOf returns the group of an apiVersion.
func groupOf(apiVersion string) string {
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		return g
	}
	return ""
}

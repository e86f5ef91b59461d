package extension

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/config/crd"
	"github.com/arca-backup/arca/internal/storage/location"
)

// Names of the installed objects.
const (
	DefaultStorageLocation = "default"
	DefaultStorageSecret   = "arca-storage"
	FieldManager           = "arca"
	DefaultImageRepository = "ghcr.io/arca-backup/arca"
	labelVersion           = "app.kubernetes.io/version"
	// ContainerName is the extension's container in its pod.
	ContainerName = "extension"
	// EnvPodName and EnvPodNamespace carry the pod's own name and namespace
	// (downward API): on start the extension reads its pod to learn why its
	// previous container ended (OOMKilled).
	EnvPodName      = "ARCA_POD_NAME"
	EnvPodNamespace = "ARCA_POD_NAMESPACE"
	// RunAsUser is the extension's non-root user (the image's USER).
	RunAsUser = 65532
	// DefaultStorageClaimSize is the size of a PVC install creates for
	// file:// storage.
	DefaultStorageClaimSize = "10Gi"
	storageVolume           = "storage"
)

// InstallOptions describe an installation.
type InstallOptions struct {
	Namespace string
	Version   string
	// Image defaults to DefaultImageRepository:Version.
	Image string
	// StorageURL and StorageSecret make the "default" StorageLocation.
	StorageURL    string
	StorageSecret string
	ReadOnly      bool
	// SecretData, when set, is written as the StorageSecret (password and
	// storage credentials, keys as in v1alpha1.SecretKey*).
	SecretData map[string]string
	// Resources of the extension container (defaults: requests 100m/128Mi,
	// limits 1 CPU/512Mi).
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
	NodeSelector                                     map[string]string
	Tolerations                                      []corev1.Toleration
	MaxConcurrentJobs                                int
	// StorageRetry is the extension's `--storage-retry`: how long one
	// storage call is retried before the repository counts as unreachable,
	// for the extension and the data-mover and restore pods it runs. Zero
	// leaves the flag out (the storage's default, 10 attempts over about
	// 3 minutes).
	StorageRetry time.Duration
	// ExtraArgs are appended to `arca extension run`'s arguments in the pod
	// (--log-format=json, --status-interval=5s, …).
	ExtraArgs []string
	// ImagePullSecrets name Secrets (type kubernetes.io/dockerconfigjson,
	// in Namespace) the kubelet uses to pull Image from a private registry.
	ImagePullSecrets []string
	// File storage: the in-cluster extension reaches a file:// StorageURL
	// through a volume mounted at the URL's path, either the PVC
	// StorageClaim or the node directory StorageHostPath (single-node
	// clusters). StorageClaimSize, when set, adds the PVC to the manifests
	// (created with that size and StorageClass; empty class: the
	// cluster's default); otherwise the claim must exist.
	StorageClaim     string
	StorageClaimSize string
	StorageClass     string
	StorageHostPath  string
}

// VolumeError is a file:// storage URL without a volume, or a volume flag
// that does not fit the storage URL.
type VolumeError struct{ Msg string }

func (e *VolumeError) Error() string { return e.Msg }

// Code is v1alpha1.CodeFileStorageNeedsVolume.
func (e *VolumeError) Code() string { return v1alpha1.CodeFileStorageNeedsVolume }

// StoragePath returns the directory a file:// StorageURL names ("" for other
// kinds or no URL).
func (o InstallOptions) StoragePath() string {
	if !strings.HasPrefix(strings.ToLower(o.StorageURL), "file://") {
		return ""
	}
	l, err := location.Parse(o.StorageURL)
	if err != nil || l.Kind != location.File {
		return ""
	}
	return l.Path
}

// checkVolume says what is wrong with the file storage volume options.
func (o InstallOptions) checkVolume() error {
	path := o.StoragePath()
	switch {
	case o.StorageClaim != "" && o.StorageHostPath != "":
		return &VolumeError{"--storage-claim and --storage-host-path exclude each other: the repository is on one volume"}
	case path == "" && (o.StorageClaim != "" || o.StorageHostPath != ""):
		return &VolumeError{fmt.Sprintf("--storage-claim and --storage-host-path hold file:// storage; the storage URL %q is not a file:// URL", o.StorageURL)}
	case path != "" && o.StorageClaim == "" && o.StorageHostPath == "":
		return &VolumeError{fmt.Sprintf("%s: the extension runs in a pod, which sees %s only through a volume: "+
			"pass --storage-claim NAME (a PersistentVolumeClaim, created when missing) or, on a single-node cluster, "+
			"--storage-host-path DIR (a directory on the node); or use azure:// or s3:// storage (%s)",
			o.StorageURL, path, v1alpha1.CodeFileStorageNeedsVolume)}
	case o.StorageHostPath != "" && !strings.HasPrefix(o.StorageHostPath, "/"):
		return &VolumeError{fmt.Sprintf("--storage-host-path %q: want an absolute path on the node", o.StorageHostPath)}
	case o.StorageClaimSize != "" && o.StorageClaim == "":
		return &VolumeError{"--storage-claim-size needs --storage-claim NAME"}
	}
	return nil
}

func (o *InstallOptions) defaults() {
	if o.Namespace == "" {
		o.Namespace = v1alpha1.ExtensionNamespace
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Image == "" {
		o.Image = DefaultImageRepository + ":" + o.Version
	}
	if o.StorageSecret == "" {
		o.StorageSecret = DefaultStorageSecret
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	// A default request above a given limit follows the limit down.
	below := func(request *string, def, limit string) {
		if *request != "" {
			return
		}
		*request = def
		d, derr := resource.ParseQuantity(def)
		l, lerr := resource.ParseQuantity(limit)
		if limit != "" && derr == nil && lerr == nil && d.Cmp(l) > 0 {
			*request = limit
		}
	}
	below(&o.CPURequest, "100m", o.CPULimit)
	below(&o.MemoryRequest, "128Mi", o.MemoryLimit)
	def(&o.CPULimit, "1")
	def(&o.MemoryLimit, "512Mi")
}

// Manifests returns every object an installation applies, in apply order.
func Manifests(o InstallOptions) ([]*unstructured.Unstructured, error) {
	o.defaults()
	labels := map[string]string{v1alpha1.LabelManagedBy: FieldManager, v1alpha1.LabelName: v1alpha1.ExtensionName, labelVersion: o.Version}
	meta := func(name string, namespaced bool) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: name, Labels: labels}
		if namespaced {
			m.Namespace = o.Namespace
		}
		return m
	}
	var objs []runtime.Object
	objs = append(objs, &corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: meta(o.Namespace, false)})
	crds, err := crd.CRDs()
	if err != nil {
		return nil, err
	}
	for _, c := range crds {
		c.TypeMeta = tm("apiextensions.k8s.io/v1", "CustomResourceDefinition")
		c.Labels = labels
		objs = append(objs, c)
	}
	objs = append(objs,
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta(v1alpha1.ExtensionName, true)},
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: meta(v1alpha1.ExtensionName, false),
			// Backup reads every type; restore creates every type, RBAC
			// included (which needs escalate and bind): the extension is
			// cluster-admin in all but name, like every cluster backup agent.
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
				{NonResourceURLs: []string{"/api", "/api/*", "/apis", "/apis/*", "/version"}, Verbs: []string{"get"}},
			}},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: meta(v1alpha1.ExtensionName, false),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: v1alpha1.ExtensionName},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: v1alpha1.ExtensionName, Namespace: o.Namespace}}},
	)
	if o.SecretData != nil {
		objs = append(objs, &corev1.Secret{TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(o.StorageSecret, true), StringData: o.SecretData})
	}
	if err := o.checkVolume(); err != nil {
		return nil, err
	}
	if o.StorageClaim != "" && o.StorageClaimSize != "" {
		size, err := resource.ParseQuantity(o.StorageClaimSize)
		if err != nil {
			return nil, fmt.Errorf("--storage-claim-size %q: %w", o.StorageClaimSize, err)
		}
		pvc := &corev1.PersistentVolumeClaim{TypeMeta: tm("v1", "PersistentVolumeClaim"), ObjectMeta: meta(o.StorageClaim, true),
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			}}
		if o.StorageClass != "" {
			pvc.Spec.StorageClassName = ptr.To(o.StorageClass)
		}
		objs = append(objs, pvc)
	}
	if o.StorageURL != "" {
		objs = append(objs, &v1alpha1.StorageLocation{TypeMeta: tm(v1alpha1.GroupVersion.String(), "StorageLocation"), ObjectMeta: meta(DefaultStorageLocation, true),
			Spec: v1alpha1.StorageLocationSpec{URL: o.StorageURL, CredentialsSecret: o.StorageSecret, ReadOnly: o.ReadOnly}})
	}
	dep, err := deployment(o, labels)
	if err != nil {
		return nil, err
	}
	objs = append(objs, dep)
	var out []*unstructured.Unstructured
	for _, obj := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{Object: m}
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		out = append(out, u)
	}
	return out, nil
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func deployment(o InstallOptions, labels map[string]string) (*appsv1.Deployment, error) {
	rl := corev1.ResourceList{}
	rr := corev1.ResourceList{}
	for _, q := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
		val  string
		flag string
	}{{rr, corev1.ResourceCPU, o.CPURequest, "cpu request"}, {rr, corev1.ResourceMemory, o.MemoryRequest, "memory request"},
		{rl, corev1.ResourceCPU, o.CPULimit, "--cpu-limit"}, {rl, corev1.ResourceMemory, o.MemoryLimit, "--memory-limit"}} {
		v, err := resource.ParseQuantity(q.val)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", q.flag, q.val, err)
		}
		q.list[q.name] = v
	}
	for _, r := range []struct {
		name       corev1.ResourceName
		what, flag string
	}{{corev1.ResourceCPU, "cpu", "--cpu"}, {corev1.ResourceMemory, "memory", "--memory"}} {
		req, lim := rr[r.name], rl[r.name]
		if req.Cmp(lim) > 0 {
			return nil, fmt.Errorf("%s-request %s is above %s-limit %s: a container may not request more than its limit; lower the request too",
				r.flag, req.String(), r.flag, lim.String())
		}
	}
	sel := map[string]string{v1alpha1.LabelName: v1alpha1.ExtensionName}
	jobs := o.MaxConcurrentJobs
	if jobs <= 0 {
		jobs = 1
	}
	if err := CheckStorageRetry(o.StorageRetry); err != nil {
		return nil, err
	}
	args := []string{"extension", "run", "--in-cluster", "--namespace", o.Namespace, "--leader-elect"}
	if o.StorageRetry > 0 {
		args = append(args, storageRetryArg+o.StorageRetry.String())
	}
	// --max-concurrent-jobs comes last of the arguments install owns:
	// CurrentOptions reads whatever follows it as ExtraArgs.
	args = append(args, fmt.Sprintf("%s%d", maxJobsArg, jobs))
	args = append(args, o.ExtraArgs...)
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")}},
			PeriodSeconds: 10}
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	restricted := &corev1.SecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](RunAsUser), RunAsGroup: ptr.To[int64](RunAsUser),
		AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	c := corev1.Container{
		Name:           ContainerName,
		Image:          o.Image,
		Args:           args,
		Env:            []corev1.EnvVar{fieldEnv(EnvPodName, "metadata.name"), fieldEnv(EnvPodNamespace, "metadata.namespace")},
		Ports:          []corev1.ContainerPort{{Name: "metrics", ContainerPort: 8080}, {Name: "health", ContainerPort: 8081}},
		Resources:      corev1.ResourceRequirements{Requests: rr, Limits: rl},
		LivenessProbe:  probe("/healthz"),
		ReadinessProbe: probe("/readyz"),
		// The probes answer once the manager listens; give a slow node
		// (image pull done, binary starting) some slack before restarts.
		StartupProbe:    &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("health")}}, PeriodSeconds: 2, FailureThreshold: 30},
		SecurityContext: restricted,
	}
	ps := corev1.PodSpec{
		ServiceAccountName: v1alpha1.ExtensionName,
		NodeSelector:       o.NodeSelector,
		Tolerations:        o.Tolerations,
		SecurityContext:    &corev1.PodSecurityContext{FSGroup: ptr.To[int64](RunAsUser), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
	}
	for _, s := range o.ImagePullSecrets {
		ps.ImagePullSecrets = append(ps.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if path := o.StoragePath(); path != "" {
		v := corev1.Volume{Name: storageVolume}
		if o.StorageClaim != "" {
			v.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: o.StorageClaim}
		} else {
			v.HostPath = &corev1.HostPathVolumeSource{Path: o.StorageHostPath, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}
		}
		ps.Volumes = []corev1.Volume{v}
		mount := corev1.VolumeMount{Name: storageVolume, MountPath: path}
		c.VolumeMounts = []corev1.VolumeMount{mount}
		// A new hostPath directory (or a volume without fsGroup support) is
		// root's: an init container with CAP_CHOWN alone hands it to the
		// extension's user before the extension starts.
		ps.InitContainers = []corev1.Container{{
			Name: "storage-owner", Image: o.Image, Args: []string{"extension", "chown-storage", "--uid", fmt.Sprint(RunAsUser), path},
			VolumeMounts: []corev1.VolumeMount{mount},
			Resources:    corev1.ResourceRequirements{Requests: rr, Limits: rl},
			SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(false), RunAsUser: ptr.To[int64](0),
				AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"CHOWN"}}},
		}}
	}
	ps.Containers = []corev1.Container{c}
	return &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ExtensionName, Namespace: o.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			// One job runner at a time: the old pod goes before the new comes.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: ps},
		},
	}, nil
}

// Images lists every container image the manifests use.
func Images(objs []*unstructured.Unstructured) []string {
	seen := map[string]bool{}
	for _, u := range objs {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		ics, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "initContainers")
		for _, c := range append(cs, ics...) {
			if m, ok := c.(map[string]any); ok {
				if img, ok := m["image"].(string); ok {
					seen[img] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for img := range seen {
		out = append(out, img)
	}
	sort.Strings(out)
	return out
}

// YAML renders objects as one multi-document YAML stream.
func YAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b strings.Builder
	for _, u := range objs {
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return []byte(b.String()), nil
}

var gvrs = map[string]schema.GroupVersionResource{
	"Namespace":                {Version: "v1", Resource: "namespaces"},
	"ServiceAccount":           {Version: "v1", Resource: "serviceaccounts"},
	"Secret":                   {Version: "v1", Resource: "secrets"},
	"ClusterRole":              {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding":       {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"CustomResourceDefinition": {Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
	"Deployment":               {Group: "apps", Version: "v1", Resource: "deployments"},
	"StorageLocation":          v1alpha1.GroupVersion.WithResource("storagelocations"),
	"PersistentVolumeClaim":    {Version: "v1", Resource: "persistentvolumeclaims"},
}

// Apply server-side applies objs in order (field manager "arca", forcing
// ownership), waiting for CRDs to be established before the objects after
// them.
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var crds []string
	for _, u := range objs {
		gvr, ok := gvrs[u.GetKind()]
		if !ok {
			return fmt.Errorf("apply: unknown kind %s", u.GetKind())
		}
		if u.GetKind() != "CustomResourceDefinition" && len(crds) > 0 {
			if err := waitEstablished(ctx, dyn, crds); err != nil {
				return err
			}
			crds = nil
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if ns := u.GetNamespace(); ns != "" {
			ri = dyn.Resource(gvr).Namespace(ns)
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", u.GetKind(), qualified(u), err)
		}
		if u.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, u.GetName())
		}
	}
	if len(crds) > 0 {
		return waitEstablished(ctx, dyn, crds)
	}
	return nil
}

func qualified(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}

func waitEstablished(ctx context.Context, dyn dynamic.Interface, names []string) error {
	gvr := gvrs["CustomResourceDefinition"]
	deadline := time.Now().Add(time.Minute)
	for _, n := range names {
		for {
			u, err := dyn.Resource(gvr).Get(ctx, n, metav1.GetOptions{})
			if err == nil {
				c := &apiextensionsv1.CustomResourceDefinition{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, c); err != nil {
					return err
				}
				if crdEstablished(c) {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not established after a minute", n)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func crdEstablished(c *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// InstallCRDs applies only the CRDs (tests, and `arca extension run` against
// a cluster without an installation).
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	objs, err := Manifests(InstallOptions{})
	if err != nil {
		return err
	}
	var crds []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, u)
		}
	}
	return Apply(ctx, cfg, crds)
}

// Health is what `arca extension show` reports.
type Health struct {
	Namespace string `json:"namespace"`
	Installed bool   `json:"installed"`
	Version   string `json:"version,omitempty"`
	Image     string `json:"image,omitempty"`
	// Deployment is "available", "unavailable (reason)" or "absent".
	Deployment string `json:"deployment"`
	// Leader is the holder of the extension's Lease (in-cluster pod or an
	// out-of-cluster `arca extension run`); Heartbeat its last renewal.
	Leader    string     `json:"leader,omitempty"`
	Heartbeat *time.Time `json:"heartbeat,omitempty"`
	// Healthy: the deployment is available or a runner renewed its lease
	// within the last minute.
	Healthy bool `json:"healthy"`
	// Pods are the Deployment's pods: where they run, whether they are
	// Ready, how often the extension container restarted and why it last
	// ended (OOMKilled: raise --memory-limit).
	Pods             []PodHealth             `json:"pods,omitempty"`
	StorageLocations []StorageLocationHealth `json:"storageLocations"`
	CRDs             []string                `json:"crds"`
}

// PodHealth is one extension pod.
type PodHealth struct {
	Name     string `json:"name"`
	Node     string `json:"node,omitempty"`
	Phase    string `json:"phase"`
	Ready    bool   `json:"ready"`
	Restarts int32  `json:"restarts"`
	// LastTermination is the reason the previous container ended
	// (OOMKilled, Error, …), with its exit code.
	LastTermination string `json:"lastTermination,omitempty"`
}

// StorageLocationHealth is one storage location's probe result.
type StorageLocationHealth struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	Phase    string `json:"phase"`
	Message  string `json:"message,omitempty"`
}

// Show reports the installation in ns.
func Show(ctx context.Context, cfg *rest.Config, ns string, now time.Time) (*Health, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	h := &Health{Namespace: ns, Deployment: "absent", StorageLocations: []StorageLocationHealth{}, CRDs: []string{}}
	for _, c := range mustCRDNames() {
		if _, err := dyn.Resource(gvrs["CustomResourceDefinition"]).Get(ctx, c, metav1.GetOptions{}); err == nil {
			h.CRDs = append(h.CRDs, c)
		}
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, v1alpha1.ExtensionName, metav1.GetOptions{})
	switch {
	case err == nil:
		h.Installed = true
		h.Version = d.Labels[labelVersion]
		if len(d.Spec.Template.Spec.Containers) > 0 {
			h.Image = d.Spec.Template.Spec.Containers[0].Image
		}
		h.Deployment = "unavailable"
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable {
				if c.Status == corev1.ConditionTrue {
					h.Deployment = "available"
				} else {
					h.Deployment = "unavailable (" + c.Reason + ")"
				}
			}
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read deployment: %w", err)
	}
	if h.Installed {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelName + "=" + v1alpha1.ExtensionName})
		if err != nil {
			return nil, fmt.Errorf("list extension pods: %w", err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			ph := PodHealth{Name: p.Name, Node: p.Spec.NodeName, Phase: string(p.Status.Phase), Ready: podReady(p)}
			for _, c := range p.Status.ContainerStatuses {
				if c.Name != ContainerName {
					continue
				}
				ph.Restarts = c.RestartCount
				if t := c.LastTerminationState.Terminated; t != nil {
					ph.LastTermination = fmt.Sprintf("%s (exit %d)", t.Reason, t.ExitCode)
				}
			}
			h.Pods = append(h.Pods, ph)
		}
	}
	var lease *coordinationv1.Lease
	lease, err = cs.CoordinationV1().Leases(ns).Get(ctx, v1alpha1.ExtensionName, metav1.GetOptions{})
	if err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" && lease.Spec.RenewTime != nil {
		h.Leader = *lease.Spec.HolderIdentity
		t := lease.Spec.RenewTime.Time
		h.Heartbeat = &t
	}
	h.Healthy = h.Deployment == "available" || (h.Heartbeat != nil && now.Sub(*h.Heartbeat) < time.Minute)
	if len(h.CRDs) > 0 {
		l, err := dyn.Resource(gvrs["StorageLocation"]).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("list storage locations: %w", err)
		}
		if err == nil {
			for _, u := range l.Items {
				sl := &v1alpha1.StorageLocation{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, sl); err != nil {
					return nil, err
				}
				h.StorageLocations = append(h.StorageLocations, StorageLocationHealth{Name: sl.Name, URL: sl.Spec.URL, ReadOnly: sl.Spec.ReadOnly,
					Phase: string(sl.Status.Phase), Message: sl.Status.Message})
			}
		}
	}
	return h, nil
}

func mustCRDNames() []string {
	cs, err := crd.CRDs()
	if err != nil {
		panic(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// Uninstall deletes what Install applied: the Deployment, RBAC, service
// account, storage locations, Secrets labelled as Arca's, the namespace
// and, unless keepCRDs, the CRDs (which deletes every job and hook).
func Uninstall(ctx context.Context, cfg *rest.Config, ns string, keepCRDs bool) ([]string, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	del := func(kind, namespace, name string) {
		ri := dynamic.ResourceInterface(dyn.Resource(gvrs[kind]))
		if namespace != "" {
			ri = dyn.Resource(gvrs[kind]).Namespace(namespace)
		}
		err := ri.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
		switch {
		case err == nil:
			deleted = append(deleted, kind+" "+strings.TrimPrefix(namespace+"/"+name, "/"))
		case apierrors.IsNotFound(err):
		default:
			errs = append(errs, fmt.Errorf("delete %s %s: %w", kind, name, err))
		}
	}
	del("Deployment", ns, v1alpha1.ExtensionName)
	del("ClusterRoleBinding", "", v1alpha1.ExtensionName)
	del("ClusterRole", "", v1alpha1.ExtensionName)
	del("ServiceAccount", ns, v1alpha1.ExtensionName)
	if l, err := dyn.Resource(gvrs["StorageLocation"]).Namespace(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, u := range l.Items {
			del("StorageLocation", ns, u.GetName())
		}
	}
	if l, err := dyn.Resource(gvrs["Secret"]).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelManagedBy + "=" + FieldManager}); err == nil {
		for _, u := range l.Items {
			del("Secret", ns, u.GetName())
		}
	}
	if !keepCRDs {
		for _, c := range mustCRDNames() {
			del("CustomResourceDefinition", "", c)
		}
	}
	del("Namespace", "", ns)
	return deleted, errors.Join(errs...)
}

// CheckStorageRetry refuses a negative InstallOptions.StorageRetry.
func CheckStorageRetry(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("--storage-retry %s: want a positive duration such as 30s, or 0 for the default (10 attempts over about 3m)", d)
	}
	return nil
}

// The arguments of `arca extension run` that install options set.
const (
	storageRetryArg = "--storage-retry="
	maxJobsArg      = "--max-concurrent-jobs="
)

// readRunArgs sets the options the Deployment's `arca extension run`
// arguments carry: those install wrote up to --max-concurrent-jobs, and
// every argument after it as ExtraArgs (an installation made before an
// option had its own flag keeps it there, unchanged).
func readRunArgs(args []string, o *InstallOptions) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, storageRetryArg); ok {
			if d, err := time.ParseDuration(v); err == nil {
				o.StorageRetry = d
			}
			continue
		}
		var n int
		if _, err := fmt.Sscanf(a, maxJobsArg+"%d", &n); err == nil {
			o.MaxConcurrentJobs = n
			o.ExtraArgs = append([]string(nil), args[i+1:]...)
			return
		}
	}
}

// CurrentOptions reconstructs the options of the installation in ns from
// its Deployment and "default" StorageLocation, so that `update` changes
// only what it is told to.
func CurrentOptions(ctx context.Context, cfg *rest.Config, ns string) (InstallOptions, error) {
	o := InstallOptions{Namespace: ns}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return o, err
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, v1alpha1.ExtensionName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return o, fmt.Errorf("the extension is not installed in namespace %s (no deployment %s)", ns, v1alpha1.ExtensionName)
		}
		return o, err
	}
	o.Version = d.Labels[labelVersion]
	ps := d.Spec.Template.Spec
	o.NodeSelector = ps.NodeSelector
	o.Tolerations = ps.Tolerations
	for _, s := range ps.ImagePullSecrets {
		o.ImagePullSecrets = append(o.ImagePullSecrets, s.Name)
	}
	for _, v := range ps.Volumes {
		if v.Name != storageVolume {
			continue
		}
		if v.PersistentVolumeClaim != nil {
			o.StorageClaim = v.PersistentVolumeClaim.ClaimName
		}
		if v.HostPath != nil {
			o.StorageHostPath = v.HostPath.Path
		}
	}
	if len(ps.Containers) > 0 {
		c := ps.Containers[0]
		o.Image = c.Image
		q := func(l corev1.ResourceList, n corev1.ResourceName) string {
			if v, ok := l[n]; ok {
				return v.String()
			}
			return ""
		}
		o.CPURequest, o.MemoryRequest = q(c.Resources.Requests, corev1.ResourceCPU), q(c.Resources.Requests, corev1.ResourceMemory)
		o.CPULimit, o.MemoryLimit = q(c.Resources.Limits, corev1.ResourceCPU), q(c.Resources.Limits, corev1.ResourceMemory)
		readRunArgs(c.Args, &o)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return o, err
	}
	u, err := dyn.Resource(gvrs["StorageLocation"]).Namespace(ns).Get(ctx, DefaultStorageLocation, metav1.GetOptions{})
	if err == nil {
		sl := &v1alpha1.StorageLocation{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, sl); err != nil {
			return o, err
		}
		o.StorageURL, o.StorageSecret, o.ReadOnly = sl.Spec.URL, sl.Spec.CredentialsSecret, sl.Spec.ReadOnly
	} else if !apierrors.IsNotFound(err) {
		return o, err
	}
	return o, nil
}

// CheckCRDs reports, in a sentence a person can act on, CRDs the cluster
// does not serve.
func CheckCRDs(cfg *rest.Config) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	rl, err := dc.ServerResourcesForGroupVersion(v1alpha1.GroupVersion.String())
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("discover %s: %w", v1alpha1.GroupVersion, err)
	}
	served := map[string]bool{}
	if rl != nil {
		for _, r := range rl.APIResources {
			served[r.Name] = true
		}
	}
	var missing []string
	for _, r := range []string{"backupjobs", "restorejobs", "backuphooks", "restorehooks", "storagelocations"} {
		if !served[r] {
			missing = append(missing, r+"."+v1alpha1.GroupName)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the cluster does not serve %s: run `arca extension install`, or `arca extension run --install-crds`", strings.Join(missing, ", "))
	}
	return nil
}

// CRDCount is how many CustomResourceDefinitions an installed extension has.
func CRDCount() int { return len(crd.Files()) }

package prereq

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/selection"
)

// Names shared with the extension and trusted access.
const (
	HeartbeatFresh = time.Minute
)

// MinKubernetesVersion is the oldest supported cluster.
var MinKubernetesVersion = [3]int{1, 21, 1}

var (
	volumeSnapshotClasses = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}
	crdGVR                = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	storageLocationsGVR   = schema.GroupVersionResource{Group: v1alpha1.GroupName, Version: "v1alpha1", Resource: "storagelocations"}
)

// Cluster is a cluster to check, reached with Config (the caller's
// kubeconfig, or the vault's trusted-access identity).
type Cluster struct {
	Name   string
	Config *rest.Config
	// VersionOverride replaces the version the API server reports (tests
	// simulate an old cluster with it), e.g. "v1.20.4".
	VersionOverride string
	// AsVault says Config is the vault's trusted-access identity, not a
	// person's kubeconfig: the caller-is-cluster-owner check is skipped.
	AsVault bool
}

type clients struct {
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

func newClients(c Cluster) (*clients, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	return &clients{cs: cs, dyn: dyn}, nil
}

// parseVersion reads "v1.37.2", "v1.21.1-eks-abc" or "1.22+" forms.
func parseVersion(s string) ([3]int, error) {
	var v [3]int
	core := strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(core, "-+"); i >= 0 {
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) < 2 {
		return v, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH", s)
	}
	for i := 0; i < 3 && i < len(parts); i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return v, fmt.Errorf("version %q: %w", s, err)
		}
		v[i] = n
	}
	return v, nil
}

func versionLess(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func (k *clients) checkVersion(r *Report, c Cluster) {
	ch := r.add(Check{ID: "KubernetesVersion", Name: fmt.Sprintf("Kubernetes ≥ %d.%d.%d on %s", MinKubernetesVersion[0], MinKubernetesVersion[1], MinKubernetesVersion[2], c.Name)})
	got := c.VersionOverride
	if got == "" {
		info, err := k.cs.Discovery().ServerVersion()
		if err != nil {
			ch.Result, ch.Code, ch.Message = Failed, "ClusterUnreachable", fmt.Sprintf("cannot read the API server's version: %v", err)
			ch.Remedy = "check the kubeconfig (server URL, credentials) and that the API server is up"
			return
		}
		got = info.GitVersion
	}
	v, err := parseVersion(got)
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "KubernetesVersionUnknown", err.Error()
		ch.Remedy = "the API server reports a version Arca cannot read; check /version"
		return
	}
	if versionLess(v, MinKubernetesVersion) {
		ch.Result, ch.Code = Failed, "KubernetesVersionUnsupported"
		ch.Message = fmt.Sprintf("cluster %s runs Kubernetes %s", c.Name, got)
		ch.Remedy = "upgrade the cluster to Kubernetes 1.21.1 or later (CSI snapshots v1 and the APIs Arca uses need it)"
		return
	}
	ch.Result, ch.Message = Passed, "Kubernetes "+got
}

// servedResources returns the resources of group/version the API server
// serves, or nil when it serves none.
func (k *clients) servedResources(gv string) (map[string]bool, error) {
	l, err := k.cs.Discovery().ServerResourcesForGroupVersion(gv)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, r := range l.APIResources {
		out[r.Name] = true
	}
	return out, nil
}

func (k *clients) checkSnapshotCRDs(r *Report) bool {
	ch := r.add(Check{ID: "SnapshotCRDs", Name: "snapshot CRDs snapshot.storage.k8s.io/v1"})
	served, err := k.servedResources("snapshot.storage.k8s.io/v1")
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "DiscoveryFailed", err.Error()
		return false
	}
	var missing []string
	for _, res := range []string{"volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"} {
		if !served[res] {
			missing = append(missing, res+".snapshot.storage.k8s.io")
		}
	}
	if len(missing) > 0 {
		ch.Result, ch.Code = Failed, "SnapshotCRDsMissing"
		ch.Message = "not served at v1: " + strings.Join(missing, ", ")
		ch.Remedy = "install the external-snapshotter v8 CRDs and snapshot-controller: kubectl apply -k 'github.com/kubernetes-csi/external-snapshotter/client/config/crd?ref=v8.2.0' and -k '…/deploy/kubernetes/snapshot-controller?ref=v8.2.0'"
		return false
	}
	ch.Result, ch.Message = Passed, "VolumeSnapshot, VolumeSnapshotContent and VolumeSnapshotClass served at v1"
	return true
}

type snapshotClass struct {
	Name, Driver, DeletionPolicy string
	Default                      bool
}

func (k *clients) snapshotClasses(ctx context.Context) ([]snapshotClass, error) {
	l, err := k.dyn.Resource(volumeSnapshotClasses).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []snapshotClass
	for _, it := range l.Items {
		d, _, _ := unstructured.NestedString(it.Object, "driver")
		p, _, _ := unstructured.NestedString(it.Object, "deletionPolicy")
		out = append(out, snapshotClass{Name: it.GetName(), Driver: d, DeletionPolicy: p,
			Default: it.GetAnnotations()["snapshot.storage.kubernetes.io/is-default-class"] == "true"})
	}
	return out, nil
}

// checkVolumes: every CSI driver used by PVCs in scope has a
// VolumeSnapshotClass; in-tree volumes are listed as not protectable.
func (k *clients) checkVolumes(ctx context.Context, r *Report, cfg *v1alpha1.BackupConfiguration, crdsOK bool) {
	// Both added before taking pointers: add may move the slice.
	r.add(Check{ID: "SnapshotClassPerDriver", Name: "a VolumeSnapshotClass for every CSI driver of PVCs in scope"})
	r.add(Check{ID: "InTreeVolumes", Name: "volumes in scope are CSI volumes"})
	ch, tree := &r.Checks[len(r.Checks)-2], &r.Checks[len(r.Checks)-1]
	if !cfg.Snapshots() {
		ch.Result, ch.Message = Skipped, "snapshotVolumes is false: volumes are not snapshotted"
		tree.Result, tree.Message = Skipped, ch.Message
		return
	}
	nss, err := selection.NewNamespaces(cfg.IncludedNamespaces, cfg.ExcludedNamespaces, true)
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "InvalidBackupConfiguration", err.Error()
		tree.Result, tree.Message = Skipped, "invalid backup configuration"
		return
	}
	pvcs, err := k.cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "ClusterReadFailed", fmt.Sprintf("list PVCs: %v", err)
		ch.Remedy = "the validating identity needs list on persistentvolumeclaims (trusted access grants it)"
		tree.Result, tree.Message = Skipped, "PVCs unreadable"
		return
	}
	drivers := map[string][]string{} // driver → PVCs
	var inTree []string
	for _, pvc := range pvcs.Items {
		if !nss.Includes(pvc.Namespace) {
			continue
		}
		id := pvc.Namespace + "/" + pvc.Name
		driver := ""
		if pvc.Spec.VolumeName != "" {
			pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
			if err == nil {
				if pv.Spec.CSI == nil {
					inTree = append(inTree, fmt.Sprintf("%s (PV %s)", id, pv.Name))
					continue
				}
				driver = pv.Spec.CSI.Driver
			}
		}
		if driver == "" && pvc.Spec.StorageClassName != nil && *pvc.Spec.StorageClassName != "" {
			if sc, err := k.cs.StorageV1().StorageClasses().Get(ctx, *pvc.Spec.StorageClassName, metav1.GetOptions{}); err == nil {
				driver = sc.Provisioner
			}
		}
		if driver != "" {
			drivers[driver] = append(drivers[driver], id)
		}
	}
	if len(inTree) > 0 {
		sort.Strings(inTree)
		tree.Result, tree.Code = Warning, "InTreeVolumesNotProtectable"
		tree.Message = "not CSI volumes, their data is not protected: " + strings.Join(inTree, ", ")
		tree.Remedy = "migrate these volumes to a CSI driver (CSI migration, or a CSI StorageClass) to protect their data; their objects are still backed up"
	} else {
		tree.Result, tree.Message = Passed, "no in-tree volumes in scope"
	}
	if len(drivers) == 0 {
		ch.Result, ch.Message = Passed, "no CSI volumes in scope"
		return
	}
	if !crdsOK {
		ch.Result, ch.Message = Skipped, "snapshot CRDs missing (see above)"
		return
	}
	classes, err := k.snapshotClasses(ctx)
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "ClusterReadFailed", fmt.Sprintf("list VolumeSnapshotClasses: %v", err)
		return
	}
	var missing, found []string
	for d, claims := range drivers {
		if slices.ContainsFunc(classes, func(c snapshotClass) bool { return c.Driver == d }) {
			found = append(found, d)
		} else {
			sort.Strings(claims)
			missing = append(missing, fmt.Sprintf("%s (used by %s)", d, strings.Join(claims, ", ")))
		}
	}
	sort.Strings(missing)
	sort.Strings(found)
	if len(missing) > 0 {
		ch.Result, ch.Code = Failed, "SnapshotClassMissing"
		ch.Message = "no VolumeSnapshotClass for CSI driver " + strings.Join(missing, "; ")
		ch.Remedy = "create a VolumeSnapshotClass for each driver with deletionPolicy: Retain (apiVersion snapshot.storage.k8s.io/v1, kind VolumeSnapshotClass, driver: <driver>)"
		return
	}
	ch.Result, ch.Message = Passed, "snapshot classes exist for "+strings.Join(found, ", ")
}

// checkSnapshotLocation: the instance's VolumeSnapshotClass exists and
// retains snapshot contents independently of namespaces.
func (k *clients) checkSnapshotLocation(ctx context.Context, r *Report, name string, crdsOK bool) {
	ch := r.add(Check{ID: "SnapshotLocation", Name: "snapshot location (VolumeSnapshotClass) with deletionPolicy Retain"})
	if name == "" {
		ch.Result, ch.Message = Skipped, "the instance names no snapshot location; the driver's class is used"
		return
	}
	if !crdsOK {
		ch.Result, ch.Message = Skipped, "snapshot CRDs missing (see above)"
		return
	}
	u, err := k.dyn.Resource(volumeSnapshotClasses).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ch.Result, ch.Code = Failed, "SnapshotLocationNotFound"
		ch.Message = fmt.Sprintf("VolumeSnapshotClass %q does not exist", name)
		ch.Remedy = fmt.Sprintf("create VolumeSnapshotClass %s with the volumes' CSI driver and deletionPolicy: Retain, or point the instance at an existing class (arca instance update --snapshot-location)", name)
		return
	}
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "ClusterReadFailed", err.Error()
		return
	}
	if p, _, _ := unstructured.NestedString(u.Object, "deletionPolicy"); p != "Retain" {
		ch.Result, ch.Code = Failed, "SnapshotDeletionPolicyNotRetain"
		ch.Message = fmt.Sprintf("VolumeSnapshotClass %q has deletionPolicy %s: deleting a namespace would delete its snapshots", name, p)
		ch.Remedy = fmt.Sprintf("use a class with deletionPolicy: Retain (deletionPolicy is immutable: create a new class, e.g. %s-retain, and arca instance update --snapshot-location)", name)
		return
	}
	ch.Result, ch.Message = Passed, fmt.Sprintf("VolumeSnapshotClass %s, deletionPolicy Retain", name)
}

// LabelVersion is the extension Deployment's label holding its version
// (set by arca extension install).
const LabelVersion = "app.kubernetes.io/version"

// MinExtensionVersion is the oldest extension this CLI and vault drive:
// the first release, the first with BackupJob spec.forgetRecoveryPoints
// (vault retention). Raise it when the vault starts relying on a newer
// extension. A version that is not semantic (dev builds) is not compared,
// nor is an out-of-cluster run (no Deployment). Pre-release suffixes are
// ignored: 0.1.0-rc.1 counts as 0.1.0.
var MinExtensionVersion = "0.1.0"

// olderThan reports whether version v is older than min; false when either
// is not MAJOR.MINOR.PATCH (with an optional v prefix and -suffix).
func olderThan(v, min string) bool {
	a, ok1 := semver(v)
	b, ok2 := semver(min)
	if !ok1 || !ok2 {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func semver(s string) ([3]int, bool) {
	var out [3]int
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

// checkExtension: the extension's CRDs, namespace, its version (the
// Deployment's label) and either an available deployment or a fresh
// heartbeat (out-of-cluster run).
func (k *clients) checkExtension(ctx context.Context, r *Report, cluster string, now time.Time) {
	ch := r.add(Check{ID: "ExtensionHealthy", Name: "extension installed and healthy on " + cluster})
	remedyInstall := fmt.Sprintf("install it: arca extension install --kubeconfig <%s kubeconfig> --storage <url>", cluster)
	served, err := k.servedResources(v1alpha1.GroupName + "/v1alpha1")
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "DiscoveryFailed", err.Error()
		return
	}
	var missing []string
	for _, res := range []string{"backupjobs", "restorejobs", "storagelocations"} {
		if !served[res] {
			missing = append(missing, res+"."+v1alpha1.GroupName)
		}
	}
	if len(missing) > 0 {
		ch.Result, ch.Code = Failed, "ExtensionNotInstalled"
		ch.Message = "CRDs not served: " + strings.Join(missing, ", ")
		ch.Remedy = remedyInstall
		return
	}
	if _, err := k.cs.CoreV1().Namespaces().Get(ctx, v1alpha1.ExtensionNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		ch.Result, ch.Code, ch.Message, ch.Remedy = Failed, "ExtensionNotInstalled", "namespace "+v1alpha1.ExtensionNamespace+" does not exist", remedyInstall
		return
	}
	deploy := "absent"
	d, err := k.cs.AppsV1().Deployments(v1alpha1.ExtensionNamespace).Get(ctx, v1alpha1.ExtensionName, metav1.GetOptions{})
	switch {
	case err == nil:
		deploy = "unavailable"
		for _, c := range d.Status.Conditions {
			if c.Type == "Available" && c.Status == "True" {
				deploy = "available"
			}
		}
	case apierrors.IsForbidden(err):
		deploy = "unreadable"
	}
	if d != nil && err == nil {
		if v := d.Labels[LabelVersion]; olderThan(v, MinExtensionVersion) {
			ch.Result, ch.Code = Failed, "ExtensionTooOld"
			ch.Message = fmt.Sprintf("extension version %s is older than %s, the oldest this CLI and vault work with", v, MinExtensionVersion)
			ch.Remedy = fmt.Sprintf("upgrade it: arca extension install --kubeconfig <%s kubeconfig> (with this version of arca)", cluster)
			return
		}
	}
	heartbeat := ""
	fresh := false
	if l, err := k.cs.CoordinationV1().Leases(v1alpha1.ExtensionNamespace).Get(ctx, v1alpha1.ExtensionName, metav1.GetOptions{}); err == nil && l.Spec.RenewTime != nil {
		age := now.Sub(l.Spec.RenewTime.Time)
		fresh = age < HeartbeatFresh
		heartbeat = fmt.Sprintf("heartbeat %s ago", age.Round(time.Second))
	}
	switch {
	case deploy == "available":
		ch.Result, ch.Message = Passed, "deployment "+v1alpha1.ExtensionNamespace+"/"+v1alpha1.ExtensionName+" available"
	case fresh:
		ch.Result, ch.Message = Passed, "running ("+heartbeat+")"
	case deploy == "absent" && heartbeat == "":
		ch.Result, ch.Code = Failed, "ExtensionNotInstalled"
		ch.Message = "no deployment " + v1alpha1.ExtensionNamespace + "/" + v1alpha1.ExtensionName + " and no heartbeat"
		ch.Remedy = remedyInstall + " (or run it: arca extension run --kubeconfig …)"
	default:
		ch.Result, ch.Code = Failed, "ExtensionUnhealthy"
		ch.Message = "deployment " + deploy
		if heartbeat != "" {
			ch.Message += ", " + heartbeat
		}
		ch.Remedy = fmt.Sprintf("look at the extension: arca extension show --kubeconfig <%s kubeconfig>; its pods' logs in %s", cluster, v1alpha1.ExtensionNamespace)
	}
}

// checkVelero: Velero's API groups or deployment would fight Arca over
// snapshots and restores (DetectVelero).
func (k *clients) checkVelero(ctx context.Context, r *Report) {
	ch := r.add(Check{ID: "NoVelero", Name: "no Velero installation"})
	v, err := detectVelero(ctx, k.cs)
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "DiscoveryFailed", err.Error()
		return
	}
	if v.Installed() {
		ch.Result, ch.Code = Failed, "VeleroInstalled"
		ch.Message = "found " + strings.Join(v.Found, ", ")
		ch.Remedy = "uninstall Velero (velero uninstall, or delete its namespace and the velero.io CRDs): two backup systems on one cluster fight over snapshots and restores"
		return
	}
	ch.Result, ch.Message = Passed, "no velero.io API group"
	if v.DeploymentsUnchecked == "" {
		ch.Message += " and no velero deployment"
	}
}

// checkStorageLocationCR: the extension knows the instance's storage
// location and its own probe finds it usable.
func (k *clients) checkStorageLocationCR(ctx context.Context, r *Report, url string, needWrite bool) {
	ch := r.add(Check{ID: "ExtensionStorageLocation", Name: "storage location registered with the extension and reachable by it"})
	l, err := k.dyn.Resource(storageLocationsGVR).Namespace(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		ch.Result, ch.Message = Skipped, fmt.Sprintf("cannot list StorageLocations: %v", err)
		return
	}
	for _, it := range l.Items {
		if u, _, _ := unstructured.NestedString(it.Object, "spec", "url"); u != url {
			continue
		}
		ro, _, _ := unstructured.NestedBool(it.Object, "spec", "readOnly")
		phase, _, _ := unstructured.NestedString(it.Object, "status", "phase")
		msg, _, _ := unstructured.NestedString(it.Object, "status", "message")
		switch {
		case ro && needWrite:
			ch.Result, ch.Code = Failed, "StorageLocationReadOnly"
			ch.Message = fmt.Sprintf("StorageLocation %s/%s is read-only", v1alpha1.ExtensionNamespace, it.GetName())
			ch.Remedy = "backups need a writable location: set spec.readOnly: false, or use another storage location"
		case phase == string(v1alpha1.StorageUnavailable):
			ch.Result, ch.Code = Failed, "StorageLocationUnavailable"
			ch.Message = fmt.Sprintf("the extension's probe of StorageLocation %s fails: %s", it.GetName(), msg)
			ch.Remedy = "fix the credentials Secret named in spec.credentialsSecret or the storage's network access for the extension"
		default:
			ch.Result, ch.Message = Passed, fmt.Sprintf("StorageLocation %s/%s (%s)", v1alpha1.ExtensionNamespace, it.GetName(), orDash(phase))
		}
		return
	}
	ch.Result, ch.Code = Failed, "StorageLocationNotRegistered"
	ch.Message = fmt.Sprintf("no StorageLocation in %s has url %s", v1alpha1.ExtensionNamespace, url)
	ch.Remedy = fmt.Sprintf("register it with the extension: arca extension install --storage %s (or create a StorageLocation in %s)", url, v1alpha1.ExtensionNamespace)
}

func orDash(s string) string {
	if s == "" {
		return "not probed yet"
	}
	return s
}

// checkIdentityAlive tells whether the vault's identity ns/sa still exists
// and is still bound to the operator role. It reports a failure on ch and
// returns true when it is not. The cluster owner can read the objects; the
// vault's own identity cannot (it may not read service accounts or role
// bindings), so it asks the API server about itself instead: who it is
// (SelfSubjectReview) and whether it may still create BackupJobs
// (SelfSubjectAccessReview). A denied read is never taken for a pass.
func (k *clients) checkIdentityAlive(ctx context.Context, ch *Check, ns, sa string) bool {
	fail := func(code, msg string) bool {
		ch.Result, ch.Code, ch.Message = Failed, code, msg
		return true
	}
	_, err := k.cs.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fail("TrustedAccessRevoked", fmt.Sprintf("service account %s/%s no longer exists in the cluster", ns, sa))
	case apierrors.IsUnauthorized(err):
		return fail("TrustedAccessRevoked", fmt.Sprintf("the cluster no longer accepts the token of %s/%s: the service account was removed or its token expired", ns, sa))
	case err == nil:
		rb, err := k.cs.RbacV1().RoleBindings(ns).Get(ctx, sa+"-operator", metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && rb.RoleRef.Name != v1alpha1.BackupOperatorRole) {
			return fail("TrustedAccessRevoked", fmt.Sprintf("role binding %s/%s-operator to %s is missing", ns, sa, v1alpha1.BackupOperatorRole))
		}
		if err != nil {
			return fail("ClusterReadFailed", fmt.Sprintf("reading role binding %s/%s-operator: %v", ns, sa, err))
		}
		return false
	case !apierrors.IsForbidden(err):
		return fail("ClusterReadFailed", fmt.Sprintf("reading service account %s/%s: %v", ns, sa, err))
	}
	// Forbidden: the caller is not the owner. If it is the identity itself,
	// its token works (so the service account exists); check its binding by
	// what the binding grants.
	who, rerr := k.cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	want := "system:serviceaccount:" + ns + ":" + sa
	if rerr != nil || who.Status.UserInfo.Username != want {
		user := "unknown"
		if rerr == nil {
			user = who.Status.UserInfo.Username
		}
		return fail("ClusterReadFailed", fmt.Sprintf("%s may not read service account %s/%s (%v), so trusted access cannot be checked", user, ns, sa, err))
	}
	rev, rerr := k.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: "create", Group: v1alpha1.GroupVersion.Group, Resource: "backupjobs"}}}, metav1.CreateOptions{})
	switch {
	case rerr != nil:
		return fail("ClusterReadFailed", fmt.Sprintf("asking whether %s may create backupjobs: %v", want, rerr))
	case !rev.Status.Allowed:
		return fail("TrustedAccessRevoked", fmt.Sprintf("%s may no longer create BackupJobs in %s: its binding to %s is missing", want, ns, v1alpha1.BackupOperatorRole))
	}
	return false
}

// checkCallerClusterOwner: the person validating is the cluster's owner
// (cluster-admin), who can install the extension and enable trusted access.
func (k *clients) checkCallerClusterOwner(ctx context.Context, r *Report, cluster string) {
	ch := r.add(Check{ID: "CallerClusterOwner", Name: "you are Owner (cluster-admin) of " + cluster})
	rev, err := k.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"}}}, metav1.CreateOptions{})
	switch {
	case err != nil:
		ch.Result, ch.Code, ch.Message = Failed, "ClusterReadFailed", err.Error()
	case !rev.Status.Allowed:
		ch.Result, ch.Code = Warning, "CallerNotClusterOwner"
		ch.Message = "the kubeconfig's user is not cluster-admin"
		ch.Remedy = "the cluster's owner must install the extension and enable trusted access; with a cluster-admin kubeconfig you can do it yourself"
	default:
		ch.Result, ch.Message = Passed, "cluster-admin"
	}
}

// checkTrustedAccess: the vault holds a live registration and the
// identity exists in the cluster.
func (k *clients) checkTrustedAccess(ctx context.Context, r *Report, conns Connections, cluster string, now time.Time) {
	ch := r.add(Check{ID: "TrustedAccess", Name: "trusted access enabled for the vault on " + cluster})
	remedy := fmt.Sprintf("the cluster's owner runs: arca trusted-access enable --kubeconfig <%s kubeconfig> --vault <vault> --cluster-name %s", cluster, cluster)
	if conns == nil {
		ch.Result, ch.Message = Skipped, "no vault to ask"
		return
	}
	c, err := conns.Connection(ctx, cluster)
	if err != nil {
		ch.Result, ch.Code, ch.Message = Failed, "VaultReadFailed", err.Error()
		return
	}
	if c == nil {
		ch.Result, ch.Code, ch.Message, ch.Remedy = Failed, "TrustedAccessNotEnabled", "the vault has no registration for cluster "+cluster, remedy
		return
	}
	if c.State == "TrustedAccessExpired" {
		ch.Result, ch.Code, ch.Message, ch.Remedy = Failed, "TrustedAccessTokenExpired", "the vault reports "+c.State+": "+c.Message, remedy+" (issues a fresh token)"
		return
	}
	if c.State != "Connected" {
		ch.Result, ch.Code, ch.Message, ch.Remedy = Failed, "TrustedAccessRevoked", "the vault reports "+c.State+": "+c.Message, remedy
		return
	}
	if c.TokenExpiresAt != nil && time.Unix(*c.TokenExpiresAt, 0).Before(now) {
		ch.Result, ch.Code = Failed, "TrustedAccessTokenExpired"
		ch.Message = "the vault's token expired at " + time.Unix(*c.TokenExpiresAt, 0).UTC().Format(time.RFC3339) + " and could not be renewed"
		ch.Remedy = remedy + " (issues a fresh token)"
		return
	}
	if failed := k.checkIdentityAlive(ctx, ch, c.Namespace, c.ServiceAccount); failed {
		ch.Remedy = remedy
		return
	}
	ch.Result, ch.Message = Passed, fmt.Sprintf("%s/%s, vault reports %s", c.Namespace, c.ServiceAccount, c.State)
	if c.TokenExpiresAt != nil {
		ch.Message += ", token valid until " + time.Unix(*c.TokenExpiresAt, 0).UTC().Format(time.RFC3339)
	}
}

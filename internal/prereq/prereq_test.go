package prereq_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/config/crd"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/prereq"
	"github.com/arca-backup/arca/internal/prereq/vaultaccess"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

var (
	ctx   = context.Background()
	cp    *testenv.ControlPlane
	csi   *testenv.CSI
	kc    kubernetes.Interface
	dyn   dynamic.Interface
	apix  apiextclient.Interface
	vault *client.Client // admin of the test vault
	vsrv  *server.Server
	// mkUser returns a client of the test vault for a new principal.
	mkUser func(principal string) *client.Client
)

var (
	storageLocationsGVR = schema.GroupVersionResource{Group: "arca.io", Version: "v1alpha1", Resource: "storagelocations"}
	snapClassGVR        = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}
)

func TestMain(m *testing.M) {
	t, cleanup := testenv.NewMainT("prereq")
	code := func() int {
		cp = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
		csi = testenv.StartCSI(t, cp)
		kc = kubernetes.NewForConfigOrDie(cp.Config())
		dyn = dynamic.NewForConfigOrDie(cp.Config())
		apix = apiextclient.NewForConfigOrDie(cp.Config())
		startVault(t)
		return m.Run()
	}()
	cleanup()
	os.Exit(code)
}

func startVault(t testenv.T) {
	dir, err := os.MkdirTemp("", "prereq-vault-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := sqlite.Open(ctx, filepath.Join(dir, "vault.db"), nil)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { st.Close() })
	srv, _ := server.New(st, server.Options{Log: slog.New(slog.DiscardHandler), Clusters: clusterdriver.NewTrustedAccess})
	vsrv = srv
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	tok, _, err := server.CreateAdminToken(ctx, st, "admin", "admin")
	if err != nil {
		t.Fatalf("%v", err)
	}
	vault = &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}
	mkUser = func(p string) *client.Client {
		tok, _, err := server.CreateToken(ctx, st, p, p, nil)
		if err != nil {
			panic(err)
		}
		return &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ignoreExists(t *testing.T, err error) {
	t.Helper()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// env is a fully prepared environment: extension (CRDs, namespace,
// heartbeat, storage location), trusted access, the trust model's role
// assignments, a repository directory and a CSI volume in scope.
type env struct {
	repoDir, url string
	in           prereq.BackupInput
	grant        *trustedaccess.Grant
}

// mkServiceAccountConfig creates ns/name and returns a config that
// authenticates as it, with no role bound.
func mkServiceAccountConfig(t *testing.T, ns, name string) *rest.Config {
	t.Helper()
	_, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	ignoreExists(t, err)
	tr, err := kc.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	must(t, err)
	cfg := rest.AnonymousClientConfig(cp.Config())
	cfg.BearerToken = tr.Status.Token
	return cfg
}

const (
	vaultName = "v"
	cluster   = "c1"
)

func prepare(t *testing.T) *env {
	t.Helper()
	crds, err := crd.CRDs()
	must(t, err)
	for _, c := range crds {
		_, err := apix.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, c, metav1.CreateOptions{})
		ignoreExists(t, err)
	}
	waitServed(t, "arca.io/v1alpha1", "storagelocations")
	// The extension's heartbeat, as `arca extension run` renews it.
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "arca-system"}}, metav1.CreateOptions{})
	ignoreExists(t, err)
	renewLease(t, time.Now())

	e := &env{repoDir: t.TempDir()}
	e.url = "file://" + e.repoDir
	sl := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "arca.io/v1alpha1", "kind": "StorageLocation",
		"metadata": map[string]any{"name": "default"}, "spec": map[string]any{"url": e.url, "credentialsSecret": "arca-storage"}}}
	_ = dyn.Resource(storageLocationsGVR).Namespace("arca-system").Delete(ctx, "default", metav1.DeleteOptions{})
	_, err = dyn.Resource(storageLocationsGVR).Namespace("arca-system").Create(ctx, sl, metav1.CreateOptions{})
	must(t, err)

	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: vaultName, Cluster: cluster})
	must(t, err)
	e.grant = g
	_, err = vault.RegisterCluster(ctx, service.ClusterRegistration{Name: cluster, Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
		ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt})
	must(t, err)
	if _, err := vault.GetVault(ctx, vaultName); err != nil {
		_, err = vault.CreateVault(ctx, vaultName, "")
		must(t, err)
	}

	// A CSI volume in scope.
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	ignoreExists(t, err)
	_, err = kc.CoreV1().PersistentVolumeClaims("shop").Create(ctx, pvc("data", csi.StorageClass, ""), metav1.CreateOptions{})
	ignoreExists(t, err)

	acc := vaultaccess.API(vault)
	e.in = prereq.BackupInput{
		Vault: vaultName, Instance: "shop", Cluster: prereq.Cluster{Name: cluster, Config: cp.Config()},
		Config:          v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"shop"}},
		StorageLocation: e.url, SnapshotLocation: csi.SnapshotClass,
		OpenStorage: func(ctx context.Context, url string) (storage.Backend, error) {
			return location.Open(ctx, url, location.Credentials{})
		},
		Access: acc, Connections: acc,
	}
	for _, a := range trustModel(e) {
		if _, err := vault.AssignRole(ctx, a[0], a[1], a[2]); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
			t.Fatal(err)
		}
	}
	return e
}

// trustModel lists principal, role, scope of the setup assignments.
func trustModel(e *env) [][3]string {
	snap := vaultaccess.ScopePath(prereq.Scope{Kind: prereq.SnapshotLocationScope, Name: csi.SnapshotClass})
	return [][3]string{
		{"vault:" + vaultName, "Reader", "/clusters/" + cluster},
		{"vault:" + vaultName, "Reader", snap},
		{"cluster:" + cluster, "Contributor", snap},
		{"extension:" + cluster, "Storage Contributor", vaultaccess.ScopePath(prereq.Scope{Kind: prereq.StorageLocationScope, Name: e.url})},
	}
}

func renewLease(t *testing.T, at time.Time) {
	t.Helper()
	holder := "test-extension"
	rt := metav1.NewMicroTime(at)
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "arca-extension", Namespace: "arca-system"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &rt}}
	cur, err := kc.CoordinationV1().Leases("arca-system").Get(ctx, "arca-extension", metav1.GetOptions{})
	if err == nil {
		cur.Spec = l.Spec
		_, err = kc.CoordinationV1().Leases("arca-system").Update(ctx, cur, metav1.UpdateOptions{})
	} else {
		_, err = kc.CoordinationV1().Leases("arca-system").Create(ctx, l, metav1.CreateOptions{})
	}
	must(t, err)
}

func pvc(name, class, volume string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeName: volume,
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}}}}
}

func waitServed(t *testing.T, gv, res string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l, err := kc.Discovery().ServerResourcesForGroupVersion(gv)
		if err == nil {
			for _, r := range l.APIResources {
				if r.Name == res {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s %s not served", gv, res)
}

func waitGone(t *testing.T, gv, res string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l, err := kc.Discovery().ServerResourcesForGroupVersion(gv)
		found := false
		if err == nil {
			for _, r := range l.APIResources {
				found = found || r.Name == res
			}
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s %s still served", gv, res)
}

// expect asserts a check's result and code, and that a failure has a remedy.
func expect(t *testing.T, r *prereq.Report, id string, result prereq.Result, code string) *prereq.Check {
	t.Helper()
	c := r.Find(id)
	if c == nil {
		t.Fatalf("no check %s in the report", id)
	}
	if c.Result != result || c.Code != code {
		t.Fatalf("check %s: %s %s (%s; remedy %q), want %s %s", id, c.Result, c.Code, c.Message, c.Remedy, result, code)
	}
	if (result == prereq.Failed || result == prereq.Warning) && c.Remedy == "" {
		t.Fatalf("check %s fails without a remedy: %s", id, c.Message)
	}
	return c
}

func dump(t *testing.T, r *prereq.Report) {
	t.Helper()
	var b strings.Builder
	_ = r.WriteTable(&b)
	t.Log("\n" + b.String())
}

// TestPreparedEnvironmentPasses: everything in place, every check passes.
func TestPreparedEnvironmentPasses(t *testing.T) {
	e := prepare(t)
	r := prereq.ValidateBackup(ctx, e.in)
	dump(t, r)
	for _, c := range r.Checks {
		if c.Result != prereq.Passed {
			t.Errorf("%s: %s %s: %s", c.ID, c.Result, c.Code, c.Message)
		}
	}
	if !r.Passed || len(r.Checks) < 18 {
		t.Fatalf("passed=%v with %d checks", r.Passed, len(r.Checks))
	}
}

func TestKubernetesVersion(t *testing.T) {
	e := prepare(t)
	e.in.Cluster.VersionOverride = "v1.20.4"
	r := prereq.ValidateBackup(ctx, e.in)
	c := expect(t, r, "KubernetesVersion", prereq.Failed, "KubernetesVersionUnsupported")
	if !strings.Contains(c.Message, "1.20.4") || !strings.Contains(c.Remedy, "1.21.1") || r.Passed {
		t.Fatalf("%+v", c)
	}
	e.in.Cluster.VersionOverride = "v1.21.1-eks-1"
	expect(t, prereq.ValidateBackup(ctx, e.in), "KubernetesVersion", prereq.Passed, "")
	// A version string Arca cannot read fails the check, naming it.
	e.in.Cluster.VersionOverride = "release-candidate"
	r = prereq.ValidateBackup(ctx, e.in)
	c = expect(t, r, "KubernetesVersion", prereq.Failed, "KubernetesVersionUnknown")
	if !strings.Contains(c.Message, "release-candidate") || !strings.Contains(c.Remedy, "/version") || r.Passed {
		t.Fatalf("%+v", c)
	}
}

// TestCallerNotClusterOwner: validation run with a kubeconfig that is not
// cluster-admin warns that the owner must install and enable.
func TestCallerNotClusterOwner(t *testing.T) {
	e := prepare(t)
	expect(t, prereq.ValidateBackup(ctx, e.in), "CallerClusterOwner", prereq.Passed, "")
	e.in.Cluster.Config = mkServiceAccountConfig(t, "default", "not-owner")
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "CallerClusterOwner", prereq.Warning, "CallerNotClusterOwner")
	if !strings.Contains(c.Message, "not cluster-admin") || !strings.Contains(c.Remedy, "owner must install the extension") {
		t.Fatalf("%+v", c)
	}
}

// TestTrustedAccessTokenExpired: a registration whose token has expired
// fails with its own code, told apart from revocation.
func TestTrustedAccessTokenExpired(t *testing.T) {
	e := prepare(t)
	e.in.Now = func() time.Time { return e.grant.TokenExpiresAt.Add(time.Minute) }
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "TrustedAccess", prereq.Failed, "TrustedAccessTokenExpired")
	if !strings.Contains(c.Message, "expired at "+e.grant.TokenExpiresAt.UTC().Format(time.RFC3339)) || !strings.Contains(c.Remedy, "arca trusted-access enable") {
		t.Fatalf("%+v", c)
	}
}

func TestVolumesInScope(t *testing.T) {
	e := prepare(t)
	// PVCs keep their protection finalizer without kube-controller-manager,
	// so these live in a namespace of their own.
	_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vols"}}, metav1.CreateOptions{})
	ignoreExists(t, err)
	e.in.Config.IncludedNamespaces = []string{"shop", "vols"}
	// A StorageClass of a CSI driver that has no VolumeSnapshotClass.
	_, err = kc.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Provisioner: "other.csi.example.com"}, metav1.CreateOptions{})
	ignoreExists(t, err)
	_, err = kc.CoreV1().PersistentVolumeClaims("vols").Create(ctx, pvc("other", "other", ""), metav1.CreateOptions{})
	must(t, err)
	// An in-tree (hostPath) volume bound to a PVC in scope.
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "intree-pv"}, Spec: corev1.PersistentVolumeSpec{
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")},
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/x"}}}}
	_, err = kc.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	must(t, err)
	_, err = kc.CoreV1().PersistentVolumeClaims("vols").Create(ctx, pvc("legacy", "", "intree-pv"), metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = kc.CoreV1().PersistentVolumeClaims("vols").Delete(ctx, "other", metav1.DeleteOptions{})
		_ = kc.CoreV1().PersistentVolumeClaims("vols").Delete(ctx, "legacy", metav1.DeleteOptions{})
		_ = kc.CoreV1().PersistentVolumes().Delete(ctx, "intree-pv", metav1.DeleteOptions{})
	})
	r := prereq.ValidateBackup(ctx, e.in)
	c := expect(t, r, "SnapshotClassPerDriver", prereq.Failed, "SnapshotClassMissing")
	if !strings.Contains(c.Message, "other.csi.example.com (used by vols/other)") || strings.Contains(c.Message, csi.DriverName) {
		t.Fatalf("message: %s", c.Message)
	}
	c = expect(t, r, "InTreeVolumes", prereq.Warning, "InTreeVolumesNotProtectable")
	if !strings.Contains(c.Message, "vols/legacy (PV intree-pv)") {
		t.Fatalf("message: %s", c.Message)
	}
	// Out of scope: the same volumes do not matter for another namespace.
	e.in.Config.IncludedNamespaces = []string{"shop"}
	r = prereq.ValidateBackup(ctx, e.in)
	expect(t, r, "SnapshotClassPerDriver", prereq.Passed, "")
	expect(t, r, "InTreeVolumes", prereq.Passed, "")
}

func TestSnapshotLocation(t *testing.T) {
	e := prepare(t)
	e.in.SnapshotLocation = csi.SnapshotClassDelete
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "SnapshotLocation", prereq.Failed, "SnapshotDeletionPolicyNotRetain")
	if !strings.Contains(c.Remedy, "Retain") {
		t.Fatal(c.Remedy)
	}
	// A class that exists, then is deleted for real.
	cls := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
		"metadata": map[string]any{"name": "temp-retain"}, "driver": csi.DriverName, "deletionPolicy": "Retain"}}
	_, err := dyn.Resource(snapClassGVR).Create(ctx, cls, metav1.CreateOptions{})
	must(t, err)
	e.in.SnapshotLocation = "temp-retain"
	expect(t, prereq.ValidateBackup(ctx, e.in), "SnapshotLocation", prereq.Passed, "")
	must(t, dyn.Resource(snapClassGVR).Delete(ctx, "temp-retain", metav1.DeleteOptions{}))
	expect(t, prereq.ValidateBackup(ctx, e.in), "SnapshotLocation", prereq.Failed, "SnapshotLocationNotFound")
}

func TestExtensionHealth(t *testing.T) {
	e := prepare(t)
	renewLease(t, time.Now().Add(-5*time.Minute))
	expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionHealthy", prereq.Failed, "ExtensionUnhealthy")
	must(t, kc.CoordinationV1().Leases("arca-system").Delete(ctx, "arca-extension", metav1.DeleteOptions{}))
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionHealthy", prereq.Failed, "ExtensionNotInstalled")
	if !strings.Contains(c.Remedy, "arca extension install") {
		t.Fatal(c.Remedy)
	}
	// An in-cluster deployment that is not available (no kubelet runs it).
	labels := map[string]string{"app": "arca-extension"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "arca-extension", Namespace: "arca-system"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "arca"}}}}}}
	_, err := kc.AppsV1().Deployments("arca-system").Create(ctx, d, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = kc.AppsV1().Deployments("arca-system").Delete(ctx, "arca-extension", metav1.DeleteOptions{})
	})
	expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionHealthy", prereq.Failed, "ExtensionUnhealthy")
	// Available: the status a running deployment reports.
	cur, err := kc.AppsV1().Deployments("arca-system").Get(ctx, "arca-extension", metav1.GetOptions{})
	must(t, err)
	cur.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}
	_, err = kc.AppsV1().Deployments("arca-system").UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	must(t, err)
	expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionHealthy", prereq.Passed, "")
	// Its version label: older than the minimum fails with a remedy; the
	// minimum, newer, and non-semantic versions (dev builds) pass.
	for _, c := range []struct {
		version string
		ok      bool
	}{{"v0.0.9", false}, {"0.0.1-rc.1", false}, {prereq.MinExtensionVersion, true}, {"v1.0.0", true}, {"dev", true}} {
		cur, err := kc.AppsV1().Deployments("arca-system").Get(ctx, "arca-extension", metav1.GetOptions{})
		must(t, err)
		cur.Labels = map[string]string{prereq.LabelVersion: c.version}
		_, err = kc.AppsV1().Deployments("arca-system").Update(ctx, cur, metav1.UpdateOptions{})
		must(t, err)
		if c.ok {
			expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionHealthy", prereq.Passed, "")
			continue
		}
		ch := expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionHealthy", prereq.Failed, "ExtensionTooOld")
		if !strings.Contains(ch.Message, c.version) || !strings.Contains(ch.Remedy, "arca extension install") {
			t.Errorf("version %s: %s / %s", c.version, ch.Message, ch.Remedy)
		}
	}
}

func TestTrustedAccessCheck(t *testing.T) {
	e := prepare(t)
	_, err := trustedaccess.Disable(ctx, cp.Config(), vaultName)
	must(t, err)
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "TrustedAccess", prereq.Failed, "TrustedAccessRevoked")
	if !strings.Contains(c.Remedy, "arca trusted-access enable") {
		t.Fatal(c.Remedy)
	}
	must(t, vault.DeleteCluster(ctx, cluster))
	expect(t, prereq.ValidateBackup(ctx, e.in), "TrustedAccess", prereq.Failed, "TrustedAccessNotEnabled")
	prepare(t) // re-enables and registers
	expect(t, prereq.ValidateBackup(ctx, e.in), "TrustedAccess", prereq.Passed, "")
}

// TestTrustedAccessCheckAsVault runs the check with the vault's own
// identity, which may not read service accounts or role bindings. A denied
// read must not pass: the check asks the API server about the identity
// itself, and fails once its binding or its service account is gone.
func TestTrustedAccessCheckAsVault(t *testing.T) {
	e := prepare(t)
	g := e.grant
	asVault := e.in
	asVault.Cluster = prereq.Cluster{Name: cluster, AsVault: true, Config: &rest.Config{Host: g.Server, BearerToken: g.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: g.CAData}}}
	expect(t, prereq.ValidateBackup(ctx, asVault), "TrustedAccess", prereq.Passed, "")

	must(t, kc.RbacV1().RoleBindings(g.Namespace).Delete(ctx, g.ServiceAccount+"-operator", metav1.DeleteOptions{}))
	c := expect(t, prereq.ValidateBackup(ctx, asVault), "TrustedAccess", prereq.Failed, "TrustedAccessRevoked")
	if !strings.Contains(c.Message, "may no longer create BackupJobs") || !strings.Contains(c.Remedy, "arca trusted-access enable") {
		t.Fatalf("%s / %s", c.Message, c.Remedy)
	}
	_, err := trustedaccess.Disable(ctx, cp.Config(), vaultName)
	must(t, err)
	// The API server notices the deleted service account through its cache:
	// the token is refused within moments.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c = expect(t, prereq.ValidateBackup(ctx, asVault), "TrustedAccess", prereq.Failed, "TrustedAccessRevoked")
		if strings.Contains(c.Message, "no longer accepts the token") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token of a deleted service account: %s", c.Message)
		}
	}
	// Someone who is neither the owner nor the identity cannot check it.
	stranger := mkServiceAccountConfig(t, "default", "stranger")
	other := e.in
	other.Cluster = prereq.Cluster{Name: cluster, AsVault: true, Config: stranger}
	prepare(t)
	c = expect(t, prereq.ValidateBackup(ctx, other), "TrustedAccess", prereq.Failed, "ClusterReadFailed")
	if !strings.Contains(c.Message, "system:serviceaccount:default:stranger may not read service account") {
		t.Fatal(c.Message)
	}
}

func TestVelero(t *testing.T) {
	e := prepare(t)
	veleroCRD := &apiextensionsv1.CustomResourceDefinition{}
	must(t, yaml.Unmarshal([]byte(`
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: backups.velero.io}
spec:
  group: velero.io
  scope: Namespaced
  names: {kind: Backup, plural: backups, singular: backup, listKind: BackupList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`), veleroCRD))
	_, err := apix.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, veleroCRD, metav1.CreateOptions{})
	must(t, err)
	waitServed(t, "velero.io/v1", "backups")
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "NoVelero", prereq.Failed, "VeleroInstalled")
	if !strings.Contains(c.Message, "API group velero.io (backups.velero.io)") {
		t.Fatal(c.Message)
	}
	must(t, apix.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, "backups.velero.io", metav1.DeleteOptions{}))
	waitGone(t, "velero.io/v1", "backups")
	expect(t, prereq.ValidateBackup(ctx, e.in), "NoVelero", prereq.Passed, "")
	// A Velero deployment without its CRDs.
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "velero"}}, metav1.CreateOptions{})
	ignoreExists(t, err)
	labels := map[string]string{"component": "velero"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "velero", Namespace: "velero", Labels: labels}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "velero", Image: "velero/velero"}}}}}}
	_, err = kc.AppsV1().Deployments("velero").Create(ctx, d, metav1.CreateOptions{})
	must(t, err)
	c = expect(t, prereq.ValidateBackup(ctx, e.in), "NoVelero", prereq.Failed, "VeleroInstalled")
	if !strings.Contains(c.Message, "deployment velero/velero") {
		t.Fatal(c.Message)
	}
	must(t, kc.AppsV1().Deployments("velero").Delete(ctx, "velero", metav1.DeleteOptions{}))
	// Velero's Helm chart under another release name: found by its label.
	labels = map[string]string{"app.kubernetes.io/name": "velero"}
	d = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "backup-server", Namespace: "velero", Labels: labels}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "velero", Image: "velero/velero"}}}}}}
	_, err = kc.AppsV1().Deployments("velero").Create(ctx, d, metav1.CreateOptions{})
	must(t, err)
	v, err := prereq.DetectVelero(ctx, cp.Config())
	must(t, err)
	if !v.Installed() || len(v.Found) != 1 || v.Found[0] != "deployment velero/backup-server" || v.DeploymentsUnchecked != "" {
		t.Fatalf("DetectVelero: %+v", v)
	}
	must(t, kc.AppsV1().Deployments("velero").Delete(ctx, "backup-server", metav1.DeleteOptions{}))
	if v, err := prereq.DetectVelero(ctx, cp.Config()); err != nil || v.Installed() {
		t.Fatalf("DetectVelero after the deployment is gone: %+v %v", v, err)
	}
}

func TestStorage(t *testing.T) {
	e := prepare(t)
	expect(t, prereq.ValidateBackup(ctx, e.in), "StorageLocation", prereq.Passed, "")
	if entries, _ := os.ReadDir(filepath.Join(e.repoDir, "locks")); len(entries) != 0 {
		t.Fatalf("the probe left %d file(s) behind", len(entries))
	}
	// Read-only for real: the directories are made immutable (root ignores
	// permission bits, not the immutable attribute), or, on a filesystem
	// without that attribute, the directory is bind-mounted read-only.
	for _, d := range []string{"", "locks", "keys", "data", "index", "points"} {
		must(t, os.MkdirAll(filepath.Join(e.repoDir, d), 0o700))
	}
	undo := makeReadOnly(t, e.repoDir)
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "StorageLocation", prereq.Failed, "StorageNotWritable")
	if !strings.Contains(c.Message, "probe write") {
		t.Fatal(c.Message)
	}
	undo()
	expect(t, prereq.ValidateBackup(ctx, e.in), "StorageLocation", prereq.Passed, "")
	// Unreachable: the location is gone.
	must(t, os.RemoveAll(e.repoDir))
	expect(t, prereq.ValidateBackup(ctx, e.in), "StorageLocation", prereq.Failed, "StorageUnreachable")
}

// makeReadOnly makes dir unwritable even for root and returns the undo.
func makeReadOnly(t *testing.T, dir string) (undo func()) {
	t.Helper()
	out, err := exec.Command("chattr", "-R", "+i", dir).CombinedOutput()
	if err == nil {
		undo = func() { _ = exec.Command("chattr", "-R", "-i", dir).Run() }
		t.Cleanup(undo)
		return undo
	}
	if err2 := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err2 != nil {
		t.Fatalf("cannot make %s read-only: chattr +i: %v %s; bind mount: %v", dir, err, out, err2)
	}
	undo = func() { _ = unix.Unmount(dir, unix.MNT_DETACH) }
	t.Cleanup(undo)
	if err2 := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err2 != nil {
		t.Fatalf("cannot make %s read-only: chattr +i: %v %s; read-only remount: %v", dir, err, out, err2)
	}
	return undo
}

func setStorageLocation(t *testing.T, mutate func(u *unstructured.Unstructured), status map[string]any) {
	t.Helper()
	u, err := dyn.Resource(storageLocationsGVR).Namespace("arca-system").Get(ctx, "default", metav1.GetOptions{})
	must(t, err)
	if mutate != nil {
		mutate(u)
		u, err = dyn.Resource(storageLocationsGVR).Namespace("arca-system").Update(ctx, u, metav1.UpdateOptions{})
		must(t, err)
	}
	if status != nil {
		u.Object["status"] = status
		_, err = dyn.Resource(storageLocationsGVR).Namespace("arca-system").UpdateStatus(ctx, u, metav1.UpdateOptions{})
		must(t, err)
	}
}

func TestExtensionStorageLocation(t *testing.T) {
	e := prepare(t)
	setStorageLocation(t, nil, map[string]any{"phase": "Unavailable", "message": "403 AuthorizationFailure"})
	c := expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionStorageLocation", prereq.Failed, "StorageLocationUnavailable")
	if !strings.Contains(c.Message, "AuthorizationFailure") {
		t.Fatal(c.Message)
	}
	setStorageLocation(t, func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, true, "spec", "readOnly")
	},
		map[string]any{"phase": "Available"})
	expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionStorageLocation", prereq.Failed, "StorageLocationReadOnly")
	must(t, dyn.Resource(storageLocationsGVR).Namespace("arca-system").Delete(ctx, "default", metav1.DeleteOptions{}))
	expect(t, prereq.ValidateBackup(ctx, e.in), "ExtensionStorageLocation", prereq.Failed, "StorageLocationNotRegistered")
}

// TestRolesAndAssignMissing revokes two of the trust model's assignments
// for real; validation names them with the command that fixes each;
// --assign-missing-roles creates exactly those, as an Owner, and explains
// why it cannot as someone else.
func TestRolesAndAssignMissing(t *testing.T) {
	e := prepare(t)
	all, err := vault.ListRoleAssignments(ctx, "/", "")
	must(t, err)
	before := len(all)
	removed := map[string]bool{}
	for _, a := range all {
		if (a.Principal == "vault:"+vaultName && strings.HasPrefix(a.Scope, "/clusters/")) || (a.Principal == "extension:"+cluster && a.Scope == trustModel(e)[3][2]) {
			must(t, vault.RemoveRoleAssignment(ctx, a.ID))
			removed[a.Principal+" "+a.Role+" "+a.Scope] = true
		}
	}
	if len(removed) != 2 {
		t.Fatalf("removed %v", removed)
	}
	r := prereq.ValidateBackup(ctx, e.in)
	c := expect(t, r, "RoleVaultReaderOnCluster", prereq.Failed, "RoleAssignmentMissing")
	if !strings.Contains(c.Remedy, "arca role assign --principal vault:v --role \"Reader\" --scope '/clusters/c1'") {
		t.Fatal(c.Remedy)
	}
	expect(t, r, "RoleExtensionStorageContributor", prereq.Failed, "RoleAssignmentMissing")
	expect(t, r, "RoleVaultReaderOnSnapshotLocation", prereq.Passed, "")

	// Someone who may read but not grant: nothing is assigned, each is explained.
	readerC := mkUser("user:rita")
	_, err = vault.AssignRole(ctx, "user:rita", "Reader", "/")
	must(t, err)
	ra := vaultaccess.API(readerC)
	in := e.in
	in.Access, in.Connections = ra, ra
	r2 := prereq.ValidateBackup(ctx, in)
	res := prereq.AssignMissing(ctx, r2, ra)
	if len(res) != 2 || res[0].Done || res[1].Done || !strings.Contains(res[0].Reason, "not Owner") {
		t.Fatalf("as a Reader: %+v", res)
	}
	expect(t, r2, "CallerBackupContributor", prereq.Warning, "CallerRoleMissing")
	// What the vault enforces of the caller fails (it would refuse the
	// backup): Reader grants no repository write nor cluster backup.
	expect(t, r2, "CallerStorageContributor", prereq.Failed, "CallerRoleMissing")
	expect(t, r2, "CallerBackupOperatorOnCluster", prereq.Failed, "CallerRoleMissing")

	// The Owner fixes exactly what was missing.
	res = prereq.AssignMissing(ctx, r, e.in.Access)
	if len(res) != 2 || !res[0].Done || !res[1].Done {
		t.Fatalf("as Owner: %+v", res)
	}
	if !r.Passed {
		dump(t, r)
		t.Fatal("report still failing after assigning")
	}
	after, err := vault.ListRoleAssignments(ctx, "/", "")
	must(t, err)
	if len(after) != before+1 { // +1: rita's Reader
		t.Fatalf("assignments: %d before, %d after", before, len(after))
	}
	for _, a := range after {
		delete(removed, a.Principal+" "+a.Role+" "+a.Scope)
	}
	if len(removed) != 0 {
		t.Fatalf("not recreated: %v", removed)
	}
	if !prereq.ValidateBackup(ctx, e.in).Passed {
		t.Fatal("validation fails after --assign-missing-roles")
	}
}

func TestRestoreChecks(t *testing.T) {
	e := prepare(t)
	in := prereq.RestoreInput{Vault: vaultName, RecoveryPoint: "rp-1", Target: e.in.Cluster, StorageLocation: e.url,
		OpenStorage: e.in.OpenStorage, Access: e.in.Access, Connections: e.in.Connections,
		Content: &prereq.Content{Namespaces: []string{"shop"}, StorageClasses: []string{csi.StorageClass, "gold"},
			Resources: []prereq.GVR{{Group: "apps", Version: "v1", Resource: "deployments"}, {Group: "example.com", Version: "v1", Resource: "widgets"},
				{Group: "stable.example.com", Version: "v1", Resource: "crontabs"}},
			CRDs: []string{"crontabs.stable.example.com"}}}
	// No repository yet at the location: nothing to restore from.
	r := prereq.ValidateRestore(ctx, in)
	dump(t, r)
	expect(t, r, "StorageLocation", prereq.Failed, "RepositoryNotFound")
	expect(t, r, "RoleVaultReaderOnCluster", prereq.Passed, "")
	expect(t, r, "RoleExtensionStorageContributor", prereq.Passed, "")
	expect(t, r, "RoleClusterContributorOnSnapshotLocation", prereq.Skipped, "")
	expect(t, r, "NamespaceConflicts", prereq.Warning, "NamespaceExists")
	c := expect(t, r, "StorageClasses", prereq.Failed, "StorageClassMissing")
	if c.Message != "restored PVCs would name storage classes the target lacks: gold" {
		t.Fatal(c.Message)
	}
	// storageClassMappings decide the class a restored PVC asks for: a
	// mapping to a missing class fails naming both, a mapping to a present
	// class passes although the source class is still missing.
	in.Criteria.StorageClassMappings = map[string]string{"gold": "silver"}
	c = expect(t, prereq.ValidateRestore(ctx, in), "StorageClasses", prereq.Failed, "StorageClassMissing")
	if c.Message != "restored PVCs would name storage classes the target lacks: silver (mapped from gold)" || !strings.Contains(c.Remedy, "--storage-class-mapping") {
		t.Fatalf("%s / %s", c.Message, c.Remedy)
	}
	in.Criteria.StorageClassMappings = map[string]string{"gold": csi.StorageClass}
	expect(t, prereq.ValidateRestore(ctx, in), "StorageClasses", prereq.Passed, "")
	in.Criteria.StorageClassMappings = nil
	c = expect(t, r, "APIVersionsServed", prereq.Failed, "APIVersionNotServed")
	if c.Message != "the target does not serve: example.com/v1/widgets" {
		t.Fatalf("crontabs come with their CRD, widgets do not: %s", c.Message)
	}
	// Mapped to a new namespace, with the class created: those pass.
	in.Criteria.NamespaceMappings = map[string]string{"shop": "shop-restored"}
	_, err := kc.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "gold"}, Provisioner: csi.DriverName}, metav1.CreateOptions{})
	ignoreExists(t, err)
	r = prereq.ValidateRestore(ctx, in)
	expect(t, r, "NamespaceConflicts", prereq.Passed, "")
	expect(t, r, "StorageClasses", prereq.Passed, "")
	in.Content = nil
	expect(t, prereq.ValidateRestore(ctx, in), "APIVersionsServed", prereq.Skipped, "")
}

// TestSnapshotCRDsMissing removes a snapshot CRD for real; it runs last
// (by name order it is not guaranteed, so it restores the CRD).
func TestSnapshotCRDsMissing(t *testing.T) {
	e := prepare(t)
	name := "volumesnapshotclasses.snapshot.storage.k8s.io"
	saved, err := apix.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
	must(t, err)
	classes, err := dyn.Resource(snapClassGVR).List(ctx, metav1.ListOptions{})
	must(t, err)
	must(t, apix.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, name, metav1.DeleteOptions{}))
	waitGone(t, "snapshot.storage.k8s.io/v1", "volumesnapshotclasses")
	t.Cleanup(func() {
		saved.ResourceVersion, saved.UID = "", ""
		saved.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := apix.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, saved, metav1.CreateOptions{})
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitServed(t, "snapshot.storage.k8s.io/v1", "volumesnapshotclasses")
		for _, c := range classes.Items {
			c.SetResourceVersion("")
			c.SetUID("")
			_, _ = dyn.Resource(snapClassGVR).Create(ctx, &c, metav1.CreateOptions{})
		}
	})
	r := prereq.ValidateBackup(ctx, e.in)
	c := expect(t, r, "SnapshotCRDs", prereq.Failed, "SnapshotCRDsMissing")
	if !strings.Contains(c.Message, name) || !strings.Contains(c.Remedy, "external-snapshotter") {
		t.Fatalf("%s / %s", c.Message, c.Remedy)
	}
	expect(t, r, "SnapshotLocation", prereq.Skipped, "")
}

// TestVaultSideValidation: the vault validates with its own trusted-access
// identity (read-only, no Secrets), through the API and on instance
// creation.
func TestVaultSideValidation(t *testing.T) {
	e := prepare(t)
	if _, err := vault.CreatePolicy(ctx, vaultName, client.PolicyInput{Name: "daily", Schedule: "R/2026-01-01T02:00:00Z/PT24H",
		Retention: policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P7D"}}}); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		t.Fatal(err)
	}
	vsrv.ValidateOnCreate = true
	t.Cleanup(func() { vsrv.ValidateOnCreate = false })
	body := client.InstanceInput{Name: "lost", Cluster: "nowhere", Policy: "daily", StorageLocation: e.url}
	// The roles the vault enforces are in place: what refuses is the
	// prerequisite check of the cluster.
	for _, ra := range [][2]string{{"vault:v", "/clusters/nowhere"}, {"extension:nowhere", vaultaccess.ScopePath(prereq.Scope{Kind: prereq.StorageLocationScope, Name: e.url})}} {
		role := "Reader"
		if strings.HasPrefix(ra[0], "extension:") {
			role = "Storage Contributor"
		}
		_, err := vault.AssignRole(ctx, ra[0], role, ra[1])
		must(t, err)
	}
	var out map[string]any
	_, err := vault.Do(ctx, "POST", "/api/v1/vaults/v/instances", body, &out, "")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 422 || ce.Code != "ValidationFailed" {
		t.Fatalf("create for an unconnected cluster: %v", err)
	}
	if _, err := vault.Do(ctx, "POST", "/api/v1/vaults/v/instances?skipValidation=true", body, &out, ""); err != nil {
		t.Fatalf("skipValidation: %v", err)
	}
	body = client.InstanceInput{Name: "shop", Cluster: cluster, Policy: "daily", StorageLocation: e.url, SnapshotLocation: csi.SnapshotClass,
		Config: []byte(`{"includedNamespaces":["shop"]}`)}
	if _, err := vault.Do(ctx, "POST", "/api/v1/vaults/v/instances", body, &out, ""); err != nil {
		t.Fatalf("create in a prepared environment: %v", err)
	}
	var rep struct {
		Passed bool           `json:"passed"`
		Checks []prereq.Check `json:"checks"`
	}
	if _, err := vault.Do(ctx, "POST", "/api/v1/vaults/v/instances/shop/validate", nil, &rep, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if c.Result == prereq.Failed || c.Result == prereq.Warning {
			t.Errorf("vault-side %s: %s %s %s", c.ID, c.Result, c.Code, c.Message)
		}
		if c.ID == "CallerClusterOwner" {
			t.Errorf("the vault's identity is not a person: %+v", c)
		}
	}
	// Revoke the extension's storage role: the vault reports it and, with
	// assignMissingRoles, restores it.
	as, err := vault.ListRoleAssignments(ctx, "/", "extension:"+cluster)
	must(t, err)
	for _, a := range as {
		if a.Scope == trustModel(e)[3][2] {
			must(t, vault.RemoveRoleAssignment(ctx, a.ID))
		}
	}
	if _, err := vault.Do(ctx, "POST", "/api/v1/vaults/v/instances/shop/validate?assignMissingRoles=true", nil, &rep, ""); err != nil || !rep.Passed {
		t.Fatalf("assignMissingRoles through the API: %v %+v", err, rep)
	}
	// A Backup Reader may not validate.
	br := mkUser("user:bert")
	_, err = vault.AssignRole(ctx, "user:bert", "Backup Reader", "/vaults/v")
	must(t, err)
	if _, err := br.Do(ctx, "POST", "/api/v1/vaults/v/instances/shop/validate", nil, &rep, ""); !errors.As(err, &ce) || ce.Status != 403 || ce.Action != "instances/validate/action" {
		t.Fatalf("backup reader validating: %v", err)
	}
}

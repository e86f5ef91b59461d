package trustedaccess_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/config/crd"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

var (
	cp  *testenv.ControlPlane
	ctx = context.Background()
)

func TestMain(m *testing.M) {
	t, cleanup := testenv.NewMainT("trustedaccess")
	cp = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	installCRDs(t, cp.Config())
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func installCRDs(t testenv.T, cfg *rest.Config) {
	crds, err := crd.CRDs()
	if err != nil {
		t.Fatalf("crds: %v", err)
	}
	ac := apiextclient.NewForConfigOrDie(cfg)
	for _, c := range crds {
		if _, err := ac.ApiextensionsV1().CustomResourceDefinitions().Create(context.Background(), c, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create CRD %s: %v", c.Name, err)
		}
	}
	// Established before use.
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range crds {
		for {
			got, err := ac.ApiextensionsV1().CustomResourceDefinitions().Get(context.Background(), c.Name, metav1.GetOptions{})
			if err == nil && established(got.Status.Conditions) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established", c.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func established(cs []apiextensionsv1.CustomResourceDefinitionCondition) bool {
	for _, c := range cs {
		if c.Type == "Established" && c.Status == "True" {
			return true
		}
	}
	return false
}

var (
	backupJobs       = schema.GroupVersionResource{Group: "arca.io", Version: "v1alpha1", Resource: "backupjobs"}
	storageLocations = schema.GroupVersionResource{Group: "arca.io", Version: "v1alpha1", Resource: "storagelocations"}
)

func vaultConfig(g *trustedaccess.Grant) *rest.Config {
	return &rest.Config{Host: g.Server, BearerToken: g.Token, TLSClientConfig: rest.TLSClientConfig{CAData: g.CAData}}
}

// backupJob is a BackupJob labelled as vault's ("" for no label).
func backupJob(name, vault string) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if vault != "" {
		md["labels"] = map[string]any{v1alpha1.LabelVault: vault}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "arca.io/v1alpha1", "kind": "BackupJob",
		"metadata": md,
		"spec":     map[string]any{"storageLocation": "default"},
	}}
}

func TestEnableRequiresClusterAdmin(t *testing.T) {
	bob := cp.UserConfig(t, "bob", "developers")
	_, err := trustedaccess.Enable(ctx, bob, trustedaccess.EnableOptions{Vault: "v1", Cluster: "c1"})
	if !errors.Is(err, trustedaccess.ErrNotClusterAdmin) {
		t.Fatalf("enable as a non-admin: %v, want ErrNotClusterAdmin", err)
	}
	if _, err := trustedaccess.Disable(ctx, bob, "v1"); !errors.Is(err, trustedaccess.ErrNotClusterAdmin) {
		t.Fatalf("disable as a non-admin: %v", err)
	}
}

// TestVaultIdentityIsLeastPrivilege proves, against the real API server,
// what the vault's identity can and cannot do.
func TestVaultIdentityIsLeastPrivilege(t *testing.T) {
	admin := kubernetes.NewForConfigOrDie(cp.Config())
	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "lp", Cluster: "c1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if g.Token == "" || len(g.CAData) == 0 || !strings.HasPrefix(g.Server, "https://") {
		t.Fatalf("grant: server %q, CA %d bytes, token %d bytes", g.Server, len(g.CAData), len(g.Token))
	}
	if ttl := time.Until(g.TokenExpiresAt); ttl < 14*time.Minute || ttl > 16*time.Minute {
		t.Fatalf("token lifetime %v, want about 15m", ttl)
	}
	// Enabling again is harmless.
	if _, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "lp", Cluster: "c1"}); err != nil {
		t.Fatalf("second enable: %v", err)
	}
	for _, ns := range []string{"other", "default"} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	if _, err := admin.CoreV1().Secrets(v1alpha1.ExtensionNamespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "arca-storage"},
		StringData: map[string]string{"key": "s3cr3t"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	vcfg := vaultConfig(g)
	vc := kubernetes.NewForConfigOrDie(vcfg)
	vd := dynamic.NewForConfigOrDie(vcfg)
	denied := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", what, err)
		}
	}
	allowed := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}

	// Allowed: its jobs in arca-system, and reading what validation needs.
	_, err = vd.Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace).Create(ctx, backupJob("from-vault", "lp"), metav1.CreateOptions{})
	allowed("create BackupJob in arca-system", err)
	_, err = vd.Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace).Get(ctx, "from-vault", metav1.GetOptions{})
	allowed("get BackupJob", err)
	_, err = vd.Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace).Patch(ctx, "from-vault", "application/merge-patch+json", []byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{})
	allowed("patch BackupJob (cancel)", err)
	_, err = vd.Resource(storageLocations).Namespace(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{})
	allowed("list StorageLocations", err)
	_, err = vc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	allowed("list namespaces", err)
	_, err = vc.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	allowed("list PVCs", err)
	_, err = vc.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	allowed("list storage classes", err)
	_, err = vc.Discovery().ServerVersion()
	allowed("discovery /version", err)
	_, err = vc.AppsV1().Deployments(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{})
	allowed("list deployments in arca-system", err)

	// Denied: Secrets anywhere, Pods, other namespaces, writes outside its jobs.
	_, err = vc.CoreV1().Secrets(v1alpha1.ExtensionNamespace).Get(ctx, "arca-storage", metav1.GetOptions{})
	denied("get Secret in arca-system", err)
	_, err = vc.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	denied("list Secrets cluster-wide", err)
	_, err = vc.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	denied("list ConfigMaps", err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	_, err = vc.CoreV1().Pods(v1alpha1.ExtensionNamespace).Create(ctx, pod, metav1.CreateOptions{})
	denied("create Pod in arca-system", err)
	_, err = vc.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	denied("create Pod in default", err)
	_, err = vd.Resource(backupJobs).Namespace("other").Create(ctx, backupJob("elsewhere", "lp"), metav1.CreateOptions{})
	denied("create BackupJob in another namespace", err)
	_, err = vd.Resource(backupJobs).Namespace("").List(ctx, metav1.ListOptions{})
	denied("list BackupJobs cluster-wide", err)
	_, err = vc.CoreV1().ConfigMaps("other").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	denied("create ConfigMap in another namespace", err)
	err = vc.CoreV1().Namespaces().Delete(ctx, "other", metav1.DeleteOptions{})
	denied("delete a namespace", err)
	_, err = vd.Resource(storageLocations).Namespace(v1alpha1.ExtensionNamespace).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "arca.io/v1alpha1", "kind": "StorageLocation", "metadata": map[string]any{"name": "evil"},
		"spec": map[string]any{"url": "file:///tmp/x", "credentialsSecret": "arca-storage"}}}, metav1.CreateOptions{})
	denied("create a StorageLocation", err)
	_, err = vc.RbacV1().RoleBindings(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{})
	denied("read its own bindings", err)

	// Tokens: it renews its own, and cannot mint one for anyone else.
	secs := int64(600)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}
	_, err = vc.CoreV1().ServiceAccounts(v1alpha1.ExtensionNamespace).CreateToken(ctx, g.ServiceAccount, tr, metav1.CreateOptions{})
	allowed("token for its own service account", err)
	if _, err := admin.CoreV1().ServiceAccounts(v1alpha1.ExtensionNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "arca-extension"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	_, err = vc.CoreV1().ServiceAccounts(v1alpha1.ExtensionNamespace).CreateToken(ctx, "arca-extension", tr, metav1.CreateOptions{})
	denied("token for the extension's service account", err)
	c := &store.Cluster{Name: "c1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace, ServiceAccount: g.ServiceAccount, Token: g.Token}
	tok, exp, err := clusterdriver.Renew(ctx, c, 20*time.Minute)
	if err != nil || tok == "" || tok == g.Token || time.Until(exp) < 19*time.Minute {
		t.Fatalf("renew: %v (expiry %v)", err, exp)
	}

	// What the cluster shows.
	bs, err := trustedaccess.List(ctx, cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	var mine *trustedaccess.Binding
	for i := range bs {
		if bs[i].Vault == "lp" {
			mine = &bs[i]
		}
	}
	if mine == nil || len(mine.Bindings) != 3 || !strings.Contains(strings.Join(mine.Bindings, "\n"), "ClusterRole arca-backup-operator") {
		t.Fatalf("list: %+v", bs)
	}
}

// TestDisableFailsVaultJobs runs the vault's job runner over trusted
// access: a backup starts a BackupJob in the cluster; after disable, the
// next backup and the running one fail with TrustedAccessRevoked, and the
// renewer marks the cluster revoked.
func TestDisableFailsVaultJobs(t *testing.T) {
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, _ := server.New(st, server.Options{Log: slog.New(slog.DiscardHandler), Clusters: clusterdriver.NewTrustedAccess})
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	tok, _, err := server.CreateAdminToken(ctx, st, "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	vc := &client.Client{BaseURL: ts.URL, Token: tok, HTTP: ts.Client()}

	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "prod", Cluster: "prod-1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vc.RegisterCluster(ctx, service.ClusterRegistration{Name: "prod-1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
		ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt}); err != nil {
		t.Fatal(err)
	}
	got, err := vc.GetCluster(ctx, "prod-1")
	if err != nil || got.State != store.ClusterConnected || got.Token != "" {
		t.Fatalf("registered cluster (token must not be returned): %+v %v", got, err)
	}
	ad := dynamic.NewForConfigOrDie(cp.Config())
	url := "file:///srv/arca/prod"
	if _, err := ad.Resource(storageLocations).Namespace(v1alpha1.ExtensionNamespace).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "arca.io/v1alpha1", "kind": "StorageLocation", "metadata": map[string]any{"name": "prod-repo"},
		"spec": map[string]any{"url": url, "credentialsSecret": "arca-storage"}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := vc.CreateVault(ctx, "prod", ""); err != nil {
		t.Fatal(err)
	}
	// What the vault enforces of its identities (service.BackupRequirements).
	for _, ra := range [][3]string{{"vault:prod", "Reader", "/clusters/prod-1"}, {"extension:prod-1", "Storage Contributor", rbac.StorageScope(url)}} {
		if _, err := vc.AssignRole(ctx, ra[0], ra[1], ra[2]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := vc.CreatePolicy(ctx, "prod", client.PolicyInput{Name: "daily", Schedule: "R/2026-01-01T02:00:00Z/PT24H",
		Retention: policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P7D"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.CreateInstance(ctx, "prod", client.InstanceInput{Name: "shop", Cluster: "prod-1", Policy: "daily", StorageLocation: url,
		Config: []byte(`{"includedNamespaces":["shop"]}`)}); err != nil {
		t.Fatal(err)
	}

	// A job queued while the vault held Reader on the cluster, which an
	// Owner then removes: the runner re-checks and refuses it before it
	// reaches the cluster, so no BackupJob is created there.
	j0, err := vc.BackupNow(ctx, "prod", "shop", "")
	if err != nil {
		t.Fatal(err)
	}
	held, err := vc.ListRoleAssignments(ctx, "/clusters/prod-1", "vault:prod")
	if err != nil || len(held) != 1 {
		t.Fatalf("vault:prod on /clusters/prod-1: %v %v", held, err)
	}
	if err := vc.RemoveRoleAssignment(ctx, held[0].ID); err != nil {
		t.Fatal(err)
	}
	before, err := ad.Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if j, err := vc.GetJob(ctx, "prod", j0.ID); err != nil || j.State != store.JobFailed || len(j.Errors) == 0 ||
		j.Errors[0].Code != "RoleAssignmentMissing" || !strings.Contains(j.Errors[0].Message, "vault:prod may not clusters/read at /clusters/prod-1") ||
		!strings.Contains(j.Errors[0].Message, "arca role assign --principal vault:prod --role \"Reader\"") || j.ExternalRef != "" {
		t.Fatalf("job after the vault lost Reader on the cluster: %+v %v", j, err)
	}
	if l, err := ad.Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != len(before.Items) {
		t.Fatalf("a refused job reached the cluster: %d BackupJobs, %d before (%v)", len(l.Items), len(before.Items), err)
	}
	if _, err := vc.AssignRole(ctx, "vault:prod", "Reader", "/clusters/prod-1"); err != nil {
		t.Fatal(err)
	}

	j1, err := vc.BackupNow(ctx, "prod", "shop", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	j1, err = vc.GetJob(ctx, "prod", j1.ID)
	if err != nil || j1.State != store.JobInProgress || !strings.HasPrefix(j1.ExternalRef, "backupjob/") {
		t.Fatalf("job after start: %+v %v", j1, err)
	}
	bj, err := ad.Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace).Get(ctx, strings.TrimPrefix(j1.ExternalRef, "backupjob/"), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the vault's BackupJob is not in the cluster: %v", err)
	}
	if sl, _, _ := unstructured.NestedString(bj.Object, "spec", "storageLocation"); sl != "prod-repo" {
		t.Fatalf("BackupJob storage location %q, want prod-repo", sl)
	}
	if ns, _, _ := unstructured.NestedStringSlice(bj.Object, "spec", "includedNamespaces"); fmt.Sprint(ns) != "[shop]" {
		t.Fatalf("BackupJob namespaces %v", ns)
	}

	if v := bj.GetLabels()[v1alpha1.LabelVault]; v != "prod" {
		t.Fatalf("BackupJob label %s=%q, want prod (its identity's vault)", v1alpha1.LabelVault, v)
	}

	gone, err := trustedaccess.Disable(ctx, cp.Config(), "prod")
	if err != nil || len(gone) != 6 {
		t.Fatalf("disable: %v %v", gone, err)
	}
	j2, err := vc.BackupNow(ctx, "prod", "shop", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{j1.ID, j2.ID} {
		j, err := vc.GetJob(ctx, "prod", id)
		if err != nil || j.State != store.JobFailed || len(j.Errors) == 0 || j.Errors[0].Code != clusterdriver.CodeRevoked {
			t.Fatalf("job %s after disable: %+v %v", id, j, err)
		}
		if !strings.Contains(j.Errors[0].Message, "arca trusted-access enable") {
			t.Fatalf("revocation message lacks the remedy: %s", j.Errors[0].Message)
		}
	}
	got, _ = vc.GetCluster(ctx, "prod-1")
	if got.State != store.ClusterRevoked {
		t.Fatalf("cluster state %q, want %s", got.State, store.ClusterRevoked)
	}
}

// TestRenewerMarksRevocation: the renewer renews a token near expiry and
// marks a cluster whose service account was deleted.
func TestRenewer(t *testing.T) {
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "renew", Cluster: "r1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(2 * time.Minute) // less than a third of the TTL left
	c := &store.Cluster{Name: "r1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace, ServiceAccount: g.ServiceAccount,
		Token: g.Token, TokenExpiresAt: &soon, State: store.ClusterConnected}
	if err := st.CreateCluster(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := &clusterdriver.Renewer{Store: st, Clock: realClock{}, TTL: 15 * time.Minute}
	renewed, err := r.Tick(ctx)
	if err != nil || len(renewed) != 1 {
		t.Fatalf("renew: %v %v", renewed, err)
	}
	got, _ := st.GetCluster(ctx, "r1")
	if got.Token == g.Token || time.Until(*got.TokenExpiresAt) < 14*time.Minute {
		t.Fatalf("token not renewed: expiry %v", got.TokenExpiresAt)
	}
	if renewed, _ := r.Tick(ctx); len(renewed) != 0 {
		t.Fatalf("a fresh token was renewed again: %v", renewed)
	}
	if _, err := trustedaccess.Disable(ctx, cp.Config(), "renew"); err != nil {
		t.Fatal(err)
	}
	got.TokenExpiresAt = &soon
	if err := st.UpdateCluster(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetCluster(ctx, "r1")
	if got.State != store.ClusterRevoked || !strings.Contains(got.Message, "revoked") {
		t.Fatalf("after disable: state %q message %q", got.State, got.Message)
	}
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

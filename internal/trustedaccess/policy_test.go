package trustedaccess_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/trustedaccess"
)

var trustPolicies = v1alpha1.GroupVersion.WithResource("clustertrustpolicies")

func storageLocation(t *testing.T, name string) {
	t.Helper()
	_, err := kubernetes.NewForConfigOrDie(cp.Config()).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ExtensionNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	_, err = dynamic.NewForConfigOrDie(cp.Config()).Resource(storageLocations).Namespace(v1alpha1.ExtensionNamespace).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "arca.io/v1alpha1", "kind": "StorageLocation", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"url": "file:///tmp/" + name, "credentialsSecret": "arca-storage"}}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func getPolicy(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := dynamic.NewForConfigOrDie(cp.Config()).Resource(trustPolicies).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ClusterTrustPolicy %s: %v", name, err)
	}
	return u
}

// waitAdmission waits until the admission policy refuses an unlabelled job
// of the vault (the API server loads new policies asynchronously).
func waitAdmission(t *testing.T, vd dynamic.Interface) {
	t.Helper()
	jobs := vd.Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := jobs.Create(ctx, backupJob("admission-probe", ""), metav1.CreateOptions{})
		if err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
			return
		}
		if err == nil {
			_ = dynamic.NewForConfigOrDie(cp.Config()).Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace).Delete(ctx, "admission-probe", metav1.DeleteOptions{})
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policy did not take effect: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestTrustPolicyIsTheOwners: enable writes a conservative default policy,
// running it again keeps what the owner changed, and the vault's identity
// can neither write its policy nor the admission objects that bind it.
func TestTrustPolicyIsTheOwners(t *testing.T) {
	storageLocation(t, "own-loc")
	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "own", Cluster: "c1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := v1alpha1.ClusterTrustPolicySpec{Namespaces: []string{"*"}, StorageLocations: g.Policy.StorageLocations, Forget: true, Prune: true, VaultTier: true}
	if !reflect.DeepEqual(g.Policy, want) || !strings.Contains(strings.Join(g.Policy.StorageLocations, ","), "own-loc") {
		t.Fatalf("default policy %+v, want namespaces *, the free storage locations (own-loc among them), forget, prune, the vault tier and nothing else", g.Policy)
	}
	hooks := true
	g2, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "own", Cluster: "c1", Policy: trustedaccess.PolicyOptions{Hooks: &hooks}})
	if err != nil {
		t.Fatal(err)
	}
	if !g2.Policy.Hooks || !reflect.DeepEqual(g2.Policy.StorageLocations, want.StorageLocations) || !g2.Policy.Forget {
		t.Fatalf("after enable --allow-hooks: %+v", g2.Policy)
	}
	if _, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "own", Cluster: "c1"}); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := unstructured.NestedBool(getPolicy(t, "own").Object, "spec", "hooks"); !h {
		t.Fatal("enable without flags reset the owner's spec.hooks")
	}

	vd := dynamic.NewForConfigOrDie(vaultConfig(g))
	vc := kubernetes.NewForConfigOrDie(vaultConfig(g))
	before := getPolicy(t, "own")
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the vault: %v, want Forbidden", what, err)
		} else if !strings.Contains(err.Error(), "system:serviceaccount:arca-system:arca-vault-own") {
			t.Errorf("%s: the refusal does not name the vault's identity: %v", what, err)
		}
	}
	_, err = vd.Resource(trustPolicies).Patch(ctx, "own", types.MergePatchType, []byte(`{"spec":{"restoreRBAC":true,"namespaces":["*","kube-system"]}}`), metav1.PatchOptions{})
	forbidden("patch its ClusterTrustPolicy", err)
	upd := before.DeepCopy()
	_ = unstructured.SetNestedField(upd.Object, true, "spec", "restoreAdmission")
	_, err = vd.Resource(trustPolicies).Update(ctx, upd, metav1.UpdateOptions{})
	forbidden("update its ClusterTrustPolicy", err)
	err = vd.Resource(trustPolicies).Delete(ctx, "own", metav1.DeleteOptions{})
	forbidden("delete its ClusterTrustPolicy", err)
	evil := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "arca.io/v1alpha1", "kind": "ClusterTrustPolicy",
		"metadata": map[string]any{"name": "own-wider"}, "spec": map[string]any{"namespaces": []any{"*"}, "storageLocations": []any{"*"}}}}
	_, err = vd.Resource(trustPolicies).Create(ctx, evil, metav1.CreateOptions{})
	forbidden("create a ClusterTrustPolicy", err)
	err = vc.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, v1alpha1.VaultJobsAdmissionPolicy, metav1.DeleteOptions{})
	forbidden("delete the admission policy binding", err)
	_, err = vc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Patch(ctx, v1alpha1.VaultJobsAdmissionPolicy, types.MergePatchType, []byte(`{"spec":{"failurePolicy":"Ignore"}}`), metav1.PatchOptions{})
	forbidden("patch the admission policy", err)

	// Nothing changed.
	after := getPolicy(t, "own")
	if !reflect.DeepEqual(before.Object["spec"], after.Object["spec"]) || after.GetResourceVersion() != before.GetResourceVersion() {
		t.Errorf("the policy changed: %v → %v", before.Object["spec"], after.Object["spec"])
	}
	if _, err := dynamic.NewForConfigOrDie(cp.Config()).Resource(trustPolicies).Get(ctx, "own-wider", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterTrustPolicy own-wider exists: %v", err)
	}
	if _, err := kubernetes.NewForConfigOrDie(cp.Config()).AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, v1alpha1.VaultJobsAdmissionPolicy, metav1.GetOptions{}); err != nil {
		t.Errorf("admission policy binding: %v", err)
	}

	// Disable removes the vault's policy with its identity.
	gone, err := trustedaccess.Disable(ctx, cp.Config(), "own")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(gone, " "), "ClusterTrustPolicy/own") {
		t.Errorf("disable deleted %v, not the policy", gone)
	}
	if _, err := dynamic.NewForConfigOrDie(cp.Config()).Resource(trustPolicies).Get(ctx, "own", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterTrustPolicy own after disable: %v", err)
	}
}

// TestVaultsAreIsolated: two vaults on one cluster. Admission binds every
// job a vault's identity writes to that vault, so neither can create a job
// as the other or unlabelled, nor change or delete the other's (or the
// owner's) jobs; each vault's default policy names only the storage
// locations free when it was enabled, so their storage is apart too (the
// extension refuses the other's location: internal/extension
// TestTrustPolicyRefusals).
func TestVaultsAreIsolated(t *testing.T) {
	storageLocation(t, "iso-a")
	ga, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "iso-a", Cluster: "c1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	storageLocation(t, "iso-b")
	gb, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "iso-b", Cluster: "c1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(ga.Policy.StorageLocations, ","), "iso-a") || !reflect.DeepEqual(gb.Policy.StorageLocations, []string{"iso-b"}) {
		t.Fatalf("storage locations: vault iso-a %v, vault iso-b %v (want iso-b alone: the others were taken)", ga.Policy.StorageLocations, gb.Policy.StorageLocations)
	}
	va := dynamic.NewForConfigOrDie(vaultConfig(ga)).Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace)
	vb := dynamic.NewForConfigOrDie(vaultConfig(gb)).Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace)
	admin := dynamic.NewForConfigOrDie(cp.Config()).Resource(backupJobs).Namespace(v1alpha1.ExtensionNamespace)
	waitAdmission(t, dynamic.NewForConfigOrDie(vaultConfig(ga)))

	refused := func(what string, err error, says string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: allowed", what)
			return
		}
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("%s: %v, want a refusal by admission", what, err)
		}
		if !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want it to say %q", what, err, says)
		}
	}
	absent := func(name string) {
		t.Helper()
		if _, err := admin.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("BackupJob %s exists (%v)", name, err)
		}
	}

	// Creating: only as itself.
	_, err = va.Create(ctx, backupJob("a-unlabelled", ""), metav1.CreateOptions{})
	refused("vault iso-a creates an unlabelled job", err, "vault iso-a may write only jobs labelled arca.io/vault=iso-a")
	absent("a-unlabelled")
	_, err = va.Create(ctx, backupJob("a-as-b", "iso-b"), metav1.CreateOptions{})
	refused("vault iso-a creates a job as iso-b", err, "vault iso-a may write only jobs labelled arca.io/vault=iso-a")
	absent("a-as-b")
	if _, err := va.Create(ctx, backupJob("a-own", "iso-a"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("vault iso-a creates its own job: %v", err)
	}
	if _, err := admin.Create(ctx, backupJob("owners", ""), metav1.CreateOptions{}); err != nil {
		t.Fatalf("the owner creates an unlabelled job: %v", err)
	}

	// Changing and deleting: only its own.
	_, err = vb.Patch(ctx, "a-own", types.MergePatchType, []byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{})
	refused("vault iso-b cancels iso-a's job", err, "vault iso-b may")
	_, err = vb.Patch(ctx, "a-own", types.MergePatchType, []byte(`{"metadata":{"labels":{"arca.io/vault":"iso-b"}}}`), metav1.PatchOptions{})
	refused("vault iso-b takes iso-a's job over", err, "vault iso-b may change or delete only its own jobs (labelled arca.io/vault=iso-b)")
	err = vb.Delete(ctx, "a-own", metav1.DeleteOptions{})
	refused("vault iso-b deletes iso-a's job", err, "vault iso-b may change or delete only its own jobs")
	_, err = vb.Patch(ctx, "owners", types.MergePatchType, []byte(`{"metadata":{"labels":{"arca.io/vault":"iso-b"}},"spec":{"includedNamespaces":["kube-system"]}}`), metav1.PatchOptions{})
	refused("vault iso-b takes the owner's job over", err, "vault iso-b may change or delete only its own jobs")
	err = vb.Delete(ctx, "owners", metav1.DeleteOptions{})
	refused("vault iso-b deletes the owner's job", err, "only its own jobs")
	_, err = va.Patch(ctx, "a-own", types.MergePatchType, []byte(`{"metadata":{"labels":{"arca.io/vault":null}}}`), metav1.PatchOptions{})
	refused("vault iso-a removes its label", err, "may write only jobs labelled arca.io/vault=iso-a")

	got, err := admin.Get(ctx, "a-own", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c, _, _ := unstructured.NestedBool(got.Object, "spec", "cancel"); c || got.GetLabels()[v1alpha1.LabelVault] != "iso-a" {
		t.Errorf("iso-a's job was changed: cancel %v, labels %v", c, got.GetLabels())
	}
	owners, err := admin.Get(ctx, "owners", metav1.GetOptions{})
	if err != nil || len(owners.GetLabels()) != 0 {
		t.Errorf("the owner's job: %v, labels %v", err, owners.GetLabels())
	}
	if ns, _, _ := unstructured.NestedStringSlice(owners.Object, "spec", "includedNamespaces"); len(ns) != 0 {
		t.Errorf("the owner's job was changed: includedNamespaces %v", ns)
	}

	// Its own job it may cancel and delete.
	if _, err := va.Patch(ctx, "a-own", types.MergePatchType, []byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("vault iso-a cancels its own job: %v", err)
	}
	if err := va.Delete(ctx, "a-own", metav1.DeleteOptions{}); err != nil {
		t.Errorf("vault iso-a deletes its own job: %v", err)
	}
	// And neither may touch a storage location.
	for name, g := range map[string]*trustedaccess.Grant{"iso-a": ga, "iso-b": gb} {
		_, err := dynamic.NewForConfigOrDie(vaultConfig(g)).Resource(storageLocations).Namespace(v1alpha1.ExtensionNamespace).Patch(ctx, "iso-b", types.MergePatchType,
			[]byte(`{"spec":{"readOnly":true}}`), metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("vault %s patches StorageLocation iso-b: %v, want Forbidden", name, err)
		}
	}
}

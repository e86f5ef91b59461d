package trustpolicy

import (
	"strings"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
)

func policy(spec v1alpha1.ClusterTrustPolicySpec) *v1alpha1.ClusterTrustPolicy {
	p := &v1alpha1.ClusterTrustPolicy{Spec: spec}
	p.Name = "prod"
	return p
}

// TestCheck: each rule refuses with its code, and the message names the
// field and the flag that widen it; a job inside the bound passes.
func TestCheck(t *testing.T) {
	wide := v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"*"}, Namespaces: []string{"*", "kube-system"}, RestoreClusterScoped: true,
		RestoreRBAC: true, RestoreAdmission: true, ResourceModifiers: true, Hooks: true, Forget: true, Prune: true, Verification: true, VaultTier: true}
	narrow := v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"default"}, Namespaces: []string{"team-*", "shop"}}
	cases := []struct {
		name string
		use  Use
		code string
		says []string
	}{
		{"no policy", Use{Vault: "prod", StorageLocation: "default"}, v1alpha1.CodeVaultNotTrusted,
			[]string{`vault "prod" is not trusted`, "arca trusted-access enable --vault prod"}},
		{"storage location", Use{Policy: policy(narrow), StorageLocation: "other"}, v1alpha1.CodePolicyDeniesStorageLocation,
			[]string{`storage location "other"`, "spec.storageLocations", "--allow-storage-locations other"}},
		{"zero policy allows no storage", Use{Policy: policy(v1alpha1.ClusterTrustPolicySpec{}), StorageLocation: "default"}, v1alpha1.CodePolicyDeniesStorageLocation,
			[]string{"[] (none)"}},
		{"forget", Use{Policy: policy(narrow), StorageLocation: "default", Forget: true}, v1alpha1.CodePolicyDeniesForget,
			[]string{"spec.forget", "--allow-forget"}},
		{"prune", Use{Policy: policy(v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"default"}, Forget: true}), StorageLocation: "default", Forget: true, Prune: true},
			v1alpha1.CodePolicyDeniesPrune, []string{"spec.prune", "--allow-prune"}},
		{"verification", Use{Policy: policy(narrow), StorageLocation: "default", Verification: true}, v1alpha1.CodePolicyDeniesVerification,
			[]string{"spec.verification", "--allow-verification", "sandbox namespaces arca-verify-*"}},
		{"verification into namespaces the policy does not reach", Use{Policy: policy(v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"*"}, Namespaces: []string{"shop"}, Verification: true}),
			StorageLocation: "default", Verification: true, Namespaces: []string{"arca-verify-x1y2z-shop"}}, v1alpha1.CodePolicyDeniesNamespace,
			[]string{"arca-verify-x1y2z-shop", "--allow-namespaces shop,arca-verify-x1y2z-shop"}},
		{"vault tier (a policy written before the field has it off)", Use{Policy: policy(narrow), StorageLocation: "default", VaultTier: true}, v1alpha1.CodePolicyDeniesVaultTier,
			[]string{"spec.vaultTier", "--allow-vault-tier", "data-mover pods"}},
		{"hooks", Use{Policy: policy(narrow), StorageLocation: "default", Hooks: true}, v1alpha1.CodePolicyDeniesHooks,
			[]string{"spec.hooks", "--allow-hooks"}},
		{"modifiers", Use{Policy: policy(narrow), StorageLocation: "default", ResourceModifiers: true}, v1alpha1.CodePolicyDeniesResourceModifiers,
			[]string{"spec.resourceModifiers", "--allow-resource-modifiers"}},
		{"namespace", Use{Policy: policy(narrow), StorageLocation: "default", Namespaces: []string{"team-a", "shop", "billing"}}, v1alpha1.CodePolicyDeniesNamespace,
			[]string{"namespaces [billing] are outside", "spec.namespaces", "--allow-namespaces team-*,shop,billing"}},
		{"star does not reach kube-system", Use{Policy: policy(v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"*"}, Namespaces: []string{"*"}}),
			StorageLocation: "x", Namespaces: []string{"kube-system", "shop"}}, v1alpha1.CodePolicyDeniesNamespace,
			[]string{"[kube-system]", "named literally"}},
		{"pattern does not reach the extension's namespace", Use{Policy: policy(v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"*"}, Namespaces: []string{"arca-*"}}),
			StorageLocation: "x", Namespaces: []string{v1alpha1.ExtensionNamespace}}, v1alpha1.CodePolicyDeniesNamespace, []string{v1alpha1.ExtensionNamespace}},
		{"cluster-scoped", Use{Policy: policy(narrow), StorageLocation: "default", Namespaces: []string{"shop"}, ClusterScoped: []string{"storageclasses.storage.k8s.io fast"}},
			v1alpha1.CodePolicyDeniesClusterScoped, []string{"storageclasses.storage.k8s.io fast", "spec.restoreClusterScoped", "--allow-cluster-scoped"}},
		{"rbac", Use{Policy: policy(narrow), StorageLocation: "default", RBAC: []string{"a", "b", "c", "d", "e", "f", "g"}},
			v1alpha1.CodePolicyDeniesRBAC, []string{"a, b, c, d, e and 2 more", "spec.restoreRBAC", "--allow-rbac"}},
		{"admission", Use{Policy: policy(narrow), StorageLocation: "default", Admission: []string{"apiservices.apiregistration.k8s.io v1.x"}},
			v1alpha1.CodePolicyDeniesAdmission, []string{"apiservices.apiregistration.k8s.io v1.x", "spec.restoreAdmission", "--allow-admission"}},
		{"inside the narrow bound", Use{Policy: policy(narrow), StorageLocation: "default", Namespaces: []string{"team-a", "shop"}}, "", nil},
		{"inside the wide bound", Use{Policy: policy(wide), StorageLocation: "any", Namespaces: []string{"kube-system", "x"}, ClusterScoped: []string{"a"},
			RBAC: []string{"b"}, Admission: []string{"c"}, ResourceModifiers: true, Hooks: true, Forget: true, Prune: true, Verification: true, VaultTier: true}, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.use.Vault == "" {
				tc.use.Vault = "prod"
			}
			r := Check(tc.use)
			if tc.code == "" {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				return
			}
			if r == nil {
				t.Fatalf("allowed, want %s", tc.code)
			}
			if r.Code != tc.code {
				t.Errorf("code %s, want %s (%s)", r.Code, tc.code, r.Message)
			}
			for _, s := range tc.says {
				if !strings.Contains(r.Message, s) {
					t.Errorf("message %q does not say %q", r.Message, s)
				}
			}
		})
	}
}

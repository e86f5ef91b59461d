package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ClusterTrustPolicySpec bounds what the jobs of one vault may do in this
// cluster. Every permission is off in the zero value: a field left out
// grants nothing. `arca trusted-access enable` writes a policy with the
// defaults described in docs/security.md (namespaces "*", the storage
// locations no other vault holds, forget and prune) and keeps an existing
// one; only the cluster's owner can write it (the vault's identity is
// refused by RBAC).
type ClusterTrustPolicySpec struct {
	// StorageLocations names the StorageLocations (in the extension's
	// namespace) the vault's jobs may back up into, restore from and
	// forget in. "*" allows every one; empty allows none.
	// +optional
	StorageLocations []string `json:"storageLocations,omitempty"`
	// Namespaces are the namespaces (names or glob patterns) the vault's
	// jobs may back up and restore into (after namespaceMappings). "*" and
	// patterns never reach ProtectedNamespaces (kube-system, kube-public,
	// kube-node-lease and the extension's namespace): those are allowed
	// only when named literally. Empty allows none.
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`
	// RestoreClusterScoped allows restores that write cluster-scoped
	// objects other than namespaces (includeClusterScopeResources).
	// +optional
	RestoreClusterScoped bool `json:"restoreClusterScoped,omitempty"`
	// RestoreRBAC allows restores that write Roles, RoleBindings,
	// ClusterRoles or ClusterRoleBindings.
	// +optional
	RestoreRBAC bool `json:"restoreRBAC,omitempty"`
	// RestoreAdmission allows restores that write admission objects:
	// webhook configurations, admission policies and their bindings,
	// APIServices.
	// +optional
	RestoreAdmission bool `json:"restoreAdmission,omitempty"`
	// ResourceModifiers allows restores with resource modifiers (arbitrary
	// patches of what is written).
	// +optional
	ResourceModifiers bool `json:"resourceModifiers,omitempty"`
	// Hooks allows jobs that run backup or restore hooks (commands in pods).
	// +optional
	Hooks bool `json:"hooks,omitempty"`
	// Forget allows jobs that forget recovery points (the vault's retention).
	// +optional
	Forget bool `json:"forget,omitempty"`
	// Prune allows forget jobs to prune the repository.
	// +optional
	Prune bool `json:"prune,omitempty"`
	// Verification allows verification jobs: restores into sandbox
	// namespaces (VerificationNamespacePrefix…, which Namespaces must also
	// reach) that the extension deletes afterwards.
	// +optional
	Verification bool `json:"verification,omitempty"`
	// VaultTier allows jobs that run data-mover pods: vault-tier backups
	// (spec.vaultTier: pods that read every snapshotted volume's files and
	// write them into the repository) and restores that ask for vault-tier
	// data (volumeDataSource Vault: pods that write it into claims, with a
	// copy of the repository credentials in the target namespace). Without
	// it a restore with volumeDataSource Auto takes snapshots only. Off in
	// the zero value like every field, so a policy written before the field
	// existed refuses vault-tier jobs (PolicyDeniesVaultTier) until the
	// owner allows them; `arca trusted-access enable` turns it on in the
	// policies it creates (docs/security.md).
	// +optional
	VaultTier bool `json:"vaultTier,omitempty"`
}

// ClusterTrustPolicy is the cluster owner's bound on one vault: its name is
// the vault's name (trusted access's label arca.io/vault), and a vault
// without one is not trusted. The extension checks every job that a
// vault's identity created (label arca.io/vault, which admission binds to
// the creating identity) against it before the job does anything.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=arca,shortName=actp
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.spec.namespaces`
// +kubebuilder:printcolumn:name="Storage Locations",type=string,JSONPath=`.spec.storageLocations`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterTrustPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ClusterTrustPolicySpec `json:"spec,omitempty"`
}

// ClusterTrustPolicyList is a list of ClusterTrustPolicies.
// +kubebuilder:object:root=true
type ClusterTrustPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTrustPolicy `json:"items"`
}

// ProtectedNamespaces are reached by a ClusterTrustPolicy's namespaces
// only when named literally, never by "*" or a pattern.
var ProtectedNamespaces = DefaultExcludedNamespaces

// Names of the admission objects trusted access installs: they bind every
// job a vault's identity writes to that vault (docs/security.md).
const (
	// VaultJobsAdmissionPolicy is the ValidatingAdmissionPolicy and its
	// binding: a vault's service account may create, change and delete
	// only BackupJobs and RestoreJobs labelled LabelVault with its own
	// vault's name.
	VaultJobsAdmissionPolicy = "arca-vault-jobs"
	// VaultServiceAccountPrefix starts the name of every vault's service
	// account in ExtensionNamespace (arca-vault-NAME).
	VaultServiceAccountPrefix = "arca-vault-"
)

// Codes of jobs refused by a ClusterTrustPolicy: each names the rule, and
// its message names the field and the command that widen it.
const (
	CodeVaultNotTrusted               = "VaultNotTrusted"
	CodePolicyDeniesStorageLocation   = "PolicyDeniesStorageLocation"
	CodePolicyDeniesNamespace         = "PolicyDeniesNamespace"
	CodePolicyDeniesClusterScoped     = "PolicyDeniesClusterScoped"
	CodePolicyDeniesRBAC              = "PolicyDeniesRBAC"
	CodePolicyDeniesAdmission         = "PolicyDeniesAdmission"
	CodePolicyDeniesResourceModifiers = "PolicyDeniesResourceModifiers"
	CodePolicyDeniesHooks             = "PolicyDeniesHooks"
	CodePolicyDeniesForget            = "PolicyDeniesForget"
	CodePolicyDeniesPrune             = "PolicyDeniesPrune"
	CodePolicyDeniesVaultTier         = "PolicyDeniesVaultTier"
	CodeVaultAdmissionPolicyMissing   = "VaultAdmissionPolicyMissing"
	CodeRBACObjectRestored            = "RBACObjectRestored"
	CodeAdmissionObjectRestored       = "AdmissionObjectRestored"
)

// SensitiveKind classifies a resource type (group and plural resource)
// whose objects change who may do what in a cluster: "rbac" for Roles,
// RoleBindings, ClusterRoles and ClusterRoleBindings; "admission" for
// webhook configurations, admission policies and their bindings and
// APIServices; "" for any other type. A restore warns for each such object
// it writes, and a ClusterTrustPolicy allows them separately.
func SensitiveKind(group, resource string) string {
	switch group {
	case "rbac.authorization.k8s.io":
		switch resource {
		case "roles", "rolebindings", "clusterroles", "clusterrolebindings":
			return "rbac"
		}
	case "admissionregistration.k8s.io":
		switch resource {
		case "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "validatingadmissionpolicies",
			"validatingadmissionpolicybindings", "mutatingadmissionpolicies", "mutatingadmissionpolicybindings":
			return "admission"
		}
	case "apiregistration.k8s.io":
		if resource == "apiservices" {
			return "admission"
		}
	}
	return ""
}

// Package trustpolicy decides whether a job that a vault's identity created
// stays inside the bound the cluster's owner set for that vault (a
// ClusterTrustPolicy, api/v1alpha1). It is pure: the caller (the extension)
// reads the policy and describes what the job would do (Use); Check returns
// the first rule the job breaks as a Refusal with a stable code, naming the
// field and the command that widen the policy. docs/security.md describes
// the rules.
package trustpolicy

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Refusal is a job refused by the policy.
type Refusal struct {
	Code    string
	Message string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// Use is what a job would do, as far as the policy cares.
type Use struct {
	// Vault is the job's vault (its arca.io/vault label).
	Vault string
	// Policy is the ClusterTrustPolicy named Vault; nil when there is none.
	Policy *v1alpha1.ClusterTrustPolicy
	// StorageLocation the job reads or writes.
	StorageLocation string
	// Namespaces the job reads (backup) or writes (restore, after
	// namespace mappings), as names.
	Namespaces []string
	// ClusterScoped, RBAC and Admission name the cluster-scoped objects
	// (other than namespaces), the RBAC objects and the admission objects
	// a restore would write (SensitiveKind), as resource.group[ ns/]name.
	ClusterScoped, RBAC, Admission          []string
	ResourceModifiers, Hooks, Forget, Prune bool
	// Verification: the job verifies a recovery point (a restore into
	// sandbox namespaces that the extension deletes afterwards).
	Verification bool
	// VaultTier: the job runs data-mover pods (a vault-tier backup, or a
	// restore that asks for vault-tier data).
	VaultTier bool
}

// Check returns the first rule u breaks, or nil. The order is fixed:
// trust, storage location, forget and prune, verification, vault tier, hooks, resource modifiers,
// namespaces, cluster-scoped objects, RBAC, admission.
func Check(u Use) *Refusal {
	v := u.Vault
	if u.Policy == nil {
		return &Refusal{Code: v1alpha1.CodeVaultNotTrusted, Message: fmt.Sprintf(
			"vault %q is not trusted in this cluster: there is no ClusterTrustPolicy %q; the cluster's owner trusts it with "+
				"`arca trusted-access enable --vault %s --cluster-name C`", v, v, v)}
	}
	p := &u.Policy.Spec
	if !matchesName(p.StorageLocations, u.StorageLocation) {
		return refuse(v1alpha1.CodePolicyDeniesStorageLocation, v, "spec.storageLocations", "--allow-storage-locations "+u.StorageLocation,
			fmt.Sprintf("storage location %q is not among the vault's storage locations %s", u.StorageLocation, list(p.StorageLocations)))
	}
	if u.Forget && !p.Forget {
		return refuse(v1alpha1.CodePolicyDeniesForget, v, "spec.forget", "--allow-forget", "the job forgets recovery points")
	}
	if u.Prune && !p.Prune {
		return refuse(v1alpha1.CodePolicyDeniesPrune, v, "spec.prune", "--allow-prune", "the job prunes the repository")
	}
	if u.Verification && !p.Verification {
		return refuse(v1alpha1.CodePolicyDeniesVerification, v, "spec.verification", "--allow-verification",
			"the job verifies a recovery point by restoring it into sandbox namespaces "+v1alpha1.VerificationNamespacePrefix+"* and deleting them afterwards")
	}
	if u.VaultTier && !p.VaultTier {
		return refuse(v1alpha1.CodePolicyDeniesVaultTier, v, "spec.vaultTier", "--allow-vault-tier",
			"the job runs data-mover pods that read volume data into the repository (a vault-tier backup) or write it from the repository into claims (a restore from the vault tier)")
	}
	if u.Hooks && !p.Hooks {
		return refuse(v1alpha1.CodePolicyDeniesHooks, v, "spec.hooks", "--allow-hooks", "the job runs hooks (commands in pods)")
	}
	if u.ResourceModifiers && !p.ResourceModifiers {
		return refuse(v1alpha1.CodePolicyDeniesResourceModifiers, v, "spec.resourceModifiers", "--allow-resource-modifiers",
			"the restore rewrites objects with resource modifiers")
	}
	var denied []string
	for _, ns := range u.Namespaces {
		if !NamespaceAllowed(p, ns) {
			denied = append(denied, ns)
		}
	}
	if len(denied) > 0 {
		slices.Sort(denied)
		return refuse(v1alpha1.CodePolicyDeniesNamespace, v, "spec.namespaces", "--allow-namespaces "+strings.Join(append(slices.Clone(p.Namespaces), denied...), ","),
			fmt.Sprintf("namespaces %s are outside the vault's namespaces %s (%s are reached only when named literally)",
				list(denied), list(p.Namespaces), strings.Join(v1alpha1.ProtectedNamespaces, ", ")))
	}
	if len(u.ClusterScoped) > 0 && !p.RestoreClusterScoped {
		return refuse(v1alpha1.CodePolicyDeniesClusterScoped, v, "spec.restoreClusterScoped", "--allow-cluster-scoped",
			fmt.Sprintf("the restore writes cluster-scoped objects %s (leave out includeClusterScopeResources to restore namespaces only)", names(u.ClusterScoped)))
	}
	if len(u.RBAC) > 0 && !p.RestoreRBAC {
		return refuse(v1alpha1.CodePolicyDeniesRBAC, v, "spec.restoreRBAC", "--allow-rbac",
			fmt.Sprintf("the restore writes RBAC objects %s (exclude their types to restore without them)", names(u.RBAC)))
	}
	if len(u.Admission) > 0 && !p.RestoreAdmission {
		return refuse(v1alpha1.CodePolicyDeniesAdmission, v, "spec.restoreAdmission", "--allow-admission",
			fmt.Sprintf("the restore writes admission objects %s", names(u.Admission)))
	}
	return nil
}

func refuse(code, vault, field, flag, what string) *Refusal {
	return &Refusal{Code: code, Message: fmt.Sprintf(
		"refused by ClusterTrustPolicy %q (the cluster owner's bound on vault %q): %s, and %s does not allow it; "+
			"the cluster's owner widens it with `arca trusted-access enable --vault %s --cluster-name C %s` or by editing %s of ClusterTrustPolicy %s",
		vault, vault, what, field, vault, flag, field, vault)}
}

// NamespaceAllowed reports whether the policy's namespaces reach ns: a
// literal name, or "*" and glob patterns for every namespace except
// ProtectedNamespaces.
func NamespaceAllowed(p *v1alpha1.ClusterTrustPolicySpec, ns string) bool {
	protected := slices.Contains(v1alpha1.ProtectedNamespaces, ns)
	for _, pat := range p.Namespaces {
		if pat == ns {
			return true
		}
		if protected {
			continue
		}
		if ok, _ := path.Match(pat, ns); ok || pat == "*" {
			return true
		}
	}
	return false
}

func matchesName(names []string, n string) bool {
	return slices.Contains(names, "*") || slices.Contains(names, n)
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "[] (none)"
	}
	return "[" + strings.Join(xs, ", ") + "]"
}

// names lists at most five objects and counts the rest.
func names(xs []string) string {
	if len(xs) <= 5 {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:5], ", "), len(xs)-5)
}

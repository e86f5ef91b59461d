package extension

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/selection"
	"github.com/arca-backup/arca/internal/trustpolicy"
)

// The cluster owner's trust policy, as one step the job paths call before
// a job touches storage or the cluster (docs/security.md, "The cluster
// owner's policy"). A job labelled arca.io/vault=V was created by vault V's
// identity (admission binds the label to the creating service account,
// ValidatingAdmissionPolicy arca-vault-jobs) and is checked against
// ClusterTrustPolicy V; a job without the label was created by someone the
// cluster's RBAC let write jobs, and is not bounded.

// trustUse returns what the policy needs of a job that a vault created,
// with the vault's policy; nil when the job is not a vault's. A job that
// cannot be judged is refused (the returned result).
func (x *Extension) trustUse(ctx context.Context, j client.Object) (*trustpolicy.Use, *result) {
	vault := j.GetLabels()[v1alpha1.LabelVault]
	if vault == "" {
		return nil, x.checkAdmissionBinding(ctx)
	}
	u := &trustpolicy.Use{Vault: vault}
	pol := &v1alpha1.ClusterTrustPolicy{}
	err := x.api.Get(ctx, client.ObjectKey{Name: vault}, pol)
	switch {
	case err == nil:
		u.Policy = pol
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
	default:
		res := failed(v1alpha1.CodeVaultNotTrusted, "read ClusterTrustPolicy %s: %v", vault, err)
		return nil, &res
	}
	return u, nil
}

// checkAdmissionBinding refuses jobs without a vault label while vaults are
// trusted but the admission policy that makes vaults label their jobs is
// gone: the extension could not tell a vault's job from the owner's.
func (x *Extension) checkAdmissionBinding(ctx context.Context) *result {
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	err := x.api.Get(ctx, client.ObjectKey{Name: v1alpha1.VaultJobsAdmissionPolicy}, b)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		res := failed(v1alpha1.CodeVaultAdmissionPolicyMissing, "read ValidatingAdmissionPolicyBinding %s: %v", v1alpha1.VaultJobsAdmissionPolicy, err)
		return &res
	}
	pols := &v1alpha1.ClusterTrustPolicyList{}
	if err := x.api.List(ctx, pols); err != nil || len(pols.Items) == 0 {
		return nil // no vault is trusted here (or the CRD is not installed)
	}
	res := failed(v1alpha1.CodeVaultAdmissionPolicyMissing,
		"vault %s is trusted in this cluster (ClusterTrustPolicy), but ValidatingAdmissionPolicyBinding %s is missing, so a job without label %s "+
			"may come from a vault's identity; the cluster's owner restores it with `arca trusted-access enable --vault %s --cluster-name C`",
		pols.Items[0].Name, v1alpha1.VaultJobsAdmissionPolicy, v1alpha1.LabelVault, pols.Items[0].Name)
	return &res
}

// checkVaultPoint refuses a recovery point whose tags do not name the
// vault and instance a vault's job or query says it belongs to
// (spec.vaultPoint; nil for the owner's own, which are not checked). The
// vault checks the tags when it syncs its catalog; checking them again
// here, before the point is restored or read, means that a catalog entry
// naming another vault's or instance's point in a shared repository
// restores and reveals nothing. anyInstance accepts every instance of the
// vault (the other side of a diff). what names the point in the message.
func checkVaultPoint(want *v1alpha1.VaultPoint, rp *repo.RecoveryPoint, anyInstance bool, what string) error {
	if want == nil {
		return nil
	}
	w := *want
	if anyInstance {
		w.Instance = rp.Tags[v1alpha1.TagInstance]
	}
	if w.Matches(rp.Tags) {
		return nil
	}
	return coded(v1alpha1.CodeRecoveryPointOfAnotherInstance,
		"%s %s is tagged %s=%q, %s=%q, but spec.vaultPoint says vault %q, instance %q: the vault's catalog names a point of another vault or instance, "+
			"so nothing was restored or read; compare the vault's entry (`arca recovery-point show`) with the point's tags in the repository "+
			"(`arca vault sync` takes only points tagged with the vault and instance it syncs)",
		what, rp.ID.String(), v1alpha1.TagVault, rp.Tags[v1alpha1.TagVault], v1alpha1.TagInstance, rp.Tags[v1alpha1.TagInstance], want.Vault, want.Instance)
}

// refusal turns a policy refusal into the job's result.
func refusal(r *trustpolicy.Refusal) *result {
	if r == nil {
		return nil
	}
	res := failed(r.Code, "%s", r.Message)
	return &res
}

// backupNamespaces are the namespaces a backup configuration selects now:
// existing ones and those it names literally.
func (x *Extension) backupNamespaces(ctx context.Context, sel *selection.Selector) ([]string, error) {
	l := &corev1.NamespaceList{}
	if err := x.api.List(ctx, l); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	add := func(ns string) {
		if !seen[ns] && sel.Namespaces.Includes(ns) {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	for _, ns := range l.Items {
		add(ns.Name)
	}
	for _, ns := range sel.Namespaces.Literals() {
		add(ns)
	}
	return out, nil
}

package trustedaccess

import (
	"context"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// The cluster owner's side of the trust boundary (docs/security.md, "The
// cluster owner's policy"): the ClusterTrustPolicy that bounds a vault's
// jobs, and the ValidatingAdmissionPolicy that binds every job a vault's
// identity writes to that vault.

var (
	policyGVR   = v1alpha1.GroupVersion.WithResource("clustertrustpolicies")
	locationGVR = v1alpha1.GroupVersion.WithResource("storagelocations")
)

// PolicyOptions change a vault's ClusterTrustPolicy; nil fields keep what
// the policy says (or, for a new policy, DefaultPolicy's value).
type PolicyOptions struct {
	Namespaces, StorageLocations                                                  *[]string
	RestoreClusterScoped, RestoreRBAC, RestoreAdmission, ResourceModifiers, Hooks *bool
	Forget, Prune, Verification, VaultTier                                        *bool
}

func (o PolicyOptions) apply(s *v1alpha1.ClusterTrustPolicySpec) {
	if o.Namespaces != nil {
		s.Namespaces = *o.Namespaces
	}
	if o.StorageLocations != nil {
		s.StorageLocations = *o.StorageLocations
	}
	for _, f := range []struct {
		opt *bool
		to  *bool
	}{{o.RestoreClusterScoped, &s.RestoreClusterScoped}, {o.RestoreRBAC, &s.RestoreRBAC}, {o.RestoreAdmission, &s.RestoreAdmission},
		{o.ResourceModifiers, &s.ResourceModifiers}, {o.Hooks, &s.Hooks}, {o.Forget, &s.Forget}, {o.Prune, &s.Prune}, {o.Verification, &s.Verification},
		{o.VaultTier, &s.VaultTier}} {
		if f.opt != nil {
			*f.to = *f.opt
		}
	}
}

// DefaultPolicy is what Enable writes for a vault without a policy: every
// namespace but the protected ones, the given storage locations, forget
// and prune (the vault's retention), the vault tier (the policies' vault
// datastore rules); no cluster-scoped, RBAC or admission objects, no
// resource modifiers, no hooks, no verification.
func DefaultPolicy(storageLocations []string) v1alpha1.ClusterTrustPolicySpec {
	return v1alpha1.ClusterTrustPolicySpec{Namespaces: []string{"*"}, StorageLocations: storageLocations, Forget: true, Prune: true, VaultTier: true}
}

// applyPolicy creates the vault's ClusterTrustPolicy (DefaultPolicy with
// the storage locations no other vault's policy names, then opts) or
// changes an existing one by opts only, so that running Enable again to
// renew access keeps what the owner set.
func applyPolicy(ctx context.Context, dyn dynamic.Interface, vault string, opts PolicyOptions) (*v1alpha1.ClusterTrustPolicySpec, error) {
	pc := dyn.Resource(policyGVR)
	cur, err := pc.Get(ctx, vault, metav1.GetOptions{})
	if apimeta.IsNoMatchError(err) || isNotServed(err) {
		return nil, fmt.Errorf("the ClusterTrustPolicy CRD (%s) is not installed: install the extension first (`arca extension install`), then enable trusted access", policyGVR.GroupResource())
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read ClusterTrustPolicy %s: %w", vault, err)
	}
	if apierrors.IsNotFound(err) {
		free, err := unassignedLocations(ctx, dyn, vault)
		if err != nil {
			return nil, err
		}
		spec := DefaultPolicy(free)
		opts.apply(&spec)
		p := &v1alpha1.ClusterTrustPolicy{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ClusterTrustPolicy"},
			ObjectMeta: meta(vault, "", vault), Spec: spec}
		u, err := toUnstructured(p)
		if err != nil {
			return nil, err
		}
		if _, err := pc.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create ClusterTrustPolicy %s: %w", vault, err)
		}
		return &spec, nil
	}
	p := &v1alpha1.ClusterTrustPolicy{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(cur.Object, p); err != nil {
		return nil, fmt.Errorf("decode ClusterTrustPolicy %s: %w", vault, err)
	}
	before := p.Spec.DeepCopy()
	opts.apply(&p.Spec)
	if equalSpec(before, &p.Spec) {
		return &p.Spec, nil
	}
	u, err := toUnstructured(p)
	if err != nil {
		return nil, err
	}
	if _, err := pc.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("update ClusterTrustPolicy %s: %w", vault, err)
	}
	return &p.Spec, nil
}

func isNotServed(err error) bool {
	return apierrors.IsNotFound(err) && strings.Contains(err.Error(), "the server could not find the requested resource")
}

func equalSpec(a, b *v1alpha1.ClusterTrustPolicySpec) bool {
	return fmt.Sprintf("%+v", *a) == fmt.Sprintf("%+v", *b)
}

func toUnstructured(p *v1alpha1.ClusterTrustPolicy) (*unstructured.Unstructured, error) {
	p.APIVersion, p.Kind = v1alpha1.GroupVersion.String(), "ClusterTrustPolicy"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		return nil, fmt.Errorf("encode ClusterTrustPolicy %s: %w", p.Name, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// unassignedLocations are the StorageLocations in Namespace that no other
// vault's policy names (none when another policy names "*").
func unassignedLocations(ctx context.Context, dyn dynamic.Interface, vault string) ([]string, error) {
	locs, err := dyn.Resource(locationGVR).Namespace(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list StorageLocations in %s: %w", v1alpha1.ExtensionNamespace, err)
	}
	pols, err := dyn.Resource(policyGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ClusterTrustPolicies: %w", err)
	}
	taken := map[string]bool{}
	for _, u := range pols.Items {
		if u.GetName() == vault {
			continue
		}
		names, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "storageLocations")
		if slices.Contains(names, "*") {
			return []string{}, nil
		}
		for _, n := range names {
			taken[n] = true
		}
	}
	out := []string{}
	for _, l := range locs.Items {
		if !taken[l.GetName()] {
			out = append(out, l.GetName())
		}
	}
	slices.Sort(out)
	return out, nil
}

// VaultJobsPolicy is the ValidatingAdmissionPolicy that binds a vault's
// jobs to it. It matches only requests of a vault's service account
// (system:serviceaccount:arca-system:arca-vault-NAME) on BackupJobs and
// RestoreJobs (and RecoveryPointQueries), and lets it create or change a job only when the job is
// labelled arca.io/vault=NAME, and change or delete only jobs that were
// already so labelled: a vault cannot write a job the extension would not
// judge by its own ClusterTrustPolicy, and cannot touch another vault's
// (or the owner's) jobs.
func VaultJobsPolicy() *admissionregistrationv1.ValidatingAdmissionPolicy {
	prefix := "system:serviceaccount:" + v1alpha1.ExtensionNamespace + ":" + v1alpha1.VaultServiceAccountPrefix
	fail := admissionregistrationv1.Fail
	label := v1alpha1.LabelVault
	hasLabel := func(obj string) string {
		return fmt.Sprintf("has(%[1]s.metadata.labels) && '%[2]s' in %[1]s.metadata.labels && %[1]s.metadata.labels['%[2]s'] == variables.vault", obj, label)
	}
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: meta(v1alpha1.VaultJobsAdmissionPolicy, "", ""),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{v1alpha1.GroupName}, APIVersions: []string{"*"},
						Resources: []string{"backupjobs", "restorejobs", "backupjobs/status", "restorejobs/status", "recoverypointqueries", "recoverypointqueries/status"}},
				}}}},
			MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "vault-identity",
				Expression: fmt.Sprintf("request.userInfo.username.startsWith('%s')", prefix)}},
			Variables: []admissionregistrationv1.Variable{{Name: "vault",
				Expression: fmt.Sprintf("request.userInfo.username.substring(%d)", len(prefix))}},
			Validations: []admissionregistrationv1.Validation{
				{Expression: "request.operation == 'DELETE' || (" + hasLabel("object") + ")",
					MessageExpression: fmt.Sprintf("'vault ' + variables.vault + ' may write only jobs labelled %s=' + variables.vault + "+
						"' (ClusterTrustPolicy ' + variables.vault + ' bounds them)'", label),
					Reason: ptrReason(metav1.StatusReasonForbidden)},
				{Expression: "request.operation == 'CREATE' || (" + hasLabel("oldObject") + ")",
					MessageExpression: fmt.Sprintf("'vault ' + variables.vault + ' may change or delete only its own jobs (labelled %s=' + variables.vault + ')'", label),
					Reason:            ptrReason(metav1.StatusReasonForbidden)},
			},
		},
	}
}

func ptrReason(r metav1.StatusReason) *metav1.StatusReason { return &r }

// VaultJobsPolicyBinding binds VaultJobsPolicy cluster-wide, denying.
func VaultJobsPolicyBinding() *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: meta(v1alpha1.VaultJobsAdmissionPolicy, "", ""),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: v1alpha1.VaultJobsAdmissionPolicy,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
}

// applyAdmission creates or updates the admission policy and its binding.
func applyAdmission(ctx context.Context, cs kubernetes.Interface) error {
	pc := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	want := VaultJobsPolicy()
	cur, err := pc.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = pc.Create(ctx, want, metav1.CreateOptions{})
	case err == nil:
		cur.Spec = want.Spec
		_, err = pc.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply ValidatingAdmissionPolicy %s: %w", want.Name, err)
	}
	bc := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
	wantB := VaultJobsPolicyBinding()
	curB, err := bc.Get(ctx, wantB.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = bc.Create(ctx, wantB, metav1.CreateOptions{})
	case err == nil:
		curB.Spec = wantB.Spec
		_, err = bc.Update(ctx, curB, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply ValidatingAdmissionPolicyBinding %s: %w", wantB.Name, err)
	}
	return nil
}

// Package trustedaccess gives a vault a least-privilege identity in a
// cluster, as Azure Backup's Trusted Access does for AKS: a service account
// in the extension's namespace, bound to ClusterRole arca-backup-operator
// (BackupJobs and RestoreJobs in arca-system only) and to a read-only role
// for prerequisite validation (never Secrets). The cluster's owner runs
// Enable with a cluster-admin kubeconfig; the vault receives the API
// server's address, CA and a short-lived TokenRequest token, and renews
// that token itself (Renew) with a permission to mint tokens for its own
// service account and no other. Disable deletes the bindings and the
// service account, which invalidates every token issued for it.
package trustedaccess

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Names shared with the extension (docs/security.md).
const (
	ManagedBy   = "arca-trusted-access"
	MinTokenTTL = 10 * time.Minute // the API server's minimum
)

// ServiceAccountName is the vault's identity in a cluster.
func ServiceAccountName(vault string) string { return "arca-vault-" + vault }

// namespaceRoleName is the Role in v1alpha1.ExtensionNamespace that lets the vault renew its
// own token and read the extension's health.
func namespaceRoleName(vault string) string { return "arca-vault-" + vault }

// OperatorRules are the rules of ClusterRole arca-backup-operator. It is
// granted only through a RoleBinding in v1alpha1.ExtensionNamespace, so it reaches no other
// namespace even though it is a ClusterRole (one definition, reused by
// every vault's binding).
func OperatorRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"backupjobs", "restorejobs"},
			Verbs: []string{"create", "get", "list", "watch", "update", "patch", "delete"}},
		{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"backupjobs/status", "restorejobs/status"}, Verbs: []string{"get"}},
		{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"storagelocations"}, Verbs: []string{"get", "list", "watch"}},
		// Questions about recovery points (contents, diff, files): asked,
		// read back and deleted; never updated. Their answers are sealed to
		// the asking vault's key, and admission binds them to the vault.
		{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"recoverypointqueries"}, Verbs: []string{"create", "get", "delete"}},
	}
}

// ReaderRules are what validation reads, cluster-wide. No Secrets, no
// ConfigMaps, no workloads.
func ReaderRules() []rbacv1.PolicyRule {
	ro := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "persistentvolumeclaims", "persistentvolumes"}, Verbs: ro},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses", "csidrivers"}, Verbs: ro},
		{APIGroups: []string{"snapshot.storage.k8s.io"}, Resources: []string{"volumesnapshotclasses"}, Verbs: ro},
		{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: ro},
		{NonResourceURLs: []string{"/version", "/api", "/api/*", "/apis", "/apis/*"}, Verbs: []string{"get"}},
	}
}

// namespaceRules: renew its own token (resourceNames pins it to the
// vault's own service account) and read the extension's deployment and
// heartbeat Lease.
func namespaceRules(vault string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}, ResourceNames: []string{ServiceAccountName(vault)}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get"}},
	}
}

// ErrNotClusterAdmin is returned when the caller of Enable or Disable
// cannot do everything in the cluster.
var ErrNotClusterAdmin = errors.New("the kubeconfig's user is not cluster-admin")

var labelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// CheckClusterAdmin asks the API server (SelfSubjectAccessReview) whether
// the caller may do every verb on every resource in every group.
func CheckClusterAdmin(ctx context.Context, cs kubernetes.Interface) error {
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("self subject access review: %w", err)
	}
	if !r.Status.Allowed {
		return fmt.Errorf("%w: trusted access is enabled by the cluster's owner (verb * on */* allowed); %s", ErrNotClusterAdmin, r.Status.Reason)
	}
	return nil
}

// Grant is what Enable created and the vault needs.
type Grant struct {
	Cluster        string
	Vault          string
	Server         string
	CAData         []byte
	Namespace      string
	ServiceAccount string
	Token          string
	TokenExpiresAt time.Time
	Objects        []string // kind/name of the objects created or updated
	// Policy is the vault's ClusterTrustPolicy as Enable left it.
	Policy v1alpha1.ClusterTrustPolicySpec
}

// EnableOptions configure Enable.
type EnableOptions struct {
	Vault    string        // vault name (a DNS label)
	Cluster  string        // the cluster's name in the vault
	TokenTTL time.Duration // default v1alpha1.VaultTokenTTL
	// Server overrides the API server URL given to the vault (default: the
	// kubeconfig's), e.g. when the vault reaches the cluster by another address.
	Server string
	// Policy changes the vault's ClusterTrustPolicy (created with
	// DefaultPolicy when it does not exist; otherwise only the fields set
	// here change).
	Policy PolicyOptions
}

func meta(name, ns, vault string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{v1alpha1.LabelManagedBy: ManagedBy, v1alpha1.LabelVault: vault}}
}

// Enable creates the vault's identity and bindings (idempotent: objects
// that exist are brought to the wanted rules) and issues its first token.
func Enable(ctx context.Context, cfg *rest.Config, o EnableOptions) (*Grant, error) {
	if !labelRE.MatchString(o.Vault) || !labelRE.MatchString(o.Cluster) || len(o.Vault) > 52 {
		return nil, fmt.Errorf("vault %q and cluster %q must be DNS labels (vault at most 52 characters)", o.Vault, o.Cluster)
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = v1alpha1.VaultTokenTTL
	}
	if o.TokenTTL < MinTokenTTL {
		return nil, fmt.Errorf("token lifetime %s: the API server's minimum is %s", o.TokenTTL, MinTokenTTL)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := CheckClusterAdmin(ctx, cs); err != nil {
		return nil, err
	}
	g := &Grant{Cluster: o.Cluster, Vault: o.Vault, Namespace: v1alpha1.ExtensionNamespace, ServiceAccount: ServiceAccountName(o.Vault)}
	sa := g.ServiceAccount
	note := func(kind, name string) { g.Objects = append(g.Objects, kind+"/"+name) }

	if _, err := cs.CoreV1().Namespaces().Get(ctx, v1alpha1.ExtensionNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ExtensionNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create namespace %s: %w", v1alpha1.ExtensionNamespace, err)
		}
		note("Namespace", v1alpha1.ExtensionNamespace)
	} else if err != nil {
		return nil, fmt.Errorf("read namespace %s: %w", v1alpha1.ExtensionNamespace, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(v1alpha1.ExtensionNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta(sa, v1alpha1.ExtensionNamespace, o.Vault),
		AutomountServiceAccountToken: new(bool)}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service account: %w", err)
	}
	note("ServiceAccount", v1alpha1.ExtensionNamespace+"/"+sa)

	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: v1alpha1.ExtensionNamespace}}
	if err := applyClusterRole(ctx, cs, v1alpha1.BackupOperatorRole, OperatorRules()); err != nil {
		return nil, err
	}
	note("ClusterRole", v1alpha1.BackupOperatorRole)
	if err := applyClusterRole(ctx, cs, v1alpha1.VaultReaderRole, ReaderRules()); err != nil {
		return nil, err
	}
	note("ClusterRole", v1alpha1.VaultReaderRole)
	if err := applyRole(ctx, cs, &rbacv1.Role{ObjectMeta: meta(namespaceRoleName(o.Vault), v1alpha1.ExtensionNamespace, o.Vault), Rules: namespaceRules(o.Vault)}); err != nil {
		return nil, err
	}
	note("Role", v1alpha1.ExtensionNamespace+"/"+namespaceRoleName(o.Vault))
	for _, rb := range []*rbacv1.RoleBinding{
		{ObjectMeta: meta(sa+"-operator", v1alpha1.ExtensionNamespace, o.Vault), Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: v1alpha1.BackupOperatorRole}},
		{ObjectMeta: meta(sa, v1alpha1.ExtensionNamespace, o.Vault), Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: namespaceRoleName(o.Vault)}},
	} {
		if err := applyRoleBinding(ctx, cs, rb); err != nil {
			return nil, err
		}
		note("RoleBinding", v1alpha1.ExtensionNamespace+"/"+rb.Name)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: meta(sa+"-reader", "", o.Vault), Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: v1alpha1.VaultReaderRole}}
	if err := applyClusterRoleBinding(ctx, cs, crb); err != nil {
		return nil, err
	}
	note("ClusterRoleBinding", crb.Name)

	// The owner's bound on the vault's jobs, and the admission policy that
	// makes every job the vault writes carry its name.
	if err := applyAdmission(ctx, cs); err != nil {
		return nil, err
	}
	note("ValidatingAdmissionPolicy", v1alpha1.VaultJobsAdmissionPolicy)
	note("ValidatingAdmissionPolicyBinding", v1alpha1.VaultJobsAdmissionPolicy)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	spec, err := applyPolicy(ctx, dyn, o.Vault, o.Policy)
	if err != nil {
		return nil, err
	}
	g.Policy = *spec
	note("ClusterTrustPolicy", o.Vault)

	tok, exp, err := issueToken(ctx, cs, sa, o.TokenTTL)
	if err != nil {
		return nil, err
	}
	g.Token, g.TokenExpiresAt = tok, exp
	g.Server = cfg.Host
	if o.Server != "" {
		g.Server = o.Server
	}
	g.CAData = cfg.CAData
	if len(g.CAData) == 0 && cfg.CAFile != "" {
		// rest.Config loaded from a kubeconfig file names the CA by path;
		// the vault needs the bytes.
		if err := rest.LoadTLSFiles(cfg); err == nil {
			g.CAData = cfg.CAData
		}
	}
	return g, nil
}

func issueToken(ctx context.Context, cs kubernetes.Interface, sa string, ttl time.Duration) (string, time.Time, error) {
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(v1alpha1.ExtensionNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token request for %s/%s: %w", v1alpha1.ExtensionNamespace, sa, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

func applyClusterRole(ctx context.Context, cs kubernetes.Interface, name string, rules []rbacv1.PolicyRule) error {
	c := cs.RbacV1().ClusterRoles()
	cur, err := c.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: meta(name, "", ""), Rules: rules}, metav1.CreateOptions{})
		return wrap("create ClusterRole "+name, err)
	}
	if err != nil {
		return wrap("read ClusterRole "+name, err)
	}
	cur.Rules = rules
	_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
	return wrap("update ClusterRole "+name, err)
}

func applyRole(ctx context.Context, cs kubernetes.Interface, r *rbacv1.Role) error {
	c := cs.RbacV1().Roles(r.Namespace)
	cur, err := c.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.Create(ctx, r, metav1.CreateOptions{})
		return wrap("create Role "+r.Name, err)
	}
	if err != nil {
		return wrap("read Role "+r.Name, err)
	}
	cur.Rules = r.Rules
	_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
	return wrap("update Role "+r.Name, err)
}

// applyRoleBinding creates or replaces a binding (roleRef is immutable, so
// a binding pointing elsewhere is recreated).
func applyRoleBinding(ctx context.Context, cs kubernetes.Interface, rb *rbacv1.RoleBinding) error {
	c := cs.RbacV1().RoleBindings(rb.Namespace)
	cur, err := c.Get(ctx, rb.Name, metav1.GetOptions{})
	if err == nil && cur.RoleRef != rb.RoleRef {
		if err := c.Delete(ctx, rb.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return wrap("replace RoleBinding "+rb.Name, err)
		}
		err = apierrors.NewNotFound(rbacv1.Resource("rolebindings"), rb.Name)
	}
	if apierrors.IsNotFound(err) {
		_, err = c.Create(ctx, rb, metav1.CreateOptions{})
		return wrap("create RoleBinding "+rb.Name, err)
	}
	if err != nil {
		return wrap("read RoleBinding "+rb.Name, err)
	}
	cur.Subjects = rb.Subjects
	_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
	return wrap("update RoleBinding "+rb.Name, err)
}

func applyClusterRoleBinding(ctx context.Context, cs kubernetes.Interface, crb *rbacv1.ClusterRoleBinding) error {
	c := cs.RbacV1().ClusterRoleBindings()
	cur, err := c.Get(ctx, crb.Name, metav1.GetOptions{})
	if err == nil && cur.RoleRef != crb.RoleRef {
		if err := c.Delete(ctx, crb.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return wrap("replace ClusterRoleBinding "+crb.Name, err)
		}
		err = apierrors.NewNotFound(rbacv1.Resource("clusterrolebindings"), crb.Name)
	}
	if apierrors.IsNotFound(err) {
		_, err = c.Create(ctx, crb, metav1.CreateOptions{})
		return wrap("create ClusterRoleBinding "+crb.Name, err)
	}
	if err != nil {
		return wrap("read ClusterRoleBinding "+crb.Name, err)
	}
	cur.Subjects = crb.Subjects
	_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
	return wrap("update ClusterRoleBinding "+crb.Name, err)
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Binding is one vault's trusted access as seen in the cluster.
type Binding struct {
	Vault          string   `json:"vault"`
	ServiceAccount string   `json:"serviceAccount"`
	Bindings       []string `json:"bindings"` // kind/name -> role
}

// List shows every vault's trusted access in the cluster.
func List(ctx context.Context, cfg *rest.Config) ([]Binding, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sel := metav1.ListOptions{LabelSelector: v1alpha1.LabelManagedBy + "=" + ManagedBy}
	sas, err := cs.CoreV1().ServiceAccounts(v1alpha1.ExtensionNamespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list service accounts in %s: %w", v1alpha1.ExtensionNamespace, err)
	}
	rbs, err := cs.RbacV1().RoleBindings(v1alpha1.ExtensionNamespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list role bindings: %w", err)
	}
	crbs, err := cs.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list cluster role bindings: %w", err)
	}
	var out []Binding
	for _, sa := range sas.Items {
		b := Binding{Vault: sa.Labels[v1alpha1.LabelVault], ServiceAccount: sa.Namespace + "/" + sa.Name}
		for _, rb := range rbs.Items {
			if rb.Labels[v1alpha1.LabelVault] == b.Vault {
				b.Bindings = append(b.Bindings, fmt.Sprintf("RoleBinding %s/%s → %s %s", rb.Namespace, rb.Name, rb.RoleRef.Kind, rb.RoleRef.Name))
			}
		}
		for _, crb := range crbs.Items {
			if crb.Labels[v1alpha1.LabelVault] == b.Vault {
				b.Bindings = append(b.Bindings, fmt.Sprintf("ClusterRoleBinding %s → ClusterRole %s", crb.Name, crb.RoleRef.Name))
			}
		}
		slices.Sort(b.Bindings)
		out = append(out, b)
	}
	return out, nil
}

// Disable revokes a vault's trusted access: its bindings, its Role and its
// service account (deleting the account invalidates every token issued
// for it). The shared ClusterRoles stay while other vaults use them; they
// grant nothing by themselves. Returns what was deleted.
func Disable(ctx context.Context, cfg *rest.Config, vault string) ([]string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := CheckClusterAdmin(ctx, cs); err != nil {
		return nil, err
	}
	sa := ServiceAccountName(vault)
	var gone []string
	del := func(kind, name string, fn func() error) error {
		err := fn()
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete %s %s: %w", kind, name, err)
		}
		gone = append(gone, kind+"/"+name)
		return nil
	}
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	steps := []error{
		del("RoleBinding", v1alpha1.ExtensionNamespace+"/"+sa+"-operator", func() error {
			return cs.RbacV1().RoleBindings(v1alpha1.ExtensionNamespace).Delete(ctx, sa+"-operator", opts)
		}),
		del("RoleBinding", v1alpha1.ExtensionNamespace+"/"+sa, func() error { return cs.RbacV1().RoleBindings(v1alpha1.ExtensionNamespace).Delete(ctx, sa, opts) }),
		del("ClusterRoleBinding", sa+"-reader", func() error { return cs.RbacV1().ClusterRoleBindings().Delete(ctx, sa+"-reader", opts) }),
		del("Role", v1alpha1.ExtensionNamespace+"/"+namespaceRoleName(vault), func() error {
			return cs.RbacV1().Roles(v1alpha1.ExtensionNamespace).Delete(ctx, namespaceRoleName(vault), opts)
		}),
		del("ServiceAccount", v1alpha1.ExtensionNamespace+"/"+sa, func() error { return cs.CoreV1().ServiceAccounts(v1alpha1.ExtensionNamespace).Delete(ctx, sa, opts) }),
		del("ClusterTrustPolicy", vault, func() error {
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return err
			}
			err = dyn.Resource(policyGVR).Delete(ctx, vault, opts)
			if apimeta.IsNoMatchError(err) || isNotServed(err) {
				return apierrors.NewNotFound(policyGVR.GroupResource(), vault)
			}
			return err
		}),
	}
	return gone, errors.Join(steps...)
}

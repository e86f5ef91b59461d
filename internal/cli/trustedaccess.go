package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- arca trusted-access ----

func newTrustedAccessCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trusted-access",
		Short: "Give a vault a least-privilege identity in a cluster (run by the cluster's owner)",
		Long: `Trusted access lets a vault create BackupJobs and RestoreJobs in the
extension's namespace (arca-system) and read what prerequisite validation
needs — and nothing else: no Secrets, no Pods, no other namespaces.

enable checks that the kubeconfig's user is cluster-admin, creates the
vault's service account and bindings, and registers the cluster with the
vault: API server URL, CA and a short-lived token, which the vault renews
itself. disable deletes them; the vault's jobs then fail with
TrustedAccessRevoked. docs/security.md describes the model.`,
	}
	cmd.AddCommand(newTrustedAccessEnableCommand(), newTrustedAccessListCommand(), newTrustedAccessDisableCommand())
	return cmd
}

// TrustedAccessOptions are the flags of trusted-access commands.
type TrustedAccessOptions struct {
	VaultClientOptions
	Kubeconfig, Context string
	Vault, Cluster      string
	Server              string
	TokenTTL            time.Duration
	Unregister          bool
	policy              policyFlags
}

// policyFlags are enable's flags that change the vault's ClusterTrustPolicy.
type policyFlags struct {
	namespaces, storageLocations                                                             []string
	clusterScoped, rbac, admission, modifiers, hooks, forget, prune, verification, vaultTier bool
}

func (p *policyFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringSliceVar(&p.namespaces, "allow-namespaces", nil, "namespaces (names or globs) the vault's jobs may back up and restore into; * reaches all but kube-system, kube-public, kube-node-lease and arca-system, which must be named (new policy: *)")
	fs.StringSliceVar(&p.storageLocations, "allow-storage-locations", nil, "StorageLocations the vault's jobs may use, * for all (new policy: those no other vault's policy names)")
	fs.BoolVar(&p.clusterScoped, "allow-cluster-scoped", false, "allow restores of cluster-scoped objects")
	fs.BoolVar(&p.rbac, "allow-rbac", false, "allow restores of Roles, RoleBindings, ClusterRoles, ClusterRoleBindings")
	fs.BoolVar(&p.admission, "allow-admission", false, "allow restores of webhook configurations, admission policies, APIServices")
	fs.BoolVar(&p.modifiers, "allow-resource-modifiers", false, "allow restores with resource modifiers")
	fs.BoolVar(&p.hooks, "allow-hooks", false, "allow backup and restore hooks")
	fs.BoolVar(&p.forget, "allow-forget", true, "allow forgetting recovery points (the vault's retention)")
	fs.BoolVar(&p.prune, "allow-prune", true, "allow pruning the repository after forgetting")
	fs.BoolVar(&p.vaultTier, "allow-vault-tier", true, "allow data-mover pods: vault-tier backups (volume data into the repository) and restores that ask for vault-tier data (a policy made before this flag existed has it off)")
	fs.BoolVar(&p.verification, "allow-verification", false, "allow verification jobs: restores into sandbox namespaces arca-verify-*, deleted afterwards (--allow-namespaces must reach them)")
}

// options are the changes the flags given ask for: an existing policy
// keeps every field whose flag was not given.
func (p *policyFlags) options(cmd *cobra.Command) trustedaccess.PolicyOptions {
	fs := cmd.Flags()
	var o trustedaccess.PolicyOptions
	if fs.Changed("allow-namespaces") {
		o.Namespaces = &p.namespaces
	}
	if fs.Changed("allow-storage-locations") {
		o.StorageLocations = &p.storageLocations
	}
	for _, f := range []struct {
		name string
		v    *bool
		to   **bool
	}{{"allow-cluster-scoped", &p.clusterScoped, &o.RestoreClusterScoped}, {"allow-rbac", &p.rbac, &o.RestoreRBAC},
		{"allow-admission", &p.admission, &o.RestoreAdmission}, {"allow-resource-modifiers", &p.modifiers, &o.ResourceModifiers},
		{"allow-hooks", &p.hooks, &o.Hooks}, {"allow-forget", &p.forget, &o.Forget}, {"allow-prune", &p.prune, &o.Prune},
		{"allow-verification", &p.verification, &o.Verification}, {"allow-vault-tier", &p.vaultTier, &o.VaultTier}} {
		if fs.Changed(f.name) {
			*f.to = f.v
		}
	}
	return o
}

func (o *TrustedAccessOptions) kubeFlags(cmd *cobra.Command, withVault bool) {
	fs := cmd.Flags()
	o.VaultClientOptions.AddFlags(fs)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "cluster-admin kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context")
	if withVault {
		fs.StringVar(&o.Vault, "vault", "", "the vault given access (its identity is service account arca-system/arca-vault-<vault>)")
		fs.StringVar(&o.Cluster, "cluster-name", "", "the cluster's name in the vault (what instances name in --cluster)")
	}
}

func newTrustedAccessEnableCommand() *cobra.Command {
	o := &TrustedAccessOptions{}
	cmd := &cobra.Command{
		Use:   "enable --kubeconfig K --vault V --cluster-name C",
		Short: "Create the vault's identity and bindings in the cluster and register the cluster with the vault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Vault == "" || o.Cluster == "" {
				return &UsageError{errors.New("--vault and --cluster-name are required")}
			}
			vc, err := o.client()
			if err != nil {
				return err
			}
			// Check the vault side first, so that a refused registration
			// does not leave an identity in the cluster nobody uses.
			scope := rbac.ClusterScope(o.Cluster)
			perm, err := vc.MyPermissions(cmd.Context(), scope)
			if err != nil {
				return err
			}
			if !slices.Contains(perm.Actions, rbac.ClustersWrite) {
				return fmt.Errorf("principal %q may not register clusters at %s in the vault (needs %s: Owner or Contributor there)", perm.Principal, scope, rbac.ClustersWrite)
			}
			cfg, err := kube.RESTConfig(kube.Options{Kubeconfig: o.Kubeconfig, Context: o.Context})
			if err != nil {
				return err
			}
			g, err := trustedaccess.Enable(cmd.Context(), cfg, trustedaccess.EnableOptions{Vault: o.Vault, Cluster: o.Cluster, TokenTTL: o.TokenTTL, Server: o.Server,
				Policy: o.policy.options(cmd)})
			if err != nil {
				return err
			}
			c, err := vc.RegisterCluster(cmd.Context(), service.ClusterRegistration{Name: g.Cluster, Server: g.Server, CAData: g.CAData,
				Namespace: g.Namespace, ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt})
			if err != nil {
				return fmt.Errorf("the cluster side is ready, but registering it with the vault failed (run enable again): %w", err)
			}
			w := cmd.OutOrStdout()
			if o.Output != "table" {
				return printOutput(w, o.Output, map[string]any{"cluster": c, "objects": g.Objects, "policy": g.Policy}, nil)
			}
			fmt.Fprintf(w, "trusted access enabled: vault %q → cluster %q as %s/%s\n", g.Vault, g.Cluster, g.Namespace, g.ServiceAccount)
			for _, obj := range g.Objects {
				fmt.Fprintf(w, "  %s\n", obj)
			}
			printTrustPolicy(w, g.Vault, g.Policy)
			fmt.Fprintf(w, "registered with the vault: server %s, token valid until %s (the vault renews it)\n", c.Server, vaultTime(g.TokenExpiresAt))
			return nil
		},
	}
	o.kubeFlags(cmd, true)
	cmd.Flags().DurationVar(&o.TokenTTL, "token-ttl", v1alpha1.VaultTokenTTL, "lifetime of each token the vault holds (at least 10m)")
	cmd.Flags().StringVar(&o.Server, "server", "", "API server URL the vault should use (default: the kubeconfig's)")
	o.policy.add(cmd)
	return cmd
}

// printTrustPolicy shows what the vault's jobs may do.
func printTrustPolicy(w io.Writer, vault string, p v1alpha1.ClusterTrustPolicySpec) {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(w, "ClusterTrustPolicy %s (the bound on the vault's jobs; change it with the --allow-* flags of enable):\n", vault)
	fmt.Fprintf(w, "  namespaces: %s\n  storage locations: %s\n", strings.Join(p.Namespaces, ","), strings.Join(p.StorageLocations, ","))
	fmt.Fprintf(w, "  restore cluster-scoped: %s, RBAC: %s, admission: %s; resource modifiers: %s; hooks: %s; forget: %s; prune: %s\n",
		yes(p.RestoreClusterScoped), yes(p.RestoreRBAC), yes(p.RestoreAdmission), yes(p.ResourceModifiers), yes(p.Hooks), yes(p.Forget), yes(p.Prune))
}

// trustedAccessRow is one line of `trusted-access list`.
type trustedAccessRow struct {
	Vault          string       `json:"vault"`
	ServiceAccount string       `json:"serviceAccount"`
	Bindings       []string     `json:"bindings"`
	Registered     []*regStatus `json:"registered,omitempty"`
}

type regStatus struct {
	Cluster        string     `json:"cluster"`
	State          string     `json:"state"`
	TokenExpiresAt *time.Time `json:"tokenExpiresAt,omitempty"`
}

func newTrustedAccessListCommand() *cobra.Command {
	o := &TrustedAccessOptions{}
	cmd := &cobra.Command{
		Use:   "list --kubeconfig K",
		Short: "Show each vault's identity and bindings in the cluster, and token expiry as the vault sees it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			cfg, err := kube.RESTConfig(kube.Options{Kubeconfig: o.Kubeconfig, Context: o.Context})
			if err != nil {
				return err
			}
			bs, err := trustedaccess.List(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			var clusters []*store.Cluster
			vaultNote := ""
			if o.Token != "" {
				vc, err := o.client()
				if err != nil {
					return err
				}
				if clusters, err = vc.ListClusters(cmd.Context()); err != nil {
					vaultNote = "vault: " + err.Error()
				}
			} else {
				vaultNote = "token expiry: pass --token (or ARCA_TOKEN) to read it from the vault"
			}
			rows := make([]trustedAccessRow, 0, len(bs))
			for _, b := range bs {
				row := trustedAccessRow{Vault: b.Vault, ServiceAccount: b.ServiceAccount, Bindings: b.Bindings}
				for _, c := range clusters {
					if c.Namespace+"/"+c.ServiceAccount == b.ServiceAccount {
						row.Registered = append(row.Registered, &regStatus{Cluster: c.Name, State: c.State, TokenExpiresAt: c.TokenExpiresAt})
					}
				}
				rows = append(rows, row)
			}
			return printTrustedAccess(cmd.OutOrStdout(), o.Output, rows, vaultNote)
		},
	}
	o.kubeFlags(cmd, false)
	return cmd
}

func printTrustedAccess(w io.Writer, format string, rows []trustedAccessRow, note string) error {
	err := printOutput(w, format, map[string]any{"items": rows}, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "VAULT\tSERVICE ACCOUNT\tBINDINGS\tCLUSTER\tSTATE\tTOKEN EXPIRES")
		for _, r := range rows {
			cl, state, exp := "-", "-", "-"
			if len(r.Registered) > 0 {
				reg := r.Registered[0]
				cl, state = reg.Cluster, reg.State
				if reg.TokenExpiresAt != nil {
					exp = vaultTime(*reg.TokenExpiresAt)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Vault, r.ServiceAccount, strings.Join(r.Bindings, "; "), cl, state, exp)
		}
	})
	if err == nil && format == "table" && note != "" {
		fmt.Fprintln(w, note)
	}
	return err
}

func newTrustedAccessDisableCommand() *cobra.Command {
	o := &TrustedAccessOptions{}
	cmd := &cobra.Command{
		Use:   "disable --kubeconfig K --vault V [--cluster-name C --unregister]",
		Short: "Revoke a vault's access to the cluster (bindings and service account deleted; its tokens stop working)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Vault == "" {
				return &UsageError{errors.New("--vault is required")}
			}
			if o.Unregister && o.Cluster == "" {
				return &UsageError{errors.New("--unregister needs --cluster-name")}
			}
			cfg, err := kube.RESTConfig(kube.Options{Kubeconfig: o.Kubeconfig, Context: o.Context})
			if err != nil {
				return err
			}
			gone, err := trustedaccess.Disable(cmd.Context(), cfg, o.Vault)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "trusted access of vault %q revoked; deleted:\n", o.Vault)
			for _, g := range gone {
				fmt.Fprintf(w, "  %s\n", g)
			}
			if len(gone) == 0 {
				fmt.Fprintln(w, "  nothing (it was not enabled)")
			}
			if o.Unregister {
				vc, err := o.client()
				if err != nil {
					return err
				}
				if err := vc.DeleteCluster(cmd.Context(), o.Cluster); err != nil {
					return fmt.Errorf("revoked in the cluster, but unregistering %q from the vault failed: %w", o.Cluster, err)
				}
				fmt.Fprintf(w, "cluster %q unregistered from the vault\n", o.Cluster)
			} else {
				fmt.Fprintln(w, "the vault keeps the registration: its jobs for this cluster fail with TrustedAccessRevoked until enable is run again")
			}
			return nil
		},
	}
	o.kubeFlags(cmd, true)
	cmd.Flags().BoolVar(&o.Unregister, "unregister", false, "also remove the cluster from the vault (needs --cluster-name and a vault token)")
	return cmd
}

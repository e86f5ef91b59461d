package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// QuickstartOptions are the flags of `arca quickstart`.
type QuickstartOptions struct {
	PolicyScope
	Extension         ExtensionOptions
	Cluster           string
	Policy, Schedule  string
	Retention         string
	Instance          string
	IncludeNamespaces []string
	SnapshotLocation  string
	SkipInstall       bool
	ExtensionTimeout  time.Duration
	NoBackup          bool
	// TrustPolicy changes the vault's ClusterTrustPolicy (the --allow-*
	// flags of trusted-access enable).
	TrustPolicy trustedaccess.PolicyOptions
	trust       policyFlags
}

func newQuickstartCommand() *cobra.Command {
	o := &QuickstartOptions{}
	cmd := &cobra.Command{
		Use:   "quickstart --kubeconfig K --storage URL",
		Short: "Protect a cluster in one command: vault, policy, extension, trusted access, roles, instance, first backup",
		Long: `quickstart does, in order, what a first protection of a cluster needs,
printing each step, and reuses whatever exists already (run it again safely):

  1. the vault (--vault, default "default") in the vault server at --vault-url
  2. a policy (--policy, default "default": daily at 02:00 UTC, kept --retention)
  3. the extension in the cluster, with --storage as its default storage location
  4. trusted access for the vault in the cluster, registered as --cluster-name
  5. the role assignments of the trust model (vault: Reader on the cluster;
     extension: Storage Contributor on the storage location)
  6. the backup instance (--instance, default the cluster name); the vault
     validates every prerequisite first and refuses with the failing checks
  7. a first backup, followed until it finishes (--no-backup skips it)

The vault URL, token and CA come from the flags, the environment or the
current context of the config file (arca config).`,
		Example: `  # a vault on this machine, a kind cluster, a local repository
  arca vault init && arca vault serve &
  export ARCA_TOKEN=…   # printed by arca vault init
  ARCA_PASSWORD=… arca quickstart --kubeconfig ~/.kube/config --storage file:///var/backups/arca

  # AKS with Azure Blob storage, only two namespaces
  arca quickstart --kubeconfig aks.yaml --cluster-name prod-aks \
    --storage azure://mystorage/backups/prod --azure-account-key "$KEY" \
    --password-file repo.pass --include-namespaces shop,payments`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Extension.flags = cmd.Flags()
			// One timeout for the extension: install's wait for its pod
			// uses --extension-timeout.
			o.Extension.Timeout = o.ExtensionTimeout
			o.TrustPolicy = o.trust.options(cmd)
			return RunQuickstart(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	o.PolicyScope.AddFlags(fs)
	o.Extension.addFlags(fs, true)
	fs.StringVar(&o.Cluster, "cluster-name", "", "the cluster's name in the vault (default: the kubeconfig context's cluster, else \"cluster\")")
	fs.StringVar(&o.Policy, "policy", "default", "policy to use, created when missing")
	fs.StringVar(&o.Schedule, "schedule", "0 2 * * *", "schedule of a policy created here")
	fs.StringVar(&o.Retention, "retention", "P7D", "default retention of a policy created here")
	fs.StringVar(&o.Instance, "instance", "", "backup instance name (default: the cluster name)")
	fs.StringSliceVar(&o.IncludeNamespaces, "include-namespaces", nil, "namespaces to protect (default: all)")
	fs.StringVar(&o.SnapshotLocation, "snapshot-location", "", "VolumeSnapshotClass for volume snapshots (default: each CSI driver's default class)")
	fs.BoolVar(&o.SkipInstall, "skip-install", false, "do not install or update the extension (it is installed already)")
	fs.DurationVar(&o.ExtensionTimeout, "extension-timeout", 5*time.Minute, "how long to wait for the extension to become healthy (its pod Ready, unless --wait=false: then a Deployment or an out-of-cluster runner's heartbeat)")
	fs.BoolVar(&o.NoBackup, "no-backup", false, "stop after creating the instance")
	o.trust.add(cmd)
	_ = fs.MarkHidden("timeout")
	return cmd
}

// quickstep prints a numbered step and its outcome.
type quickstep struct {
	w io.Writer
	n int
}

func (q *quickstep) do(name string, f func() (string, error)) error {
	q.n++
	fmt.Fprintf(q.w, "[%d] %s … ", q.n, name)
	start := time.Now()
	res, err := f()
	if err != nil {
		fmt.Fprintln(q.w, "FAILED")
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(q.w, "%s (%s)\n", res, time.Since(start).Round(10*time.Millisecond))
	return nil
}

func apiStatus(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status
	}
	return 0
}

// RunQuickstart runs `arca quickstart`.
func RunQuickstart(ctx context.Context, o *QuickstartOptions, stdout io.Writer) error {
	if o.Extension.Storage == "" {
		return &UsageError{errors.New("--storage is required: the repository URL, e.g. file:///var/backups/arca, azure://account/container/prefix or s3://bucket/prefix")}
	}
	if o.Output != "table" {
		return &UsageError{errors.New("quickstart prints steps; --output is not supported")}
	}
	spec := policy.Spec{Schedule: o.Schedule}
	spec.Retention.Default = &policy.RuleSpec{Duration: o.Retention, Datastore: policy.Operational}
	if _, err := policy.Parse(spec); err != nil {
		return &UsageError{err}
	}
	kcfg, err := o.Extension.config()
	if err != nil {
		return &UsageError{err}
	}
	if o.Cluster == "" {
		o.Cluster = contextClusterName(o.Extension.Kubeconfig, o.Extension.Context)
	}
	if o.Instance == "" {
		o.Instance = o.Cluster
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	q := &quickstep{w: stdout}
	storage := o.Extension.Storage

	if err := q.do(fmt.Sprintf("vault %q at %s", o.Vault, o.URL), func() (string, error) {
		if _, err := c.GetVault(ctx, o.Vault); err == nil {
			return "exists", nil
		} else if apiStatus(err) != 404 {
			return "", err
		}
		_, err := c.CreateVault(ctx, o.Vault, "created by arca quickstart")
		return "created", err
	}); err != nil {
		return err
	}
	if err := q.do(fmt.Sprintf("policy %q", o.Policy), func() (string, error) {
		if _, err := c.GetPolicy(ctx, o.Vault, o.Policy); err == nil {
			return "exists", nil
		} else if apiStatus(err) != 404 {
			return "", err
		}
		_, err := c.CreatePolicy(ctx, o.Vault, client.PolicyInput{Name: o.Policy, Schedule: spec.Schedule, Retention: spec.Retention})
		return fmt.Sprintf("created (%s, keep %s)", o.Schedule, o.Retention), err
	}); err != nil {
		return err
	}
	if !o.SkipInstall {
		if err := q.do("extension in namespace "+o.Extension.Namespace+" with storage "+storage, func() (string, error) {
			if err := RunExtensionInstall(ctx, &o.Extension, io.Discard); err != nil {
				return "", err
			}
			return "applied", nil
		}); err != nil {
			return err
		}
	}
	if err := q.do("wait until the extension is healthy (deployment available or a runner's heartbeat)", func() (string, error) {
		deadline := time.Now().Add(o.ExtensionTimeout)
		for {
			h, err := extension.Show(ctx, kcfg, o.Extension.Namespace, time.Now())
			if err == nil && h.Healthy {
				if h.Deployment == "available" {
					return "deployment available", nil
				}
				return "runner " + h.Leader + " heartbeating", nil
			}
			if time.Now().After(deadline) {
				if err == nil {
					err = fmt.Errorf("deployment %s, no fresh heartbeat", h.Deployment)
				}
				return "", fmt.Errorf("not healthy after %s (%w): arca extension show --kubeconfig …; kubectl -n %s get pods", o.ExtensionTimeout, err, o.Extension.Namespace)
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}); err != nil {
		return err
	}
	if err := q.do(fmt.Sprintf("trusted access for vault %q in cluster %q", o.Vault, o.Cluster), func() (string, error) {
		g, err := trustedaccess.Enable(ctx, kcfg, trustedaccess.EnableOptions{Vault: o.Vault, Cluster: o.Cluster, TokenTTL: v1alpha1.VaultTokenTTL,
			Policy: o.TrustPolicy})
		if err != nil {
			return "", err
		}
		if _, err := c.RegisterCluster(ctx, service.ClusterRegistration{Name: g.Cluster, Server: g.Server, CAData: g.CAData,
			Namespace: g.Namespace, ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt}); err != nil {
			return "", fmt.Errorf("register the cluster with the vault: %w", err)
		}
		return fmt.Sprintf("enabled as %s/%s, cluster registered", g.Namespace, g.ServiceAccount), nil
	}); err != nil {
		return err
	}
	// What the vault enforces of the identities acting for it
	// (service.BackupRequirements).
	roles := []struct{ principal, role, scope string }{
		{rbac.VaultIdentity(o.Vault), rbac.Reader, rbac.ClusterScope(o.Cluster)},
		{rbac.ExtensionIdentity(o.Cluster), rbac.StorageContributor, rbac.StorageScope(storage)},
	}
	if o.SnapshotLocation != "" {
		roles = append(roles, struct{ principal, role, scope string }{rbac.VaultIdentity(o.Vault), rbac.Reader, rbac.SnapshotScope(o.SnapshotLocation)},
			struct{ principal, role, scope string }{rbac.ClusterIdentity(o.Cluster), rbac.Contributor, rbac.SnapshotScope(o.SnapshotLocation)})
	}
	for _, ra := range roles {
		if err := q.do(fmt.Sprintf("role %s for %s at %s", ra.role, ra.principal, ra.scope), func() (string, error) {
			have, err := c.ListRoleAssignments(ctx, ra.scope, ra.principal)
			if err != nil {
				return "", err
			}
			for _, a := range have {
				if a.Role == ra.role && a.Principal == ra.principal {
					return "assigned already", nil
				}
			}
			_, err = c.AssignRole(ctx, ra.principal, ra.role, ra.scope)
			return "assigned", err
		}); err != nil {
			return err
		}
	}
	if err := q.do(fmt.Sprintf("backup instance %q (the vault validates the prerequisites)", o.Instance), func() (string, error) {
		if _, _, err := c.GetInstance(ctx, o.Vault, o.Instance); err == nil {
			return "exists", nil
		} else if apiStatus(err) != 404 {
			return "", err
		}
		var cfg json.RawMessage
		if len(o.IncludeNamespaces) > 0 {
			bc := v1alpha1.BackupConfiguration{IncludedNamespaces: o.IncludeNamespaces}
			if err := bc.Validate(); err != nil {
				return "", &UsageError{err}
			}
			if cfg, err = json.Marshal(bc); err != nil {
				return "", err
			}
		}
		in, err := c.CreateInstance(ctx, o.Vault, client.InstanceInput{Name: o.Instance, Cluster: o.Cluster, Policy: o.Policy,
			Config: cfg, StorageLocation: storage, SnapshotLocation: o.SnapshotLocation})
		if err != nil {
			return "", err
		}
		return "created, " + in.ProtectionState, nil
	}); err != nil {
		return err
	}
	if o.NoBackup {
		fmt.Fprintf(stdout, "\nDone. First backup: arca backup now %s --vault %s --wait\n", o.Instance, o.Vault)
		return nil
	}
	var job *store.Job
	if err := q.do("first backup", func() (string, error) {
		job, err = c.BackupNow(ctx, o.Vault, o.Instance, "")
		if err != nil {
			return "", err
		}
		return "job " + job.ID + " queued", nil
	}); err != nil {
		return err
	}
	if err := watchJob(ctx, c, o.Vault, job.ID, stdout, "table"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nProtected. Next:\n  arca recovery-point list --vault %s --instance %s\n  arca restore start --vault %s --recovery-point ID --target-cluster %s --wait\n",
		o.Vault, o.Instance, o.Vault, o.Cluster)
	return nil
}

// contextClusterName names a cluster after the kubeconfig context's cluster
// entry, made safe for the vault ("cluster" when there is none).
func contextClusterName(kubeconfig, context string) string {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	raw, err := rules.Load()
	if err != nil {
		return "cluster"
	}
	if context == "" {
		context = raw.CurrentContext
	}
	name := ""
	if c, ok := raw.Contexts[context]; ok {
		name = c.Cluster
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
	}
	if out := strings.Trim(b.String(), "-"); out != "" {
		return out
	}
	return "cluster"
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/prereq"
	"github.com/arca-backup/arca/internal/prereq/vaultaccess"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
)

// ValidateOptions are the flags shared by `instance validate` and
// `restore validate`.
type ValidateOptions struct {
	Kubeconfig, Context string
	AssignMissingRoles  bool
	VersionOverride     string
}

func (o *ValidateOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to check (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context")
	fs.BoolVar(&o.AssignMissingRoles, "assign-missing-roles", false, "create the missing role assignments of the trust model where you are Owner, and say which you could not")
	fs.StringVar(&o.VersionOverride, "kubernetes-version-override", "", "use this Kubernetes version instead of the API server's (testing)")
	_ = fs.MarkHidden("kubernetes-version-override")
}

func (o *ValidateOptions) cluster(name string) (prereq.Cluster, error) {
	cfg, err := kube.RESTConfig(kube.Options{Kubeconfig: o.Kubeconfig, Context: o.Context})
	if err != nil {
		return prereq.Cluster{}, err
	}
	return prereq.Cluster{Name: name, Config: cfg, VersionOverride: o.VersionOverride}, nil
}

// openStorage probes storage with the caller's credentials (environment
// variables, as for --repo).
func openStorage(ctx context.Context, url string) (storage.Backend, error) {
	return location.Open(ctx, url, location.Credentials{})
}

// ErrValidationFailed is returned (exit 1) when a prerequisite is not met.
var ErrValidationFailed = errors.New("prerequisites not met")

// validateOutput is the JSON/YAML form.
type validateOutput struct {
	*prereq.Report
	Assignments []prereq.Assignment `json:"assignments,omitempty"`
}

func finishValidation(ctx context.Context, w io.Writer, format string, o *ValidateOptions, r *prereq.Report, acc prereq.Access) error {
	var assigned []prereq.Assignment
	if o.AssignMissingRoles {
		assigned = prereq.AssignMissing(ctx, r, acc)
	}
	switch format {
	case "json", "yaml":
		b, err := json.MarshalIndent(validateOutput{Report: r, Assignments: assigned}, "", "  ")
		if err != nil {
			return err
		}
		if format == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
	default:
		if err := r.WriteTable(w); err != nil {
			return err
		}
		if o.AssignMissingRoles {
			if len(assigned) == 0 {
				fmt.Fprintln(w, "--assign-missing-roles: no role assignment was missing")
			}
			for _, a := range assigned {
				if a.Done {
					fmt.Fprintf(w, "assigned: %s to %s at %s\n", a.Fix.Role, a.Fix.Who, a.Fix.At)
				} else {
					fmt.Fprintf(w, "not assigned: %s to %s at %s: %s\n", a.Fix.Role, a.Fix.Who, a.Fix.At, a.Reason)
				}
			}
		}
	}
	if !r.Passed {
		return fmt.Errorf("%w: %d check(s) failed", ErrValidationFailed, len(r.Failures()))
	}
	return nil
}

// ---- arca instance validate ----

func newInstanceValidateCommand() *cobra.Command {
	o := &PolicyScope{}
	vo := &ValidateOptions{}
	cmd := &cobra.Command{
		Use:   "validate NAME --kubeconfig K [--assign-missing-roles]",
		Short: "Check every prerequisite of backing up an instance: table of check, result and remedy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			in, _, err := c.GetInstance(ctx, o.Vault, args[0])
			if err != nil {
				return err
			}
			var cfg v1alpha1.BackupConfiguration
			if len(in.Config) > 0 {
				if err := json.Unmarshal(in.Config, &cfg); err != nil {
					return fmt.Errorf("instance %s: backup configuration: %w", in.Name, err)
				}
			}
			cl, err := vo.cluster(in.Cluster)
			if err != nil {
				return err
			}
			acc := vaultaccess.API(c)
			r := prereq.ValidateBackup(ctx, prereq.BackupInput{Vault: o.Vault, Instance: in.Name, Cluster: cl, Config: cfg,
				StorageLocation: in.StorageLocation, SnapshotLocation: in.SnapshotLocation,
				OpenStorage: openStorage, Access: acc, Connections: acc})
			return finishValidation(ctx, cmd.OutOrStdout(), o.Output, vo, r, acc)
		},
	}
	o.AddFlags(cmd.Flags())
	vo.addFlags(cmd.Flags())
	return cmd
}

// ---- arca restore validate ----

func newRestoreValidateCommand() *cobra.Command {
	o := &RestoreStartOptions{}
	vo := &ValidateOptions{}
	var passwordFile string
	cmd := &cobra.Command{
		Use:   "validate --recovery-point ID --target-cluster C --kubeconfig K [--password-file F]",
		Short: "Check every prerequisite of a restore on the target cluster (with --password-file, also what the recovery point holds)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.RecoveryPoint == "" || o.TargetCluster == "" {
				return &UsageError{errors.New("--recovery-point and --target-cluster are required")}
			}
			critJSON, err := o.Criteria(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			var crit v1alpha1.RestoreCriteria
			if err := json.Unmarshal(critJSON, &crit); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			rp, err := c.GetRecoveryPoint(ctx, o.Vault, o.RecoveryPoint)
			if err != nil {
				return err
			}
			in, _, err := c.GetInstance(ctx, o.Vault, rp.Instance)
			if err != nil {
				return fmt.Errorf("instance %s of recovery point %s: %w", rp.Instance, rp.ID, err)
			}
			cl, err := vo.cluster(o.TargetCluster)
			if err != nil {
				return err
			}
			var content *prereq.Content
			if passwordFile != "" || os.Getenv(PasswordEnv) != "" {
				if content, err = recoveryPointContent(ctx, in.StorageLocation, passwordFile, rp.RepoID); err != nil {
					return err
				}
			}
			acc := vaultaccess.API(c)
			r := prereq.ValidateRestore(ctx, prereq.RestoreInput{Vault: o.Vault, RecoveryPoint: rp.ID, Target: cl, Criteria: crit,
				StorageLocation: in.StorageLocation, Content: content, OpenStorage: openStorage, Access: acc, Connections: acc})
			return finishValidation(ctx, cmd.OutOrStdout(), o.Output, vo, r, acc)
		},
	}
	o.AddFlags(cmd.Flags())
	vo.addFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&o.RecoveryPoint, "recovery-point", "", "recovery point ID (required)")
	fs.StringVar(&o.TargetCluster, "target-cluster", "", "cluster to restore into (required)")
	fs.StringVar(&o.CriteriaFile, "criteria", "", "restore criteria file (YAML or JSON, api/v1alpha1 RestoreCriteria)")
	fs.StringSliceVar(&o.IncludeNamespaces, "include-namespaces", nil, "namespaces to restore")
	fs.StringSliceVar(&o.ExcludeNamespaces, "exclude-namespaces", nil, "namespaces to leave out")
	fs.StringArrayVar(&o.NamespaceMappings, "namespace-mapping", nil, "restore namespace a into b (a=b; repeatable)")
	fs.StringVar(&o.Conflict, "conflict", "", "existing objects: skip (default) or patch")
	fs.BoolVar(&o.WithoutVolumeData, "without-volume-data", false, "restore PVCs without their data")
	fs.StringVar(&o.VolumeDataSource, "volume-data-source", "", "where claims' data comes from: auto (default: the snapshot while it exists and fits the target, else vault-tier data), snapshot or vault")
	fs.StringArrayVar(&o.VolumeDataSourceFor, "volume-data-source-for", nil, "the same for one claim of the recovery point: namespace/claim=auto|snapshot|vault (repeatable)")
	fs.BoolVar(&o.IncludeClusterResources, "include-cluster-resources", false, clusterResourcesRestoreHelp)
	fs.StringVar(&passwordFile, "password-file", "", "repository password file (default: $"+PasswordEnv+"); lets validation read what the recovery point holds")
	return cmd
}

// recoveryPointContent opens the repository and reads what restore
// validation needs from the recovery point.
func recoveryPointContent(ctx context.Context, url, passwordFile, repoID string) (*prereq.Content, error) {
	if repoID == "" {
		return nil, errors.New("the recovery point has no repository ID: its content cannot be checked")
	}
	ro := &RepoOptions{Repo: url, PasswordFile: passwordFile}
	r, err := ro.OpenReader(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rp, err := r.FindRecoveryPoint(ctx, repoID)
	if err != nil {
		return nil, fmt.Errorf("recovery point %s in %s: %w", repoID, url, err)
	}
	return prereq.ContentOf(ctx, r, rp)
}

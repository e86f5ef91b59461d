package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- arca instance ----

func newInstanceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "instance",
		Short: "Manage backup instances (protection of a cluster) in a vault",
	}
	cmd.AddCommand(newInstanceCreateCommand(), newInstanceUpdateCommand(), newInstanceListCommand(), newInstanceShowCommand(),
		newInstanceStopCommand(), newInstanceResumeCommand(), newInstanceDeleteCommand(), newInstanceValidateCommand(), newInstanceUndeleteCommand())
	return cmd
}

// InstanceOptions are the flags describing a backup instance.
type InstanceOptions struct {
	PolicyScope
	Cluster, Policy, Storage, SnapshotLocation, ConfigFile string
	IncludeNamespaces, ExcludeNamespaces, LabelSelectors   []string
	SkipValidation                                         bool
}

func (o *InstanceOptions) addInstanceFlags(fs *pflag.FlagSet, create bool) {
	o.PolicyScope.AddFlags(fs)
	if create {
		fs.StringVar(&o.Cluster, "cluster", "", "name of the protected cluster (required)")
	}
	fs.StringVar(&o.Policy, "policy", "", "backup policy")
	fs.StringVar(&o.Storage, "storage", "", "storage location: file:///path, azure://account/container[/prefix] or s3://bucket[/prefix]?endpoint=…")
	fs.StringVar(&o.SnapshotLocation, "snapshot-location", "", "VolumeSnapshotClass used for volume snapshots")
	fs.StringVar(&o.ConfigFile, "config", "", "backup configuration file (YAML or JSON, api/v1alpha1 BackupConfiguration)")
	fs.StringSliceVar(&o.IncludeNamespaces, "include-namespaces", nil, "namespaces to back up (overrides --config)")
	fs.StringSliceVar(&o.ExcludeNamespaces, "exclude-namespaces", nil, "namespaces to leave out (overrides --config)")
	fs.StringSliceVar(&o.LabelSelectors, "selector", nil, "label selectors (overrides --config)")
}

// vaultReadFile reads a YAML or JSON file into v, refusing unknown fields.
func vaultReadFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return &UsageError{err}
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		return &UsageError{fmt.Errorf("%s: %w", path, err)}
	}
	return nil
}

// config builds the backup configuration JSON; nil keeps the server's (on
// update) or means the default (on create).
func (o *InstanceOptions) config(fs *pflag.FlagSet) (json.RawMessage, error) {
	var cfg v1alpha1.BackupConfiguration
	set := false
	if o.ConfigFile != "" {
		if err := vaultReadFile(o.ConfigFile, &cfg); err != nil {
			return nil, err
		}
		set = true
	}
	if fs.Changed("include-namespaces") {
		cfg.IncludedNamespaces, set = o.IncludeNamespaces, true
	}
	if fs.Changed("exclude-namespaces") {
		cfg.ExcludedNamespaces, set = o.ExcludeNamespaces, true
	}
	if fs.Changed("selector") {
		cfg.LabelSelectors, set = o.LabelSelectors, true
	}
	if !set {
		return nil, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, &UsageError{fmt.Errorf("backup configuration: %w", err)}
	}
	return json.Marshal(cfg)
}

func newInstanceCreateCommand() *cobra.Command {
	o := &InstanceOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME --cluster C --policy P --storage URL",
		Short: "Configure protection: create a backup instance (its schedule starts at once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Cluster == "" || o.Policy == "" || o.Storage == "" {
				return &UsageError{fmt.Errorf("--cluster, --policy and --storage are required")}
			}
			cfg, err := o.config(cmd.Flags())
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			in, err := c.CreateInstance(cmd.Context(), o.Vault, client.InstanceInput{Name: args[0], Cluster: o.Cluster, Policy: o.Policy,
				Config: cfg, StorageLocation: o.Storage, SnapshotLocation: o.SnapshotLocation, SkipValidation: o.SkipValidation})
			if err != nil {
				return err
			}
			return printInstances(cmd.OutOrStdout(), o.Output, in, []*store.Instance{in})
		},
	}
	o.addInstanceFlags(cmd.Flags(), true)
	cmd.Flags().BoolVar(&o.SkipValidation, "skip-validation", false, "create even if the vault's prerequisite checks fail (see arca instance validate)")
	return cmd
}

func newInstanceUpdateCommand() *cobra.Command {
	o := &InstanceOptions{}
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change an instance's policy, storage, snapshot location or backup configuration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.config(cmd.Flags())
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			cur, etag, err := c.GetInstance(cmd.Context(), o.Vault, args[0])
			if err != nil {
				return err
			}
			in := client.InstanceInput{Policy: cur.Policy, Config: cur.Config, StorageLocation: cur.StorageLocation, SnapshotLocation: cur.SnapshotLocation}
			if o.Policy != "" {
				in.Policy = o.Policy
			}
			if o.Storage != "" {
				in.StorageLocation = o.Storage
			}
			if cmd.Flags().Changed("snapshot-location") {
				in.SnapshotLocation = o.SnapshotLocation
			}
			if cfg != nil {
				in.Config = cfg
			}
			// If-Match: someone else's change in between fails with 412
			// instead of being overwritten.
			upd, err := c.UpdateInstance(cmd.Context(), o.Vault, args[0], in, etag)
			if err != nil {
				return err
			}
			return printInstances(cmd.OutOrStdout(), o.Output, upd, []*store.Instance{upd})
		},
	}
	o.addInstanceFlags(cmd.Flags(), false)
	return cmd
}

func newInstanceListCommand() *cobra.Command {
	o := &PolicyScope{}
	var deleted string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List backup instances",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			list := c.ListInstances
			if deleted != "" {
				list = func(ctx context.Context, vault string) ([]*store.Instance, error) {
					return c.ListInstancesDeleted(ctx, vault, deleted)
				}
			}
			ins, err := list(cmd.Context(), o.Vault)
			if err != nil {
				return err
			}
			if ins == nil {
				ins = []*store.Instance{}
			}
			return printInstances(cmd.OutOrStdout(), o.Output, map[string]any{"items": ins}, ins)
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&deleted, "deleted", "", "soft-deleted instances too (include) or only them (only)")
	return cmd
}

func newInstanceShowCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a backup instance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			in, _, err := c.GetInstance(cmd.Context(), o.Vault, args[0])
			if err != nil {
				return err
			}
			if err := printInstances(cmd.OutOrStdout(), o.Output, in, []*store.Instance{in}); err != nil || o.Output != "table" {
				return err
			}
			// Storage used and the dedup ratio, from the vault's usage
			// (left out when the caller may not read it).
			u, err := c.VaultUsage(cmd.Context(), o.Vault)
			if err != nil {
				return nil
			}
			for _, iu := range u.Instances {
				if iu.Instance == in.Name {
					fmt.Fprintf(cmd.OutOrStdout(), "\nstorage used: %d bytes in %d recovery points (%d bytes of data), dedup ratio %s\n",
						iu.StoredBytes, iu.RecoveryPoints, iu.Bytes, dedupRatio(iu.DedupRatio))
				}
			}
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newInstanceStopCommand() *cobra.Command {
	o := &PolicyScope{}
	var mode string
	cmd := &cobra.Command{
		Use:   "stop NAME --mode retain-forever|retain-per-policy|delete-data",
		Short: "Stop protection, keeping recovery points forever, per policy, or deleting them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch mode {
			case store.StopRetainForever, store.StopRetainPerPolicy, store.StopDeleteData:
			default:
				return &UsageError{fmt.Errorf("--mode %q: want retain-forever, retain-per-policy or delete-data", mode)}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			in, job, err := c.StopProtection(cmd.Context(), o.Vault, args[0], mode)
			if err != nil {
				return err
			}
			if err := printInstances(cmd.OutOrStdout(), o.Output, in, []*store.Instance{in}); err != nil {
				return err
			}
			if in.ProtectionState == store.ProtectionSoftDeleted && (o.Output == "" || o.Output == "table") {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "the instance and its recovery points are soft-deleted; purged at %s unless undeleted (arca instance undelete %s)\n", vaultTimePtr(in.PurgeAt), in.Name)
				return err
			}
			if job == "" {
				return nil
			}
			if o.Output == "" || o.Output == "table" {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "recovery points are deleted by job %s (arca job show %s)\n", path.Base(job), path.Base(job))
			}
			return err
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&mode, "mode", "", "retain-forever, retain-per-policy or delete-data (required)")
	return cmd
}

func newInstanceResumeCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:   "resume NAME",
		Short: "Resume protection",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			in, err := c.ResumeProtection(cmd.Context(), o.Vault, args[0])
			if err != nil {
				return err
			}
			return printInstances(cmd.OutOrStdout(), o.Output, in, []*store.Instance{in})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newInstanceDeleteCommand() *cobra.Command {
	o := &PolicyScope{}
	var deleteData bool
	cmd := &cobra.Command{
		Use:   "delete NAME [--delete-data]",
		Short: "Delete a stopped instance that has no recovery points left, or with --delete-data together with them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			job, err := c.DeleteInstance(cmd.Context(), o.Vault, args[0], deleteData)
			if err != nil {
				return err
			}
			if job != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "backup instance %q and its recovery points are deleted by job %s (arca job show %s)\n", args[0], path.Base(job), path.Base(job))
				return nil
			}
			if deleteData {
				fmt.Fprintf(cmd.OutOrStdout(), "backup instance %q and its recovery points are soft-deleted; purged after the vault's soft-delete days unless undeleted (arca instance undelete %s)\n", args[0], args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup instance %q deleted\n", args[0])
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&deleteData, "delete-data", false, "delete the recovery points too (data in the cluster and repository, then the catalog), in a job")
	return cmd
}

func printInstances(w io.Writer, format string, v any, ins []*store.Instance) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tCLUSTER\tPOLICY\tPROTECTION\tSTORAGE")
		for _, in := range ins {
			state := in.ProtectionState
			if in.StopMode != "" {
				state += " (" + in.StopMode + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Name, in.Cluster, in.Policy, state, in.StorageLocation)
		}
	})
}

// ---- arca backup now ----

func newBackupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Run backups through the vault",
	}
	o := &PolicyScope{}
	var retention, to string
	var wait bool
	now := &cobra.Command{
		Use:   "now INSTANCE",
		Short: "Start an on-demand backup of a backup instance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			params := map[string]any{"retention": retention}
			switch to {
			case "", "snapshot":
			case "vault":
				params["vaultTier"] = true
			default:
				return &UsageError{fmt.Errorf("--to %q: want snapshot (the operational tier, the default) or vault (also move the volumes' data into the repository)", to)}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			j, err := c.BackupNowWith(cmd.Context(), o.Vault, args[0], params)
			if err != nil {
				return err
			}
			if wait {
				return vaultWaitJob(cmd, c, o, j)
			}
			return printJobs(cmd.OutOrStdout(), o.Output, j, []*store.Job{j})
		},
	}
	o.AddFlags(now.Flags())
	now.Flags().StringVar(&retention, "retention", "", "keep this recovery point for this ISO 8601 duration (default: the policy's default rule)")
	now.Flags().BoolVar(&wait, "wait", false, "wait until the job finishes; exit 1 if it fails")
	now.Flags().StringVar(&to, "to", "snapshot", "datastore: snapshot (volume snapshots only) or vault (also move the volumes' data into the repository: the vault tier)")
	cmd.AddCommand(now)
	return cmd
}

// ---- arca recovery-point ----

func newRecoveryPointCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "recovery-point",
		Aliases: []string{"rp"},
		Short:   "List and show recovery points in a vault, browse their contents, diff them, read the files of a vault-tier point",
	}
	lo := &PolicyScope{}
	var instance, deleted string
	list := &cobra.Command{
		Use:   "list",
		Short: "List recovery points, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lo.client()
			if err != nil {
				return err
			}
			rps, err := c.ListRecoveryPointsDeleted(cmd.Context(), lo.Vault, instance, deleted)
			if err != nil {
				return err
			}
			if rps == nil {
				rps = []*store.RecoveryPoint{}
			}
			return printRecoveryPoints(cmd.OutOrStdout(), lo.Output, map[string]any{"items": rps}, rps)
		},
	}
	lo.AddFlags(list.Flags())
	list.Flags().StringVar(&instance, "instance", "", "only this backup instance")
	list.Flags().StringVar(&deleted, "deleted", "", "soft-deleted points too (include) or only them (only)")
	so := &PolicyScope{}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a recovery point",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := so.client()
			if err != nil {
				return err
			}
			rp, err := c.GetRecoveryPoint(cmd.Context(), so.Vault, args[0])
			if err != nil {
				return err
			}
			if err := printRecoveryPoints(cmd.OutOrStdout(), so.Output, rp, []*store.RecoveryPoint{rp}); err != nil || so.Output != "table" {
				return err
			}
			printVerification(cmd.OutOrStdout(), rp)
			return nil
		},
	}
	so.AddFlags(show.Flags())
	cmd.AddCommand(list, show, newRecoveryPointContentsCommand(), newRecoveryPointVolumesCommand(), newRecoveryPointDiffCommand(), newRecoveryPointFilesCommand(),
		newRecoveryPointDeleteCommand(), newRecoveryPointUndeleteCommand(), newRecoveryPointVerifyCommand())
	return cmd
}

func printRecoveryPoints(w io.Writer, format string, v any, rps []*store.RecoveryPoint) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tINSTANCE\tTIME\tTAG\tOPERATIONAL\tVAULT\tEXPIRES\tITEMS\tCOPIES\tVERIFIED")
		for _, rp := range rps {
			exp := "never"
			if rp.ExpiresAt != nil {
				exp = vaultTime(*rp.ExpiresAt)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", rp.ID, rp.Instance, vaultTime(rp.Time), rp.Tag,
				tierCell(rp.Tiers.Operational, rp.ExpiresAt == nil), tierCell(rp.Tiers.Vault, rp.ExpiresAt == nil), exp, rp.Items, len(rp.Copies), verdictColumn(rp))
		}
	})
}

func vaultIssues(is []store.Issue) string {
	var parts []string
	for _, i := range is {
		parts = append(parts, i.Code)
	}
	return strings.Join(parts, ",")
}

// tierCell shows one tier of a recovery point: "-" when the point has no
// data there, "deleted" once it expired, else its rule and expiry
// ("daily→2026-01-31T02:00:00Z"); kept forever when the point is.
func tierCell(t *store.Tier, forever bool) string {
	switch {
	case t == nil:
		return "-"
	case t.State == store.TierDeleted:
		return "deleted"
	case forever || t.ExpiresAt == nil:
		return t.Rule + "→never"
	}
	return t.Rule + "→" + vaultTime(*t.ExpiresAt)
}

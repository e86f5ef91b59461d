package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/units"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- arca job ----

func newJobCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "List, show, watch and cancel vault jobs",
	}
	lo := &PolicyScope{}
	var f client.JobFilter
	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lo.client()
			if err != nil {
				return err
			}
			js, err := c.ListJobs(cmd.Context(), lo.Vault, f)
			if err != nil {
				return err
			}
			if js == nil {
				js = []*store.Job{}
			}
			return printJobs(cmd.OutOrStdout(), lo.Output, map[string]any{"items": js}, js)
		},
	}
	lo.AddFlags(list.Flags())
	list.Flags().StringVar(&f.Instance, "instance", "", "only jobs of this backup instance")
	list.Flags().StringVar(&f.Type, "type", "", "OnDemandBackup, ScheduledBackup, Restore or Retention")
	list.Flags().StringVar(&f.State, "state", "", "Queued, InProgress, Completed, CompletedWithWarnings, Failed or Cancelled")
	list.Flags().IntVar(&f.Limit, "limit", 0, "at most this many (1-1000)")

	so := &PolicyScope{}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a job with its sub-tasks, warnings and errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := so.client()
			if err != nil {
				return err
			}
			j, err := c.GetJob(cmd.Context(), so.Vault, args[0])
			if err != nil {
				return err
			}
			return printJobDetail(cmd.OutOrStdout(), so.Output, j)
		},
	}
	so.AddFlags(show.Flags())

	wo := &PolicyScope{}
	watch := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a job until it finishes; exit 1 if it fails",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := wo.client()
			if err != nil {
				return err
			}
			return vaultWaitJob(cmd, c, wo, &store.Job{ID: args[0]})
		},
	}
	wo.AddFlags(watch.Flags())

	co := &PolicyScope{}
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a Queued or InProgress job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client()
			if err != nil {
				return err
			}
			j, err := c.CancelJob(cmd.Context(), co.Vault, args[0])
			if err != nil {
				return err
			}
			return printJobDetail(cmd.OutOrStdout(), co.Output, j)
		},
	}
	co.AddFlags(cancel.Flags())
	cmd.AddCommand(list, show, watch, cancel)
	return cmd
}

// vaultPollInterval is how often --wait and job watch poll.
var vaultPollInterval = 2 * time.Second

// vaultWaitJob follows a job until it is terminal (progress.go).
func vaultWaitJob(cmd *cobra.Command, c *client.Client, o *PolicyScope, j *store.Job) error {
	return watchJob(cmd.Context(), c, o.Vault, j.ID, cmd.OutOrStdout(), o.Output)
}

func printJobs(w io.Writer, format string, v any, js []*store.Job) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tTYPE\tINSTANCE\tSTATE\tCREATED\tENDED\tCODES")
		for _, j := range js {
			end := "-"
			if j.EndedAt != nil {
				end = vaultTime(*j.EndedAt)
			}
			codes := vaultIssues(append(append([]store.Issue{}, j.Errors...), j.Warnings...))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Type, j.Instance, j.State, vaultTime(j.CreatedAt), end, codes)
		}
	})
}

func printJobDetail(w io.Writer, format string, j *store.Job) error {
	if format != "table" {
		return printOutput(w, format, j, nil)
	}
	if err := printJobs(w, format, j, []*store.Job{j}); err != nil {
		return err
	}
	for _, s := range j.SubTasks {
		fmt.Fprintf(w, "  sub-task %s: %s\n", s.Name, s.State)
	}
	if p := j.Progress; p != nil {
		fmt.Fprintf(w, "  progress: %s\n", Progress{ItemsDone: p.ItemsDone, ItemsTotal: p.ItemsTotal, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal}.totals())
		if p.BytesPerSecond > 0 && !store.JobStateTerminal(j.State) {
			fmt.Fprintf(w, "  rate: %s/s, ETA %s\n", units.Bytes(p.BytesPerSecond), fmtDuration(time.Duration(p.ETASeconds)*time.Second))
		}
		keys := make([]string, 0, len(p.Counts))
		for k := range p.Counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  count %s: %d\n", k, p.Counts[k])
		}
	}
	for _, x := range j.Warnings {
		fmt.Fprintf(w, "  warning %s: %s %s\n", x.Code, x.Message, x.Object)
	}
	for _, x := range j.Errors {
		fmt.Fprintf(w, "  error %s: %s %s\n", x.Code, x.Message, x.Object)
	}
	return nil
}

// ---- arca restore ----

// RestoreStartOptions are the flags of `restore start`.
type RestoreStartOptions struct {
	PolicyScope
	RecoveryPoint, TargetCluster, CriteriaFile, Conflict string
	NamespaceMappings                                    []string
	IncludeNamespaces, ExcludeNamespaces                 []string
	WithoutVolumeData, DryRun, Wait                      bool
	IncludeClusterResources                              bool
	// VolumeDataSource and VolumeDataSourceFor (namespace/claim=source)
	// choose snapshot or vault-tier data.
	VolumeDataSource    string
	VolumeDataSourceFor []string
}

// parseVolumeDataSource accepts auto, snapshot or vault in any case.
func parseVolumeDataSource(flag, s string) (v1alpha1.VolumeDataSource, error) {
	for _, v := range []v1alpha1.VolumeDataSource{v1alpha1.VolumeDataAuto, v1alpha1.VolumeDataSnapshot, v1alpha1.VolumeDataVault} {
		if strings.EqualFold(s, string(v)) {
			return v, nil
		}
	}
	return "", &UsageError{fmt.Errorf("%s %q: want auto, snapshot or vault", flag, s)}
}

// Criteria builds the restore criteria from the file and the flags.
func (o *RestoreStartOptions) Criteria(changed func(string) bool) (json.RawMessage, error) {
	var c v1alpha1.RestoreCriteria
	if o.CriteriaFile != "" {
		if err := vaultReadFile(o.CriteriaFile, &c); err != nil {
			return nil, err
		}
	}
	if changed("include-namespaces") {
		c.IncludedNamespaces = o.IncludeNamespaces
	}
	if changed("exclude-namespaces") {
		c.ExcludedNamespaces = o.ExcludeNamespaces
	}
	for _, m := range o.NamespaceMappings {
		from, to, ok := strings.Cut(m, "=")
		if !ok || from == "" || to == "" {
			return nil, &UsageError{fmt.Errorf("--namespace-mapping %q: want source=target", m)}
		}
		if c.NamespaceMappings == nil {
			c.NamespaceMappings = map[string]string{}
		}
		c.NamespaceMappings[from] = to
	}
	switch strings.ToLower(o.Conflict) {
	case "":
	case "skip":
		c.ConflictPolicy = v1alpha1.ConflictSkip
	case "patch":
		c.ConflictPolicy = v1alpha1.ConflictPatch
	default:
		return nil, &UsageError{fmt.Errorf("--conflict %q: want skip or patch", o.Conflict)}
	}
	if o.WithoutVolumeData {
		c.PersistentVolumeRestoreMode = v1alpha1.RestoreWithoutVolumeData
	}
	if o.VolumeDataSource != "" {
		v, err := parseVolumeDataSource("--volume-data-source", o.VolumeDataSource)
		if err != nil {
			return nil, err
		}
		c.VolumeDataSource = v
	}
	for _, f := range o.VolumeDataSourceFor {
		claim, src, ok := strings.Cut(f, "=")
		if !ok || claim == "" {
			return nil, &UsageError{fmt.Errorf("--volume-data-source-for %q: want namespace/claim=auto|snapshot|vault", f)}
		}
		v, err := parseVolumeDataSource("--volume-data-source-for "+claim, src)
		if err != nil {
			return nil, err
		}
		if c.VolumeDataSources == nil {
			c.VolumeDataSources = map[string]v1alpha1.VolumeDataSource{}
		}
		c.VolumeDataSources[claim] = v
	}
	if changed("include-cluster-resources") {
		c.IncludeClusterScopeResources = v1alpha1.Bool(o.IncludeClusterResources)
	}
	if o.DryRun {
		c.DryRun = true
	}
	if err := c.Validate(); err != nil {
		return nil, &UsageError{fmt.Errorf("restore criteria: %w", err)}
	}
	return json.Marshal(c)
}

func newRestoreCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore recovery points through the vault",
	}
	o := &RestoreStartOptions{}
	start := &cobra.Command{
		Use:   "start --recovery-point ID --target-cluster C",
		Short: "Restore a recovery point into a cluster (queues a Restore job)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.RecoveryPoint == "" || o.TargetCluster == "" {
				return &UsageError{fmt.Errorf("--recovery-point and --target-cluster are required")}
			}
			crit, err := o.Criteria(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			j, err := c.StartRestore(cmd.Context(), o.Vault, client.RestoreInput{RecoveryPoint: o.RecoveryPoint, TargetCluster: o.TargetCluster, Criteria: crit})
			if err != nil {
				return err
			}
			if o.Wait {
				return vaultWaitJob(cmd, c, &o.PolicyScope, j)
			}
			return printJobs(cmd.OutOrStdout(), o.Output, j, []*store.Job{j})
		},
	}
	o.AddFlags(start.Flags())
	fs := start.Flags()
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
	fs.BoolVar(&o.DryRun, "dry-run", false, "report what would be restored, write nothing")
	fs.BoolVar(&o.Wait, "wait", false, "wait until the job finishes; exit 1 if it fails")
	cmd.AddCommand(start, newRestoreValidateCommand())
	return cmd
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/diff"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/modifiers"
	"github.com/arca-backup/arca/internal/operations"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/selection"
	"github.com/arca-backup/arca/internal/units"
)

func newLocalCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Back up and restore a cluster in-process (kubeconfig + repository, no vault, no extension)",
	}
	cmd.AddCommand(newLocalBackupCommand(), newLocalRestoreCommand(), newLocalListCommand(), newLocalDiffCommand(), newLocalForgetCommand())
	return cmd
}

// LocalClusterOptions locate a cluster.
type LocalClusterOptions struct {
	Kubeconfig string
	Context    string
	QPS        float32
	Burst      int
}

func (o *LocalClusterOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context")
	fs.Float32Var(&o.QPS, "qps", kube.DefaultQPS, "client requests per second towards the API server")
	fs.IntVar(&o.Burst, "burst", kube.DefaultBurst, "client request burst")
}

func (o *LocalClusterOptions) config() (*rest.Config, error) {
	return kube.RESTConfig(kube.Options{Kubeconfig: o.Kubeconfig, Context: o.Context, QPS: o.QPS, Burst: o.Burst})
}

// clusterResourcesRestoreHelp describes --include-cluster-resources of
// every restore command.
const clusterResourcesRestoreHelp = "also restore cluster-scoped objects (ClusterRoles and their bindings, webhook configurations, CRDs, StorageClasses, …); " +
	"off by default: a restore writes namespaces and their contents only"

// filterFlags are the selection flags shared by backup and restore.
type filterFlags struct {
	includeNS, excludeNS       []string
	includeTypes, excludeTypes []string
	selectors                  []string
	includeCluster             bool
	includeSecrets             bool
}

func (f *filterFlags) addFlags(fs *pflag.FlagSet, secrets bool) {
	fs.StringSliceVar(&f.includeNS, "include-namespaces", nil, "namespaces or glob patterns to include (default all)")
	fs.StringSliceVar(&f.excludeNS, "exclude-namespaces", nil, "namespaces or glob patterns to exclude")
	fs.StringSliceVar(&f.includeTypes, "include-types", nil, "resource types to include, by resource or kind with optional group (deployments.apps, Secret)")
	fs.StringSliceVar(&f.excludeTypes, "exclude-types", nil, "resource types to exclude")
	fs.StringArrayVar(&f.selectors, "selector", nil, "label selector, requirements separated by ; or , (app=web;tier!=db;env in (a,b)); repeatable, AND-ed")
	if secrets {
		fs.BoolVar(&f.includeCluster, "include-cluster-resources", true, "include cluster-scoped resources")
		fs.BoolVar(&f.includeSecrets, "include-secrets", true, "include Secrets")
	} else {
		fs.BoolVar(&f.includeCluster, "include-cluster-resources", false, clusterResourcesRestoreHelp)
	}
}

// readConfigFile decodes a YAML or JSON file strictly into v.
func readConfigFile(file string, v any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return &UsageError{fmt.Errorf("read config: %w", err)}
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		return &UsageError{fmt.Errorf("config %s: %w", file, err)}
	}
	return nil
}

// --- backup ---

// LocalBackupOptions are the flags of `arca local backup`.
type LocalBackupOptions struct {
	RepoOptions
	LocalClusterOptions
	Config  string
	Name    string
	Output  string
	Workers int
	filters filterFlags
	flags   *pflag.FlagSet
	volumes volumeBackupFlags
}

func newLocalBackupCommand() *cobra.Command {
	o := &LocalBackupOptions{}
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up the cluster's resources into a repository (initialised on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.flags = cmd.Flags()
			return RunLocalBackup(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.RepoOptions.AddFlags(cmd.Flags())
	o.LocalClusterOptions.AddFlags(cmd.Flags())
	o.filters.addFlags(cmd.Flags(), true)
	cmd.Flags().StringVar(&o.Config, "config", "", "backup configuration file (YAML or JSON, fields of BackupConfiguration); flags override it")
	cmd.Flags().StringVar(&o.Name, "name", "", "name stored with the recovery point")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "output format: text, json or yaml")
	cmd.Flags().IntVar(&o.Workers, "workers", 4, "resource types listed at once")
	o.volumes.addFlags(cmd.Flags())
	return cmd
}

func changed(fs *pflag.FlagSet, name string) bool {
	return fs != nil && fs.Changed(name)
}

// BackupConfig merges the config file and the flags.
func (o *LocalBackupOptions) BackupConfig() (v1alpha1.BackupConfiguration, error) {
	var c v1alpha1.BackupConfiguration
	if o.Config != "" {
		if err := readConfigFile(o.Config, &c); err != nil {
			return c, err
		}
	}
	fs, f := o.flags, &o.filters
	if changed(fs, "include-namespaces") || (fs == nil && f.includeNS != nil) {
		c.IncludedNamespaces = f.includeNS
	}
	if changed(fs, "exclude-namespaces") || (fs == nil && f.excludeNS != nil) {
		c.ExcludedNamespaces = f.excludeNS
	}
	if changed(fs, "include-types") || (fs == nil && f.includeTypes != nil) {
		c.IncludedResourceTypes = f.includeTypes
	}
	if changed(fs, "exclude-types") || (fs == nil && f.excludeTypes != nil) {
		c.ExcludedResourceTypes = f.excludeTypes
	}
	if changed(fs, "selector") || (fs == nil && f.selectors != nil) {
		c.LabelSelectors = f.selectors
	}
	if changed(fs, "include-cluster-resources") {
		c.IncludeClusterScopeResources = v1alpha1.Bool(f.includeCluster)
	}
	if changed(fs, "include-secrets") {
		c.IncludeSecrets = v1alpha1.Bool(f.includeSecrets)
	}
	if changed(fs, "snapshot-volumes") {
		c.SnapshotVolumes = v1alpha1.Bool(o.volumes.snapshot)
	}
	if err := c.Validate(); err != nil {
		return c, &UsageError{fmt.Errorf("invalid backup configuration: %w", err)}
	}
	return c, nil
}

// BackupOutput is the JSON output of `arca local backup`.
type BackupOutput struct {
	ID       string            `json:"id"`
	Name     string            `json:"name,omitempty"`
	Items    int               `json:"items"`
	Bytes    int64             `json:"bytes"`
	Counts   map[string]int    `json:"counts"`
	Warnings []repo.Warning    `json:"warnings"`
	Stats    repo.WriterStats  `json:"stats"`
	Duration string            `json:"duration"`
	Repo     string            `json:"repository"`
	Source   repo.Source       `json:"source"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// RunLocalBackup runs `arca local backup`.
func RunLocalBackup(ctx context.Context, o *LocalBackupOptions, stdout, stderr io.Writer) error {
	o.Stderr = stderr // lock-wait reports
	if err := checkTextOutput(o.Output); err != nil {
		return err
	}
	cfg, err := o.BackupConfig()
	if err != nil {
		return err
	}
	if o.Repo == "" {
		return &UsageError{errors.New("--repo is required")}
	}
	if _, err := o.Password(); err != nil {
		return err
	}
	restCfg, err := o.config()
	if err != nil {
		return &UsageError{err}
	}
	var items, bytes atomic.Int64
	start := time.Now()
	stop := func() {}
	// The repository is opened only once the configuration is known to work.
	open := func(ctx context.Context) (*repo.Repository, error) {
		r, created, err := o.OpenOrInit(ctx)
		if err != nil {
			return nil, err
		}
		if created {
			fmt.Fprintf(stderr, "initialised repository %s\n", o.Repo)
		}
		stop = progressLines(stderr, func() string {
			return fmt.Sprintf("backed up %d objects, %s", items.Load(), units.Bytes(bytes.Load()))
		})
		return r, nil
	}
	res, err := operations.Backup(ctx, restCfg, open, operations.BackupOptions{Config: cfg, Name: o.Name, Workers: o.Workers,
		SnapshotClasses: o.volumes.classes, SnapshotTimeout: o.volumes.timeout,
		Progress: func(p operations.Progress) { items.Store(p.ItemsDone); bytes.Store(p.BytesDone) }})
	stop()
	if err != nil {
		var ce *backup.ConfigError
		if errors.As(err, &ce) {
			return &UsageError{err}
		}
		return err
	}
	rp := res.RecoveryPoint
	afterBackup(res, o.Output == "text", stderr)
	if o.Output != "text" {
		return printOutput(stdout, o.Output, BackupOutput{ID: res.ID.String(), Name: rp.Name, Items: rp.Summary.Items, Bytes: rp.Summary.Bytes,
			Counts: rp.Summary.Counts, Warnings: nonNil(rp.Summary.Warnings), Stats: res.Stats, Duration: time.Since(start).Round(time.Millisecond).String(),
			Repo: o.Repo, Source: rp.Source, Tags: rp.Tags}, nil)
	}
	for _, w := range rp.Summary.Warnings {
		fmt.Fprintf(stderr, "warning %s: %s\n", w.Code, w.Message)
	}
	fmt.Fprintf(stderr, "%d objects, %s in %s; %s new data stored\n", rp.Summary.Items, units.Bytes(rp.Summary.Bytes),
		time.Since(start).Round(time.Millisecond), units.Bytes(res.Stats.StoredBytes))
	_, err = fmt.Fprintln(stdout, res.ID.String())
	return err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// --- restore ---

// LocalRestoreOptions are the flags of `arca local restore`.
type LocalRestoreOptions struct {
	RepoOptions
	LocalClusterOptions
	RecoveryPoint     string
	Config            string
	Name              string
	Output            string
	Workers           int
	NamespaceMappings []string
	Conflict          string
	DryRun            bool
	ResourceModifiers string
	PreserveNodePorts bool
	filters           filterFlags
	flags             *pflag.FlagSet
	volumes           volumeRestoreFlags
	fallback          fallbackFlags
}

func newLocalRestoreCommand() *cobra.Command {
	o := &LocalRestoreOptions{}
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a recovery point's resources into the cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.flags = cmd.Flags()
			return RunLocalRestore(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	o.RepoOptions.AddFlags(fs)
	o.LocalClusterOptions.AddFlags(fs)
	o.filters.addFlags(fs, false)
	fs.StringVar(&o.RecoveryPoint, "recovery-point", "", "recovery point ID, unique prefix, or latest")
	fs.StringVar(&o.Config, "config", "", "restore criteria file (YAML or JSON, fields of RestoreCriteria); flags override it")
	fs.StringVar(&o.Name, "name", "", "restore name, put on restored objects as label arca.io/restore (default restore-<time>)")
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: text, json or yaml")
	fs.IntVar(&o.Workers, "workers", 16, "objects written at once within a tier")
	fs.StringSliceVar(&o.NamespaceMappings, "namespace-mapping", nil, "old=new[,old2=new2]: restore namespace old as new")
	fs.StringVar(&o.Conflict, "conflict", "skip", "existing objects: skip, or patch their mutable fields")
	fs.BoolVar(&o.DryRun, "dry-run", false, "report what would be created, patched, skipped or fail; write nothing")
	fs.StringVar(&o.ResourceModifiers, "resource-modifiers", "", "resource modifier rules file (YAML or JSON)")
	fs.BoolVar(&o.PreserveNodePorts, "preserve-node-ports", false, "keep Services' node ports instead of letting the cluster assign them")
	o.volumes.addFlags(fs)
	o.fallback.addFlags(fs)
	return cmd
}

// Criteria merges the config file and the flags.
func (o *LocalRestoreOptions) Criteria() (v1alpha1.RestoreCriteria, *modifiers.Modifiers, error) {
	var c v1alpha1.RestoreCriteria
	if o.Config != "" {
		if err := readConfigFile(o.Config, &c); err != nil {
			return c, nil, err
		}
	}
	fs, f := o.flags, &o.filters
	set := func(name string, isSet bool) bool { return changed(fs, name) || (fs == nil && isSet) }
	if set("include-namespaces", f.includeNS != nil) {
		c.IncludedNamespaces = f.includeNS
	}
	if set("exclude-namespaces", f.excludeNS != nil) {
		c.ExcludedNamespaces = f.excludeNS
	}
	if set("include-types", f.includeTypes != nil) {
		c.IncludedResourceTypes = f.includeTypes
	}
	if set("exclude-types", f.excludeTypes != nil) {
		c.ExcludedResourceTypes = f.excludeTypes
	}
	if set("selector", f.selectors != nil) {
		c.LabelSelectors = f.selectors
	}
	if changed(fs, "include-cluster-resources") {
		c.IncludeClusterScopeResources = v1alpha1.Bool(f.includeCluster)
	}
	if set("namespace-mapping", o.NamespaceMappings != nil) {
		m, err := selection.ParseMappings(o.NamespaceMappings)
		if err != nil {
			return c, nil, &UsageError{err}
		}
		c.NamespaceMappings = m
	}
	if set("conflict", o.Conflict != "") {
		switch strings.ToLower(o.Conflict) {
		case "skip":
			c.ConflictPolicy = v1alpha1.ConflictSkip
		case "patch":
			c.ConflictPolicy = v1alpha1.ConflictPatch
		default:
			return c, nil, &UsageError{fmt.Errorf("--conflict %q: want skip or patch", o.Conflict)}
		}
	}
	if o.DryRun {
		c.DryRun = true
	}
	if o.PreserveNodePorts {
		c.PreserveNodePorts = true
	}
	if o.volumes.withoutData {
		c.PersistentVolumeRestoreMode = v1alpha1.RestoreWithoutVolumeData
	}
	if set("storage-class-mapping", o.volumes.storageClassMapping != nil) {
		// Same syntax as namespace mappings; storage class names are DNS
		// subdomains (checked by Validate), which the namespace check would
		// refuse when they hold dots.
		m, err := parsePairs(o.volumes.storageClassMapping)
		if err != nil {
			return c, nil, &UsageError{fmt.Errorf("--storage-class-mapping: %w", err)}
		}
		c.StorageClassMappings = m
	}
	var mods *modifiers.Modifiers
	if o.ResourceModifiers != "" {
		m, rules, err := modifiers.Load(o.ResourceModifiers)
		if err != nil {
			return c, nil, &UsageError{err}
		}
		c.ResourceModifiers = rules
		mods = m
	}
	if err := c.Validate(); err != nil {
		return c, nil, &UsageError{fmt.Errorf("invalid restore criteria: %w", err)}
	}
	return c, mods, nil
}

// RunLocalRestore runs `arca local restore`. It returns the result even
// when items failed (with an error naming them).
func RunLocalRestore(ctx context.Context, o *LocalRestoreOptions, stdout, stderr io.Writer) error {
	o.Stderr = stderr // lock-wait reports
	if err := checkTextOutput(o.Output); err != nil {
		return err
	}
	crit, mods, err := o.Criteria()
	if err != nil {
		return err
	}
	if o.RecoveryPoint == "" {
		return &UsageError{errors.New("--recovery-point is required (an ID, a unique prefix, or latest)")}
	}
	if o.Repo == "" {
		return &UsageError{errors.New("--repo is required")}
	}
	restCfg, err := o.config()
	if err != nil {
		return &UsageError{err}
	}
	r, rp, err := o.fallback.openPoint(ctx, &o.RepoOptions, o.RecoveryPoint, stderr)
	if err != nil {
		return err
	}
	defer r.Close()
	var done, total atomic.Int64
	name := o.Name
	if name == "" {
		name = "restore-" + time.Now().UTC().Format("20060102-150405")
	}
	stop := progressLines(stderr, func() string { return fmt.Sprintf("restored %d of %d objects", done.Load(), total.Load()) })
	res, err := operations.Restore(ctx, restCfg, r, rp, operations.RestoreOptions{Criteria: crit, Modifiers: mods, Name: name, Workers: o.Workers,
		Progress: func(p operations.Progress) { done.Store(p.ItemsDone); total.Store(p.ItemsTotal) }})
	stop()
	var ce *restore.CriteriaError
	if errors.As(err, &ce) {
		return &UsageError{err}
	}
	if res == nil {
		return err
	}
	if o.Output != "text" {
		if werr := printOutput(stdout, o.Output, res, nil); werr != nil {
			return werr
		}
	} else {
		printRestore(stdout, res)
	}
	return err
}

func printRestore(w io.Writer, res *restore.Result) {
	mode := ""
	if res.DryRun {
		mode = " (dry run: nothing written)"
	}
	fmt.Fprintf(w, "restore %s of recovery point %s%s\n", res.Name, v1alpha1.ShortID(res.RecoveryPoint), mode)
	for _, a := range []restore.Action{restore.Created, restore.Patched, restore.Unchanged, restore.SkippedExists, restore.SkippedOwned, restore.SkippedVolume, restore.SkippedFiltered, restore.Failed} {
		if n := res.Summary[a]; n > 0 {
			fmt.Fprintf(w, "  %-16s %d\n", a, n)
		}
	}
	for _, wr := range res.Warnings {
		fmt.Fprintf(w, "warning %s: %s\n", wr.Code, wr.Message)
	}
	for it := range res.Items.All() {
		if it.Action == restore.SkippedVolume {
			fmt.Fprintf(w, "skipped %s: %s\n", it.Ref(), it.Reason)
		}
	}
	for _, it := range res.Failures() {
		fmt.Fprintf(w, "failed %s: %s\n", it.Ref(), it.Reason)
	}
}

// --- list ---

// LocalListOptions are the flags of `arca local list`.
type LocalListOptions struct {
	RepoOptions
	Output string
}

func newLocalListCommand() *cobra.Command {
	o := &LocalListOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the recovery points of a repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunLocalList(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.RepoOptions.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// RecoveryPointOutput is one recovery point in `arca local list --output json`.
type RecoveryPointOutput struct {
	ID       string            `json:"id"`
	Name     string            `json:"name,omitempty"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Items    int               `json:"items"`
	Bytes    int64             `json:"bytes"`
	Source   repo.Source       `json:"source"`
	Tags     map[string]string `json:"tags,omitempty"`
	Warnings []repo.Warning    `json:"warnings"`
}

// RunLocalList runs `arca local list`.
func RunLocalList(ctx context.Context, o *LocalListOptions, stdout io.Writer) error {
	if o.Output != "table" && o.Output != "json" && o.Output != "yaml" && o.Output != "text" {
		return &UsageError{fmt.Errorf("--output %q: want table, json or yaml", o.Output)}
	}
	if o.Repo == "" {
		return &UsageError{errors.New("--repo is required")}
	}
	r, err := o.OpenReader(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return err
	}
	if o.Output == "json" || o.Output == "yaml" {
		out := []RecoveryPointOutput{}
		for _, rp := range rps {
			out = append(out, RecoveryPointOutput{ID: rp.ID.String(), Name: rp.Name, Started: rp.Started, Finished: rp.Finished,
				Items: rp.Summary.Items, Bytes: rp.Summary.Bytes, Source: rp.Source, Tags: rp.Tags, Warnings: nonNil(rp.Summary.Warnings)})
		}
		if o.Output == "yaml" {
			return printOutput(stdout, "yaml", out, nil)
		}
		return writeJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFINISHED\tNAME\tITEMS\tSIZE\tWARNINGS\tCLUSTER")
	for _, rp := range rps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", v1alpha1.ShortID(rp.ID.String()), rp.Finished.UTC().Format(time.RFC3339), rp.Name,
			rp.Summary.Items, units.Bytes(rp.Summary.Bytes), len(rp.Summary.Warnings), rp.Source.Server)
	}
	return tw.Flush()
}

// --- diff ---

// LocalDiffOptions are the flags of `arca local diff`.
type LocalDiffOptions struct {
	RepoOptions
	LocalClusterOptions
	Output        string
	IncludeStatus bool
	Args          []string
}

func newLocalDiffCommand() *cobra.Command {
	o := &LocalDiffOptions{}
	cmd := &cobra.Command{
		Use:   "diff RP1 [RP2]",
		Short: "Show added, removed and changed objects between two recovery points, or a recovery point and the live cluster",
		Long: "With two recovery points, compares them. With one, compares it with the live cluster of --kubeconfig,\n" +
			"selected by the recovery point's own backup configuration.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Args = args
			return RunLocalDiff(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.RepoOptions.AddFlags(cmd.Flags())
	o.LocalClusterOptions.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "output format: text, json or yaml")
	cmd.Flags().BoolVar(&o.IncludeStatus, "status", false, "compare status fields too")
	return cmd
}

// RunLocalDiff runs `arca local diff`.
func RunLocalDiff(ctx context.Context, o *LocalDiffOptions, stdout io.Writer) error {
	if err := checkTextOutput(o.Output); err != nil {
		return err
	}
	if o.Repo == "" {
		return &UsageError{errors.New("--repo is required")}
	}
	r, err := o.OpenReader(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	a, err := r.FindRecoveryPoint(ctx, o.Args[0])
	if err != nil {
		return &UsageError{fmt.Errorf("recovery point %q: %w", o.Args[0], err)}
	}
	oldSide := diff.RecoveryPoint(a, r)
	var newSide diff.Side
	if len(o.Args) == 2 {
		b, err := r.FindRecoveryPoint(ctx, o.Args[1])
		if err != nil {
			return &UsageError{fmt.Errorf("recovery point %q: %w", o.Args[1], err)}
		}
		newSide = diff.RecoveryPoint(b, r)
	} else {
		var cfg v1alpha1.BackupConfiguration
		if len(a.Config) > 0 {
			if err := json.Unmarshal(a.Config, &cfg); err != nil {
				return fmt.Errorf("recovery point's backup configuration: %w", err)
			}
		}
		restCfg, err := o.config()
		if err != nil {
			return &UsageError{err}
		}
		newSide = diff.Cluster(restCfg, backup.Options{Config: cfg})
	}
	rep, err := diff.Compare(ctx, oldSide, newSide, diff.Options{IncludeStatus: o.IncludeStatus})
	if err != nil {
		return err
	}
	if o.Output != "text" {
		return printOutput(stdout, o.Output, rep, nil)
	}
	diff.Print(stdout, rep)
	return nil
}

// --- helpers ---

// checkTextOutput accepts the formats of commands that print text, JSON or
// YAML (the YAML form is the JSON one converted: same fields).
func checkTextOutput(o string) error {
	if o != "text" && o != "json" && o != "yaml" {
		return &UsageError{fmt.Errorf("--output %q: want text, json or yaml", o)}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progressLines prints line() to w every few seconds until stop is called.
func progressLines(w io.Writer, line func() string) (stop func()) {
	done := make(chan struct{})
	t := time.NewTicker(3 * time.Second)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(w, line())
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

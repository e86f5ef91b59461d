package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/units"
)

// RepoCommonOptions are the flags of every `arca repo` subcommand.
type RepoCommonOptions struct {
	RepoOptions
	Output string // table, json or yaml
}

func (o *RepoCommonOptions) addFlags(fs *pflag.FlagSet) {
	o.RepoOptions.AddFlags(fs)
	fs.StringVarP(&o.Output, "output", "o", "table", "output format: table, json or yaml")
}

func (o *RepoCommonOptions) validate() error { return checkOutput(o.Output) }

// structured tells whether the output is JSON or YAML rather than a table.
func (o *RepoCommonOptions) structured() bool { return o.Output != "table" }

// print writes v as JSON or YAML (the YAML form is the JSON one converted:
// same fields).
func (o *RepoCommonOptions) print(w io.Writer, v any) error { return printOutput(w, o.Output, v, nil) }

func newRepoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Create and maintain a backup repository (init, check, prune, forget, stats, unlock, key, rebuild-index, copy)",
	}
	cmd.AddCommand(newRepoInitCommand(), newRepoCheckCommand(), newRepoPruneCommand(),
		newRepoStatsCommand(), newRepoForgetCommand(), newRepoUnlockCommand(), newRepoKeyCommand(),
		newRepoRebuildIndexCommand(), newRepoCopyCommand())
	return cmd
}

// --- init ---

func newRepoInitCommand() *cobra.Command {
	o := &RepoCommonOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRepoInit(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// RunRepoInit creates a repository at o.Repo.
func RunRepoInit(ctx context.Context, o *RepoCommonOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	pw, err := o.Password()
	if err != nil {
		return err
	}
	be, err := o.Backend(ctx, true)
	if err != nil {
		return err
	}
	r, err := repo.Init(ctx, be, pw)
	if err != nil {
		return fmt.Errorf("init repository %s: %w", o.Repo, err)
	}
	if o.structured() {
		return o.print(stdout, map[string]any{"repository": o.Repo, "id": r.Config().ID})
	}
	_, err = fmt.Fprintf(stdout, "created repository %s at %s\n", r.Config().ID.Short(), be.Location())
	return err
}

// --- check ---

// RepoCheckOptions are the flags of `arca repo check`.
type RepoCheckOptions struct {
	RepoCommonOptions
	ReadData bool
}

func newRepoCheckCommand() *cobra.Command {
	o := &RepoCheckOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the repository; name damaged files and the recovery points they affect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRepoCheck(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.ReadData, "read-data", false, "read and verify every blob (reads the whole repository)")
	return cmd
}

// ErrRepoDamaged is returned by check when it found damage (exit code 1).
var ErrRepoDamaged = errors.New("repository is damaged")

// RunRepoCheck runs check and prints the report.
func RunRepoCheck(ctx context.Context, o *RepoCheckOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	r, err := o.OpenReader(ctx)
	if err != nil {
		return err
	}
	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: o.ReadData})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if o.structured() {
		if rep.Damaged == nil {
			rep.Damaged = []repo.DamagedFile{}
		}
		if rep.Affected == nil {
			rep.Affected = []repo.ID{}
		}
		if err := o.print(stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "checked %d recovery points, %d index files, %d packs, %d blobs (read data: %v)\n",
			rep.RecoveryPoints, rep.IndexFiles, rep.Packs, rep.Blobs, o.ReadData)
		if rep.UnreferencedPacks > 0 {
			fmt.Fprintf(stdout, "%d unreferenced packs (not damage; prune removes them)\n", rep.UnreferencedPacks)
		}
		for _, d := range rep.Damaged {
			var ids []string
			for _, id := range d.RecoveryPoints {
				ids = append(ids, id.Short())
			}
			affected := "none"
			if len(ids) > 0 {
				affected = strings.Join(ids, ", ")
			}
			fmt.Fprintf(stdout, "DAMAGED %s: %s\n  affected recovery points: %s\n", d.File, d.Problem, affected)
		}
		if rep.OK() {
			fmt.Fprintln(stdout, "no errors found")
		}
	}
	if !rep.OK() {
		return fmt.Errorf("%w: %d damaged files, %d recovery points affected", ErrRepoDamaged, len(rep.Damaged), len(rep.Affected))
	}
	return nil
}

// --- prune ---

// RepoPruneOptions are the flags of `arca repo prune`.
type RepoPruneOptions struct {
	RepoCommonOptions
	MaxUnused float64
	DryRun    bool
}

func newRepoPruneCommand() *cobra.Command {
	o := &RepoPruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove data no recovery point references (exclusive lock)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRepoPrune(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().Float64Var(&o.MaxUnused, "max-unused", 0, "repack packs whose unused share exceeds this fraction (0–1)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "report what would be removed; change nothing")
	return cmd
}

// RunRepoPrune prunes the repository.
func RunRepoPrune(ctx context.Context, o *RepoPruneOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.MaxUnused < 0 || o.MaxUnused > 1 {
		return &UsageError{fmt.Errorf("--max-unused %v: want a fraction between 0 and 1", o.MaxUnused)}
	}
	r, err := o.Open(ctx)
	if err != nil {
		return err
	}
	rep, err := r.Prune(ctx, repo.PruneOptions{MaxUnusedFraction: o.MaxUnused, DryRun: o.DryRun})
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if o.structured() {
		return o.print(stdout, rep)
	}
	verb := "removed"
	if o.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(stdout, "%s %d packs, repacked %d into %d; %d blobs used, %d removed\n",
		verb, rep.PacksRemoved, rep.PacksRepacked, rep.PacksWritten, rep.BlobsUsed, rep.BlobsRemoved)
	_, err = fmt.Fprintf(stdout, "packs: %d → %d, %s → %s\n", rep.PacksBefore, rep.PacksAfter, units.Bytes(rep.BytesBefore), units.Bytes(rep.BytesAfter))
	if err == nil && rep.PacksRetained+rep.IndexFilesRetained > 0 {
		_, err = fmt.Fprintf(stdout, "left %d unused packs and %d index files the storage's object lock retains (until %s at the latest); a later prune removes them\n",
			rep.PacksRetained, rep.IndexFilesRetained, rep.RetainedUntil.UTC().Format(time.RFC3339))
	}
	return err
}

// --- stats ---

func newRepoStatsCommand() *cobra.Command {
	o := &RepoCommonOptions{}
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show sizes: logical, unique, stored; dedup and compression ratios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRepoStats(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// RunRepoStats prints repository statistics.
func RunRepoStats(ctx context.Context, o *RepoCommonOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	r, err := o.OpenReader(ctx)
	if err != nil {
		return err
	}
	st, err := r.Stats(ctx)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	if o.structured() {
		return o.print(stdout, st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "recovery points\t%d\n", st.RecoveryPoints)
	fmt.Fprintf(tw, "blobs\t%d (%d data, %d tree)\n", st.Blobs, st.DataBlobs, st.TreeBlobs)
	fmt.Fprintf(tw, "packs\t%d\n", st.Packs)
	fmt.Fprintf(tw, "index files\t%d\n", st.IndexFiles)
	fmt.Fprintf(tw, "keys\t%d\n", st.Keys)
	fmt.Fprintf(tw, "logical size\t%s\n", units.Bytes(st.LogicalBytes))
	fmt.Fprintf(tw, "unique size\t%s\n", units.Bytes(st.UniqueBytes))
	fmt.Fprintf(tw, "stored size\t%s\n", units.Bytes(st.StoredBytes))
	fmt.Fprintf(tw, "dedup ratio\t%.2f\n", st.DedupRatio)
	fmt.Fprintf(tw, "compression ratio\t%.2f\n", st.CompressionRatio)
	return tw.Flush()
}

// --- forget ---

// RepoForgetOptions are the flags of `arca repo forget`.
type RepoForgetOptions struct {
	RepoCommonOptions
	Policy     repo.RetentionPolicy
	KeepWithin string
	DryRun     bool
	Prune      bool
}

func newRepoForgetCommand() *cobra.Command {
	o := &RepoForgetOptions{}
	cmd := &cobra.Command{
		Use:   "forget [ID|PREFIX ...]",
		Short: "Remove recovery points by ID or by --keep-* rules (data goes at the next prune)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunRepoForget(cmd.Context(), o, args, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.IntVar(&o.Policy.KeepLast, "keep-last", 0, "keep the N newest recovery points")
	fs.IntVar(&o.Policy.KeepHourly, "keep-hourly", 0, "keep the newest of each of the last N hours")
	fs.IntVar(&o.Policy.KeepDaily, "keep-daily", 0, "keep the newest of each of the last N days")
	fs.IntVar(&o.Policy.KeepWeekly, "keep-weekly", 0, "keep the newest of each of the last N weeks")
	fs.IntVar(&o.Policy.KeepMonthly, "keep-monthly", 0, "keep the newest of each of the last N months")
	fs.IntVar(&o.Policy.KeepYearly, "keep-yearly", 0, "keep the newest of each of the last N years")
	fs.StringVar(&o.KeepWithin, "keep-within", "", "keep every recovery point younger than this (e.g. 36h, 14d)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "show what would be forgotten")
	fs.BoolVar(&o.Prune, "prune", false, "prune after forgetting")
	return cmd
}

// parseRepoDuration accepts Go durations plus a "d" (days) suffix.
func parseRepoDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// RunRepoForget forgets the recovery points named in ids, or those the
// --keep-* rules do not keep.
func RunRepoForget(ctx context.Context, o *RepoForgetOptions, ids []string, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.KeepWithin != "" {
		d, err := parseRepoDuration(o.KeepWithin)
		if err != nil {
			return &UsageError{fmt.Errorf("--keep-within: %w", err)}
		}
		o.Policy.KeepWithin = d
	}
	if len(ids) > 0 && !o.Policy.Empty() {
		return &UsageError{errors.New("give recovery point IDs or --keep-* rules, not both")}
	}
	if len(ids) == 0 && o.Policy.Empty() {
		return &UsageError{errors.New("nothing to forget: give recovery point IDs or at least one --keep-* rule")}
	}
	r, err := o.Open(ctx)
	if err != nil {
		return err
	}
	var decisions []repo.RetentionDecision
	if len(ids) > 0 {
		var forget []repo.ID
		for _, ref := range ids {
			if ref == "latest" {
				return &UsageError{errors.New(`refusing to forget "latest" by name; give its ID`)}
			}
			rp, err := r.FindRecoveryPoint(ctx, ref)
			if err != nil {
				return err
			}
			forget = append(forget, rp.ID)
			decisions = append(decisions, repo.RetentionDecision{RecoveryPoint: rp, ID: rp.ID})
		}
		if !o.DryRun {
			if err := r.Forget(ctx, forget); err != nil {
				return err
			}
		}
	} else {
		// Rules count per backup instance (its vault and instance tags);
		// points without them, per source cluster.
		decisions, err = r.ForgetByPolicy(ctx, o.Policy, repo.GroupByTags(v1alpha1.TagVault, v1alpha1.TagInstance), o.DryRun)
		if err != nil {
			return err
		}
	}
	if o.structured() {
		if decisions == nil {
			decisions = []repo.RetentionDecision{}
		}
		if err := o.print(stdout, decisions); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTARTED\tGROUP\tNAME\tACTION\tREASONS")
		for _, d := range decisions {
			action := "forget"
			if d.Keep {
				action = "keep"
			} else if o.DryRun {
				action = "would forget"
			}
			rp := d.RecoveryPoint
			group := d.Group
			if group == "" { // forget by ID: no rules counted
				group = "cluster=" + rp.Source.Cluster
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID.Short(), rp.Started.UTC().Format(time.RFC3339),
				group, rp.Name, action, strings.Join(d.Reasons, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if o.Prune && !o.DryRun {
		rep, err := r.Prune(ctx, repo.PruneOptions{})
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		if !o.structured() {
			fmt.Fprintf(stdout, "pruned: removed %d packs, repacked %d; %s → %s\n",
				rep.PacksRemoved, rep.PacksRepacked, units.Bytes(rep.BytesBefore), units.Bytes(rep.BytesAfter))
		}
	}
	return nil
}

// --- unlock ---

// RepoUnlockOptions are the flags of `arca repo unlock`.
type RepoUnlockOptions struct {
	RepoCommonOptions
	RemoveAll bool
	DryRun    bool
}

func newRepoUnlockCommand() *cobra.Command {
	o := &RepoUnlockOptions{}
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Remove stale locks (left by crashed processes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRepoUnlock(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.RemoveAll, "remove-all", false, "remove every lock, even live ones (only when no other process uses the repository)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "list stale locks without removing them")
	return cmd
}

// RunRepoUnlock removes stale (or all) locks.
func RunRepoUnlock(ctx context.Context, o *RepoUnlockOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	r, err := o.Open(ctx)
	if err != nil {
		return err
	}
	if o.RemoveAll {
		n, err := r.RemoveAllLocks(ctx)
		if err != nil {
			return err
		}
		if o.structured() {
			return o.print(stdout, map[string]int{"removed": n})
		}
		_, err = fmt.Fprintf(stdout, "removed %d locks\n", n)
		return err
	}
	stale, err := r.Unlock(ctx, !o.DryRun)
	if err != nil {
		return err
	}
	if o.structured() {
		if stale == nil {
			stale = []repo.LockInfo{}
		}
		return o.print(stdout, stale)
	}
	verb := "removed"
	if o.DryRun {
		verb = "stale"
	}
	for _, l := range stale {
		fmt.Fprintf(stdout, "%s lock %s (host %s, pid %d, %s)\n", verb, l.ID.Short(), l.Hostname, l.PID, l.Time.UTC().Format(time.RFC3339))
	}
	_, err = fmt.Fprintf(stdout, "%d stale locks\n", len(stale))
	return err
}

// --- key ---

// RepoKeyOptions are the flags of `arca repo key …`.
type RepoKeyOptions struct {
	RepoCommonOptions
	NewPasswordFile string
}

func newRepoKeyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage the passwords (keys) of a repository"}
	list := &RepoKeyOptions{}
	listCmd := &cobra.Command{
		Use: "list", Short: "List keys", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return RunRepoKeyList(c.Context(), list, c.OutOrStdout()) },
	}
	list.addFlags(listCmd.Flags())
	add := &RepoKeyOptions{}
	addCmd := &cobra.Command{
		Use: "add", Short: "Add a key for the password in --new-password-file", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return RunRepoKeyAdd(c.Context(), add, c.OutOrStdout()) },
	}
	add.addFlags(addCmd.Flags())
	addCmd.Flags().StringVar(&add.NewPasswordFile, "new-password-file", "", "file holding the new password")
	rm := &RepoKeyOptions{}
	rmCmd := &cobra.Command{
		Use: "remove ID", Short: "Remove a key (never the last one, nor the one in use)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return RunRepoKeyRemove(c.Context(), rm, args[0], c.OutOrStdout())
		},
	}
	rm.addFlags(rmCmd.Flags())
	cmd.AddCommand(listCmd, addCmd, rmCmd)
	return cmd
}

// RunRepoKeyList lists keys.
func RunRepoKeyList(ctx context.Context, o *RepoKeyOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	r, err := o.OpenReader(ctx)
	if err != nil {
		return err
	}
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return err
	}
	if o.structured() {
		return o.print(stdout, keys)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tHOST\tCURRENT")
	for _, k := range keys {
		cur := ""
		if k.Current {
			cur = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID.Short(), k.Created.UTC().Format(time.RFC3339), k.Hostname, cur)
	}
	return tw.Flush()
}

// RunRepoKeyAdd adds a key.
func RunRepoKeyAdd(ctx context.Context, o *RepoKeyOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.NewPasswordFile == "" {
		return &UsageError{errors.New("--new-password-file is required")}
	}
	np, err := (&RepoOptions{PasswordFile: o.NewPasswordFile}).Password()
	if err != nil {
		return err
	}
	r, err := o.Open(ctx)
	if err != nil {
		return err
	}
	id, err := r.AddKey(ctx, np)
	if err != nil {
		return err
	}
	if o.structured() {
		return o.print(stdout, map[string]any{"id": id})
	}
	_, err = fmt.Fprintf(stdout, "added key %s\n", id.Short())
	return err
}

// RunRepoKeyRemove removes the key whose ID starts with ref.
func RunRepoKeyRemove(ctx context.Context, o *RepoKeyOptions, ref string, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	r, err := o.Open(ctx)
	if err != nil {
		return err
	}
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return err
	}
	var match []repo.ID
	for _, k := range keys {
		if strings.HasPrefix(k.ID.String(), strings.ToLower(ref)) {
			match = append(match, k.ID)
		}
	}
	if len(match) != 1 {
		return &UsageError{fmt.Errorf("key %q matches %d keys", ref, len(match))}
	}
	if err := r.RemoveKey(ctx, match[0]); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "removed key %s\n", match[0].Short())
	return err
}

// --- rebuild-index ---

func newRepoRebuildIndexCommand() *cobra.Command {
	o := &RepoCommonOptions{}
	cmd := &cobra.Command{
		Use:   "rebuild-index",
		Short: "Replace the index by one built from the pack headers (heals damaged or missing index files)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRepoRebuildIndex(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// RunRepoRebuildIndex rebuilds the index under an exclusive lock.
func RunRepoRebuildIndex(ctx context.Context, o *RepoCommonOptions, stdout io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	r, err := o.Open(ctx)
	if err != nil {
		return err
	}
	rep, err := r.RebuildIndex(ctx)
	if err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	if o.structured() {
		if rep.DamagedPacks == nil {
			rep.DamagedPacks = []string{}
		}
		return o.print(stdout, rep)
	}
	fmt.Fprintf(stdout, "indexed %d blobs in %d packs; wrote %d index files, removed %d\n",
		rep.Blobs, rep.Packs, rep.IndexFilesWritten, rep.IndexFilesRemoved)
	for _, p := range rep.DamagedPacks {
		fmt.Fprintf(stdout, "DAMAGED %s: header unreadable, not indexed\n", p)
	}
	return nil
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/store"
)

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage backup policies (schedule and retention) in a vault",
	}
	cmd.AddCommand(newPolicyCreateCommand(), newPolicyListCommand(), newPolicyShowCommand(), newPolicyDeleteCommand())
	return cmd
}

// PolicyScope names the vault a policy command works in.
type PolicyScope struct {
	VaultClientOptions
	Vault string
}

// AddFlags registers the client flags and --vault.
func (o *PolicyScope) AddFlags(fs *pflag.FlagSet) {
	o.VaultClientOptions.AddFlags(fs)
	def := os.Getenv("ARCA_VAULT")
	if def == "" {
		def = "default"
	}
	fs.StringVar(&o.Vault, "vault", def, "vault to work in (env ARCA_VAULT; else the config context's; else default)")
}

// client applies the config context's default vault, then connects.
func (o *PolicyScope) client() (*client.Client, error) {
	c, err := o.VaultClientOptions.client()
	if err != nil {
		return nil, err
	}
	if o.fs != nil && !o.fs.Changed("vault") && os.Getenv("ARCA_VAULT") == "" {
		if ctx := currentContext(); ctx != nil && ctx.Vault != "" {
			o.Vault = ctx.Vault
		}
	}
	return c, nil
}

// PolicyCreateOptions are the flags of `policy create`.
type PolicyCreateOptions struct {
	PolicyScope
	Schedule                                string
	Default, Daily, Weekly, Monthly, Yearly string
	Datastore                               string
	CopyTo                                  string
	Verify                                  string
}

// Spec turns the flags into a policy spec. A first-of rule may name its own
// datastore with a suffix (P12W:vault); otherwise --datastore applies. The
// default rule always uses the operational datastore.
func (o *PolicyCreateOptions) Spec() (policy.Spec, error) {
	rule := func(flag, v string, isDefault bool) (*policy.RuleSpec, error) {
		if v == "" {
			return nil, nil
		}
		d, ds, ok := strings.Cut(v, ":")
		if !ok {
			ds = o.Datastore
			if isDefault {
				ds = policy.Operational
			}
		}
		if ds != policy.Operational && ds != policy.VaultStore {
			return nil, &UsageError{fmt.Errorf("--%s %q: datastore must be operational or vault", flag, v)}
		}
		return &policy.RuleSpec{Duration: d, Datastore: ds}, nil
	}
	var s policy.Spec
	s.Schedule = o.Schedule
	var err error
	for _, r := range []struct {
		flag, v string
		dst     **policy.RuleSpec
	}{{"retain-default", o.Default, &s.Retention.Default}, {"retain-daily", o.Daily, &s.Retention.Daily},
		{"retain-weekly", o.Weekly, &s.Retention.Weekly}, {"retain-monthly", o.Monthly, &s.Retention.Monthly},
		{"retain-yearly", o.Yearly, &s.Retention.Yearly}} {
		if *r.dst, err = rule(r.flag, r.v, r.flag == "retain-default"); err != nil {
			return s, err
		}
	}
	return s, nil
}

func newPolicyCreateCommand() *cobra.Command {
	o := &PolicyCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME --schedule SCHEDULE --retain-default DURATION",
		Short: "Create a backup policy",
		Long: `Create a backup policy.

--schedule is an ISO 8601 repeating interval, R/<start>/<period> with period
PT1H…PT24H or P1D (e.g. R/2026-01-01T02:00:00Z/PT4H), or a 5-field cron
expression in UTC running at most hourly (e.g. "0 2 * * *").

Retention durations are ISO 8601: P7D, P4W, P12M, P1Y (P1D to P10Y).
--retain-default is required; --retain-daily/weekly/monthly/yearly keep the
first successful backup of each day/week/month/year longer (priority
yearly > monthly > weekly > daily). --datastore picks operational or vault for
those rules; a rule can override it with a suffix, e.g. --retain-yearly P10Y:vault.
The operational tier (snapshots) and the vault tier (volume data in the
repository) expire independently: the first backup of a day, week, month or
year per the vault rules moves its volume data to the vault tier.

--copy-to copies every vault-tier recovery point to a secondary storage
location (another region, account or provider; the cluster needs a
StorageLocation for it), which restores read when the primary is unreachable.

--verify daily|weekly|monthly verifies each instance's latest recovery point
once per calendar period (UTC) in the instance's own cluster: a Verification
job, as arca recovery-point verify runs (10% of the packs read whole); the
cluster's owner must allow it (arca trusted-access enable --allow-verification).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunPolicyCreate(cmd.Context(), o, args[0], cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&o.Schedule, "schedule", "", "ISO 8601 repeating interval or cron expression")
	fs.StringVar(&o.Default, "retain-default", "", "default retention, e.g. P7D (required)")
	fs.StringVar(&o.Daily, "retain-daily", "", "retention of the first backup of each day")
	fs.StringVar(&o.Weekly, "retain-weekly", "", "retention of the first backup of each week")
	fs.StringVar(&o.Monthly, "retain-monthly", "", "retention of the first backup of each month")
	fs.StringVar(&o.Yearly, "retain-yearly", "", "retention of the first backup of each year")
	fs.StringVar(&o.Datastore, "datastore", policy.Operational, "datastore of the first-of rules: operational or vault")
	fs.StringVar(&o.CopyTo, "copy-to", "", "secondary storage location URL: every vault-tier recovery point is copied there, and restores fall back to it")
	fs.StringVar(&o.Verify, "verify", "", "verify each instance's latest recovery point daily, weekly or monthly in its cluster (sandbox namespaces; needs --allow-verification from the cluster's owner)")
	return cmd
}

// RunPolicyCreate validates locally (same rules as the vault), then
// creates the policy.
func RunPolicyCreate(ctx context.Context, o *PolicyCreateOptions, name string, stdout io.Writer) error {
	spec, err := o.Spec()
	if err != nil {
		return err
	}
	if _, err := policy.Parse(spec); err != nil {
		return &UsageError{err}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	p, err := c.CreatePolicy(ctx, o.Vault, client.PolicyInput{Name: name, Schedule: spec.Schedule, Retention: spec.Retention, CopyTo: o.CopyTo, Verify: o.Verify})
	if err != nil {
		return err
	}
	return printPolicies(stdout, o.Output, p, []*store.Policy{p})
}

func newPolicyListCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a vault's backup policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ps, err := c.ListPolicies(cmd.Context(), o.Vault)
			if err != nil {
				return err
			}
			if ps == nil {
				ps = []*store.Policy{}
			}
			return printPolicies(cmd.OutOrStdout(), o.Output, map[string]any{"items": ps}, ps)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newPolicyShowCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a backup policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			p, err := c.GetPolicy(cmd.Context(), o.Vault, args[0])
			if err != nil {
				return err
			}
			return printPolicies(cmd.OutOrStdout(), o.Output, p, []*store.Policy{p})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newPolicyDeleteCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a backup policy no instance uses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeletePolicy(cmd.Context(), o.Vault, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy %q deleted from vault %q\n", args[0], o.Vault)
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// retentionSummary renders rules compactly: default=P7D weekly=P4W(vault).
func retentionSummary(raw json.RawMessage) string {
	var r policy.RetentionSpec
	if err := json.Unmarshal(raw, &r); err != nil {
		return "?"
	}
	var parts []string
	for _, x := range []struct {
		name string
		r    *policy.RuleSpec
	}{{"default", r.Default}, {"daily", r.Daily}, {"weekly", r.Weekly}, {"monthly", r.Monthly}, {"yearly", r.Yearly}} {
		if x.r == nil {
			continue
		}
		s := x.name + "=" + x.r.Duration
		if x.r.Datastore == policy.VaultStore {
			s += "(vault)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func printPolicies(w io.Writer, format string, v any, ps []*store.Policy) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tSCHEDULE\tRETENTION\tVERSION")
		for _, p := range ps {
			ret := retentionSummary(p.Retention)
			if p.Verify != "" {
				ret += " verify=" + p.Verify
			}
			if p.CopyTo != "" {
				ret += " copyTo=" + p.CopyTo
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.Name, p.Schedule, ret, p.Version)
		}
	})
}

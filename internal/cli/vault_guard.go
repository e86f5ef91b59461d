package cli

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Commands of protection users can trust (issue 17): vault settings
// (soft delete, immutability, resource guard), deleting and undeleting
// recovery points and instances, approvals of guarded operations, and
// webhook notifications.

func newVaultUpdateCommand() *cobra.Command {
	o := &VaultClientOptions{}
	var desc, immutability, guard string
	var softDays int
	cmd := &cobra.Command{
		Use:   "update NAME [--description D] [--soft-delete-days N] [--immutability unlocked|locked|disabled] [--resource-guard on|off]",
		Short: "Change a vault's description and protection settings (only the flags given)",
		Example: `  arca vault update default --immutability unlocked      # points cannot be deleted before they expire
  arca vault update default --immutability locked        # final: can never be disabled again
  arca vault update default --soft-delete-days 30
  arca vault update default --resource-guard on          # destructive operations need a second principal's approval`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var u service.VaultUpdate
			fs := cmd.Flags()
			if fs.Changed("description") {
				u.Description = &desc
			}
			if fs.Changed("soft-delete-days") {
				u.SoftDeleteDays = &softDays
			}
			if fs.Changed("immutability") {
				switch immutability {
				case store.ImmutabilityDisabled, store.ImmutabilityUnlocked, store.ImmutabilityLocked:
				default:
					return &UsageError{fmt.Errorf("--immutability %q: want unlocked, locked or disabled", immutability)}
				}
				u.Immutability = &immutability
			}
			if fs.Changed("resource-guard") {
				on := false
				switch guard {
				case "on", "true", "enabled":
					on = true
				case "off", "false", "disabled":
				default:
					return &UsageError{fmt.Errorf("--resource-guard %q: want on or off", guard)}
				}
				u.ResourceGuard = &on
			}
			if u == (service.VaultUpdate{}) {
				return &UsageError{fmt.Errorf("nothing to change: give --description, --soft-delete-days, --immutability or --resource-guard")}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			v, err := c.UpdateVault(cmd.Context(), args[0], u)
			if err != nil {
				return err
			}
			return printVaultSettings(cmd.OutOrStdout(), o.Output, v)
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&desc, "description", "", "free text")
	cmd.Flags().IntVar(&softDays, "soft-delete-days", store.DefaultSoftDeleteDays, "days deleted recovery points and instances are kept, undeletable (0: soft delete off)")
	cmd.Flags().StringVar(&immutability, "immutability", "", "unlocked (enforced, can be disabled), locked (enforced for good) or disabled")
	cmd.Flags().StringVar(&guard, "resource-guard", "", "on: deleting, disabling protections and shortening retention need a second principal's approval (arca approval); off")
	return cmd
}

func printVaultSettings(w io.Writer, format string, v *store.Vault) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tSOFT DELETE\tIMMUTABILITY\tRESOURCE GUARD\tVERSION")
		soft := "off"
		if v.SoftDeleteDays > 0 {
			soft = fmt.Sprintf("%d days", v.SoftDeleteDays)
		}
		guard := "off"
		if v.ResourceGuard {
			guard = "on"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", v.Name, soft, v.Immutability, guard, v.Version)
	})
}

func newVaultUsageCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:     "usage NAME",
		Short:   "Show a vault's storage figures (soft-deleted points count until purged)",
		Example: `  arca vault usage default -o json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			u, err := c.VaultUsage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), o.Output, u, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "RECOVERY POINTS\tBYTES\tSOFT-DELETED POINTS\tSOFT-DELETED BYTES")
				fmt.Fprintf(tw, "%d\t%d\t%d\t%d\n", u.RecoveryPoints, u.Bytes, u.SoftDeletedRecoveryPoints, u.SoftDeletedBytes)
				if len(u.Instances) == 0 {
					return
				}
				fmt.Fprintln(tw)
				fmt.Fprintln(tw, "INSTANCE\tRECOVERY POINTS\tBYTES\tSTORED BYTES\tDEDUP RATIO")
				for _, iu := range u.Instances {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", iu.Instance, iu.RecoveryPoints, iu.Bytes, iu.StoredBytes, dedupRatio(iu.DedupRatio))
				}
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newRecoveryPointDeleteCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a recovery point (soft-deleted for the vault's soft-delete days when on)",
		Example: `  arca recovery-point delete rp-4f2a…                   # undeletable until purged
  arca recovery-point list --deleted only`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rp, job, err := c.DeleteRecoveryPoint(cmd.Context(), o.Vault, args[0])
			if err != nil {
				return err
			}
			if job != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "recovery point %s is deleted by job %s (arca job show %s)\n", args[0], path.Base(job), path.Base(job))
				return nil
			}
			if o.Output != "table" {
				return printRecoveryPoints(cmd.OutOrStdout(), o.Output, rp, []*store.RecoveryPoint{rp})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "recovery point %s soft-deleted; purged at %s unless undeleted (arca recovery-point undelete %s)\n",
				rp.ID, vaultTimePtr(rp.PurgeAt), rp.ID)
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func vaultTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return vaultTime(*t)
}

func newRecoveryPointUndeleteCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:     "undelete ID",
		Short:   "Bring a soft-deleted recovery point back",
		Example: `  arca recovery-point undelete rp-4f2a…`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rp, err := c.UndeleteRecoveryPoint(cmd.Context(), o.Vault, args[0])
			if err != nil {
				return err
			}
			return printRecoveryPoints(cmd.OutOrStdout(), o.Output, rp, []*store.RecoveryPoint{rp})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newInstanceUndeleteCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:     "undelete NAME",
		Short:   "Bring a soft-deleted instance back with its recovery points (protection stays stopped; resume it after)",
		Example: `  arca instance undelete shop && arca instance resume shop`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			in, err := c.UndeleteInstance(cmd.Context(), o.Vault, args[0])
			if err != nil {
				return err
			}
			return printInstances(cmd.OutOrStdout(), o.Output, in, []*store.Instance{in})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// ---- approvals ----

func newApprovalCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approval",
		Short: "List, approve and reject the requests of a vault's resource guard (multi-user authorization)",
	}
	lo := &PolicyScope{}
	var state string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List approval requests, newest first",
		Example: `  arca approval list --state Pending`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lo.client()
			if err != nil {
				return err
			}
			as, err := c.ListApprovals(cmd.Context(), lo.Vault, state)
			if err != nil {
				return err
			}
			if as == nil {
				as = []*store.Approval{}
			}
			return printApprovals(cmd.OutOrStdout(), lo.Output, map[string]any{"items": as}, as)
		},
	}
	lo.AddFlags(list.Flags())
	list.Flags().StringVar(&state, "state", "", "only Pending, Approved, Rejected, Used or Expired requests")
	cmd.AddCommand(list, newApprovalDecideCommand(true), newApprovalDecideCommand(false))
	return cmd
}

func newApprovalDecideCommand(approve bool) *cobra.Command {
	o := &PolicyScope{}
	var reason string
	verb, short := "reject", "Reject a pending request"
	if approve {
		verb, short = "approve", "Approve a pending request (needs the Resource Guard Approver role; not your own)"
	}
	cmd := &cobra.Command{
		Use:     verb + " ID",
		Short:   short,
		Example: "  arca approval " + verb + " mua-0123abcd --reason \"change 4711\"",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			a, err := c.DecideApproval(cmd.Context(), o.Vault, args[0], approve, reason)
			if err != nil {
				return err
			}
			return printApprovals(cmd.OutOrStdout(), o.Output, a, []*store.Approval{a})
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with the decision)")
	return cmd
}

func printApprovals(w io.Writer, format string, v any, as []*store.Approval) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tOPERATION\tTARGET\tREQUESTER\tSTATE\tAPPROVER\tEXPIRES")
		for _, a := range as {
			approver := a.Approver
			if approver == "" {
				approver = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Operation, a.Target, a.Requester, a.State, approver, vaultTime(a.ExpiresAt))
		}
	})
}

// ---- notifications ----

func newNotificationCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notification",
		Short: "Webhook subscriptions to a vault's events (signed with a shared secret)",
	}
	ao := &PolicyScope{}
	var url, secretFile string
	var events []string
	add := &cobra.Command{
		Use:   "add --url URL --secret-file FILE --events job-failed,job-warning,verification-failed,schedule-missed",
		Short: "Subscribe a webhook to events",
		Example: `  head -c 32 /dev/urandom | base64 > hook.secret
  arca notification add --url https://hooks.example.com/arca --secret-file hook.secret --events job-failed,schedule-missed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" || secretFile == "" || len(events) == 0 {
				return &UsageError{fmt.Errorf("--url, --secret-file and --events are required (events: %s)", strings.Join(store.EventTypes(), ", "))}
			}
			b, err := os.ReadFile(secretFile)
			if err != nil {
				return &UsageError{fmt.Errorf("--secret-file: %w", err)}
			}
			c, err := ao.client()
			if err != nil {
				return err
			}
			sub, err := c.AddSubscription(cmd.Context(), ao.Vault, service.SubscriptionSpec{URL: url, Secret: strings.TrimSpace(string(b)), Events: events})
			if err != nil {
				return err
			}
			return printSubscriptions(cmd.OutOrStdout(), ao.Output, sub, []*store.Subscription{sub})
		},
	}
	ao.AddFlags(add.Flags())
	add.Flags().StringVar(&url, "url", "", "https:// URL the events are POSTed to")
	add.Flags().StringVar(&secretFile, "secret-file", "", "file holding the shared secret (16-512 characters) events are signed with")
	add.Flags().StringSliceVar(&events, "events", nil, "events to send: "+strings.Join(store.EventTypes(), ", "))

	lo := &PolicyScope{}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List webhook subscriptions",
		Example: `  arca notification list -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lo.client()
			if err != nil {
				return err
			}
			subs, err := c.ListSubscriptions(cmd.Context(), lo.Vault)
			if err != nil {
				return err
			}
			if subs == nil {
				subs = []*store.Subscription{}
			}
			return printSubscriptions(cmd.OutOrStdout(), lo.Output, map[string]any{"items": subs}, subs)
		},
	}
	lo.AddFlags(list.Flags())

	ro := &PolicyScope{}
	remove := &cobra.Command{
		Use:     "remove ID",
		Short:   "Remove a webhook subscription",
		Example: `  arca notification remove wh-0123abcd`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ro.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSubscription(cmd.Context(), ro.Vault, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "subscription %s removed\n", args[0])
			return nil
		},
	}
	ro.AddFlags(remove.Flags())

	do := &PolicyScope{}
	var sub string
	deliveries := &cobra.Command{
		Use:     "deliveries",
		Short:   "List webhook deliveries, newest first: state, attempts and the last answer",
		Example: `  arca notification deliveries --subscription wh-0123abcd`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := do.client()
			if err != nil {
				return err
			}
			ds, err := c.ListDeliveries(cmd.Context(), do.Vault, sub)
			if err != nil {
				return err
			}
			if ds == nil {
				ds = []*store.Delivery{}
			}
			return printOutput(cmd.OutOrStdout(), do.Output, map[string]any{"items": ds}, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSUBSCRIPTION\tEVENT\tSTATE\tATTEMPTS\tLAST STATUS\tLAST ERROR")
				for _, d := range ds {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, d.Subscription, d.Event.Type, d.State, d.Attempts, d.LastStatus, d.LastError)
				}
			})
		},
	}
	do.AddFlags(deliveries.Flags())
	deliveries.Flags().StringVar(&sub, "subscription", "", "only this subscription's")
	cmd.AddCommand(add, list, remove, deliveries)
	return cmd
}

func printSubscriptions(w io.Writer, format string, v any, subs []*store.Subscription) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tURL\tEVENTS")
		for _, s := range subs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.ID, s.URL, strings.Join(s.Events, ","))
		}
	})
}

// dedupRatio formats an instance's dedup ratio ("unknown" when no point
// has a known stored size).
func dedupRatio(r *float64) string {
	if r == nil {
		return "unknown"
	}
	return fmt.Sprintf("%.2fx", *r)
}

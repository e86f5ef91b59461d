package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/store"
)

// RecoveryPointVerifyOptions are the flags of `arca recovery-point verify`.
type RecoveryPointVerifyOptions struct {
	PolicyScope
	Cluster     string
	ReadShare   string
	SkipVolumes bool
	Hooks       []string
	Wait        bool
}

// parseShare reads --read-data-share: a whole percentage from 0 to 100,
// with or without "%".
func parseShare(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, &UsageError{fmt.Errorf("--read-data-share %q: give a whole percentage from 0 to 100, e.g. 10%%", s)}
	}
	return n, nil
}

func newRecoveryPointVerifyCommand() *cobra.Command {
	o := &RecoveryPointVerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify ID --cluster C",
		Short: "Verify a recovery point: check its data, restore it into sandbox namespaces, compare, clean up (queues a Verification job)",
		Long: `Verify queues a Verification job. The extension in cluster C checks the
repository (reading --read-data-share of its packs whole), restores the
point's namespaces into sandbox namespaces arca-verify-<job>-<namespace>,
compares every restored object with the point, runs the --hook RestoreHooks
in the restored pods as smoke tests, records the verdict on the recovery
point (Verified, or VerificationFailed with codes and the objects that
differ; arca recovery-point show) and deletes the sandbox namespaces.

The cluster's owner must allow it: arca trusted-access enable ...
--allow-verification (and --allow-namespaces must reach arca-verify-*).`,
		Example: `  arca recovery-point verify rp-4f2a… --cluster staging --read-data-share 10% --wait
  arca recovery-point verify rp-4f2a… --cluster staging --skip-volumes --hook arca-system/smoke`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Cluster == "" {
				return &UsageError{fmt.Errorf("--cluster is required: the cluster whose extension restores the point into sandbox namespaces")}
			}
			share, err := parseShare(o.ReadShare)
			if err != nil {
				return err
			}
			in := client.VerificationInput{TargetCluster: o.Cluster, ReadDataPercent: share, SkipVolumes: o.SkipVolumes}
			if len(o.Hooks) > 0 {
				var crit v1alpha1.RestoreCriteria
				for _, h := range o.Hooks {
					ns, name, ok := strings.Cut(h, "/")
					if !ok || ns == "" || name == "" {
						return &UsageError{fmt.Errorf("--hook %q: write NAMESPACE/NAME of a RestoreHook", h)}
					}
					crit.RestoreHookReferences = append(crit.RestoreHookReferences, v1alpha1.NamespacedName{Namespace: ns, Name: name})
				}
				in.Criteria, _ = json.Marshal(crit)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			j, err := c.VerifyRecoveryPoint(cmd.Context(), o.Vault, args[0], in)
			if err != nil {
				return err
			}
			if o.Wait {
				if err := vaultWaitJob(cmd, c, &o.PolicyScope, j); err != nil {
					return err
				}
				rp, gerr := c.GetRecoveryPoint(cmd.Context(), o.Vault, args[0])
				if gerr == nil && o.Output == "table" {
					printVerification(cmd.OutOrStdout(), rp)
				}
				return nil
			}
			return printJobs(cmd.OutOrStdout(), o.Output, j, []*store.Job{j})
		},
	}
	o.AddFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&o.Cluster, "cluster", "", "cluster whose extension restores the point into sandbox namespaces (required)")
	fs.StringVar(&o.ReadShare, "read-data-share", "0%", "share of the repository's packs read whole and verified blob by blob (0% to 100%; the rest by their headers)")
	fs.BoolVar(&o.SkipVolumes, "skip-volumes", false, "restore claims without their data (no snapshot or vault-tier data is read)")
	fs.StringArrayVar(&o.Hooks, "hook", nil, "RestoreHook NAMESPACE/NAME run in the restored pods as a smoke test (repeatable)")
	fs.BoolVar(&o.Wait, "wait", false, "wait until the job finishes and print the verdict; exit 1 if it fails")
	return cmd
}

// verdictColumn is the VERIFIED column of recovery-point list.
func verdictColumn(rp *store.RecoveryPoint) string {
	v := rp.Verification
	if v == nil {
		return "-"
	}
	if v.Verdict == v1alpha1.VerdictVerified {
		return "Verified " + vaultTime(v.Time)
	}
	return v.Verdict + " (" + strings.Join(v.Codes, ",") + ")"
}

// printVerification prints a point's latest verification in full.
func printVerification(w io.Writer, rp *store.RecoveryPoint) {
	v := rp.Verification
	if v == nil {
		fmt.Fprintf(w, "recovery point %s: never verified\n", rp.ID)
		return
	}
	fmt.Fprintf(w, "verification of %s: %s at %s by job %s in cluster %s\n", rp.ID, v.Verdict, vaultTime(v.Time), v.JobID, v.Cluster)
	fmt.Fprintf(w, "  %d objects compared, %d of %d packs read whole, sandbox %s (deleted: %t)\n",
		v.ObjectsCompared, v.PacksRead, v.PacksChecked, strings.Join(v.SandboxNamespaces, ","), v.CleanedUp)
	if len(v.Codes) > 0 {
		fmt.Fprintf(w, "  codes: %s\n", strings.Join(v.Codes, ", "))
	}
	for _, d := range v.Differences {
		fmt.Fprintf(w, "  %s: %s\n", d.Object, d.Message)
	}
}

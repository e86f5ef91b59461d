package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// syncPoints picks the repository's recovery points of one backup instance
// of one vault (by the tags the vault's backups carry), oldest first.
func syncPoints(rps []*repo.RecoveryPoint, vault, instance string) []service.SyncPoint {
	var out []service.SyncPoint
	want := v1alpha1.VaultPoint{Vault: vault, Instance: instance}
	for _, rp := range rps {
		if !want.Matches(rp.Tags) {
			continue
		}
		out = append(out, service.SyncPoint{RepositoryID: rp.ID.String(), Vault: vault, Instance: instance, Time: rp.Started.UTC(), JobID: rp.Tags[v1alpha1.TagJob],
			Items: int64(rp.Summary.Items), Bytes: rp.Summary.Bytes, VaultTier: len(rp.VolumeData) > 0})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

func newVaultSyncCommand() *cobra.Command {
	o := &PolicyScope{}
	ro := &RepoOptions{}
	var instance string
	cmd := &cobra.Command{
		Use:   "sync --instance NAME --repo URL",
		Short: "Rebuild an instance's recovery points in the vault from its repository (after losing the vault's database)",
		Long: `Reads the repository's recovery points, keeps those the vault's backups of
the instance wrote (tags arca.io/vault and arca.io/instance), and re-creates
the ones the vault has no record of. A point keeps the ID it had (rp-<job>);
its tag and expiry are computed again from the instance's policy. Points
already in the vault are left alone, so running it twice changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if instance == "" {
				return &UsageError{fmt.Errorf("--instance is required")}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, _, err := c.GetInstance(ctx, o.Vault, instance); err != nil {
				return err
			}
			r, err := ro.OpenReader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			res, err := syncInstance(ctx, c, r, o.Vault, instance)
			if err != nil {
				return err
			}
			return printSyncResult(cmd.OutOrStdout(), o.Output, res)
		},
	}
	o.AddFlags(cmd.Flags())
	ro.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&instance, "instance", "", "backup instance whose recovery points to rebuild (required)")
	return cmd
}

// syncInstance sends the repository's points of the instance to the vault.
func syncInstance(ctx context.Context, c *client.Client, r repo.Reader, vault, instance string) (*service.SyncResult, error) {
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the repository's recovery points: %w", err)
	}
	pts := syncPoints(rps, vault, instance)
	total := &service.SyncResult{}
	for len(pts) > 0 || total.Created == nil {
		n := min(len(pts), syncBatch)
		res, err := c.SyncRecoveryPoints(ctx, vault, instance, pts[:n])
		if err != nil {
			return nil, err
		}
		total.Created = append(append([]*store.RecoveryPoint{}, total.Created...), res.Created...)
		total.Existing += res.Existing
		pts = pts[n:]
	}
	return total, nil
}

// syncBatch is how many points one sync request carries (the vault takes
// at most 10000); oldest first, so that retention tags come out as when
// the points were taken.
const syncBatch = 5000

func printSyncResult(w io.Writer, format string, res *service.SyncResult) error {
	return printOutput(w, format, res, func(tw *tabwriter.Writer) {
		if len(res.Created) > 0 {
			fmt.Fprintln(tw, "RE-CREATED\tTIME\tTAG\tREPOSITORY ID")
		}
		for _, rp := range res.Created {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", rp.ID, rp.Time.Format("2006-01-02T15:04:05Z"), rp.Tag, rp.RepoID)
		}
		fmt.Fprintf(tw, "%d recovery points re-created, %d already in the vault\n", len(res.Created), res.Existing)
	})
}

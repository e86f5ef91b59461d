package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/units"
)

// ToPasswordEnv is read for the target's password of `arca repo copy` when
// --to-password-file is absent.
const ToPasswordEnv = "ARCA_TO_PASSWORD"

// RepoCopyOptions are the flags of `arca repo copy`.
type RepoCopyOptions struct {
	FromRepo RepoOptions
	ToRepo   RepoOptions
	Points   []string
	All      bool
	Instance string
	Vault    string
	Output   string
	Workers  int
}

func newRepoCopyCommand() *cobra.Command {
	o := &RepoCopyOptions{}
	cmd := &cobra.Command{
		Use:   "copy --from URL --to URL (--point ID ... | --all | --instance NAME)",
		Short: "Copy recovery points into a second repository (another storage location, its own key), sending only the data it lacks",
		Long: `Copy recovery points from one repository into another: a second storage
location (another region, account or provider). Only blobs the target lacks
are sent; a point the target already holds (a copy of it) is skipped, so
running the same copy again sends nothing. The target keeps its own
password and master key: data is decrypted with the source's key and
encrypted again with the target's. Each point is written to the target as
packs, then index, then manifest: an interrupted copy leaves no recovery
point there whose data is missing, and a rerun completes it.

A copy's ID differs from the original's (its manifest is encrypted with
another key); the copy carries the original's ID in its arca.io/origin tag,
and restores (--fallback-repo) find a point by either ID.

The target is created when it does not exist. The source's password comes
from --from-password-file or $ARCA_PASSWORD, the target's from
--to-password-file or $ARCA_TO_PASSWORD.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRepoCopy(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	o.FromRepo.flag, o.ToRepo.flag = "from", "to"
	o.ToRepo.PasswordEnv = ToPasswordEnv
	fs.StringVar(&o.FromRepo.Repo, "from", "", "the source repository's URL")
	fs.StringVar(&o.FromRepo.PasswordFile, "from-password-file", "", "file holding the source's password (default: $"+PasswordEnv+")")
	fs.StringVar(&o.ToRepo.Repo, "to", "", "the target repository's URL (created if it does not exist)")
	fs.StringVar(&o.ToRepo.PasswordFile, "to-password-file", "", "file holding the target's password (default: $"+ToPasswordEnv+")")
	fs.StringSliceVar(&o.Points, "point", nil, "recovery point to copy: a full ID or a unique prefix (repeatable)")
	fs.BoolVar(&o.All, "all", false, "copy every recovery point of the source")
	fs.StringVar(&o.Instance, "instance", "", "copy the points of this backup instance (tag "+v1alpha1.TagInstance+")")
	fs.StringVar(&o.Vault, "vault", "", "with --instance: only the points of this vault (tag "+v1alpha1.TagVault+")")
	fs.IntVar(&o.Workers, "workers", 8, "blobs copied at once")
	fs.StringVarP(&o.Output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// RunRepoCopy copies the selected recovery points from o.FromRepo into
// o.ToRepo.
func RunRepoCopy(ctx context.Context, o *RepoCopyOptions, stdout io.Writer) error {
	if err := checkOutput(o.Output); err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{len(o.Points) > 0, o.All, o.Instance != ""} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return &UsageError{errors.New("say which recovery points to copy: --point ID (repeatable), --all, or --instance NAME (exactly one of them)")}
	}
	if o.Vault != "" && o.Instance == "" {
		return &UsageError{errors.New("--vault selects among an instance's points: give --instance too")}
	}
	if o.FromRepo.flag == "" {
		o.FromRepo.flag, o.ToRepo.flag = "from", "to"
		if o.ToRepo.PasswordEnv == "" {
			o.ToRepo.PasswordEnv = ToPasswordEnv
		}
	}
	if o.FromRepo.Repo == "" || o.ToRepo.Repo == "" {
		return &UsageError{errors.New("--from URL and --to URL are both required")}
	}
	if o.FromRepo.Repo == o.ToRepo.Repo {
		return &UsageError{fmt.Errorf("--from and --to name the same location %s: a copy needs a second one", o.FromRepo.Repo)}
	}
	// Passwords first: a missing one is a usage error before anything is
	// opened or created.
	if _, err := o.FromRepo.Password(); err != nil {
		return err
	}
	if _, err := o.ToRepo.Password(); err != nil {
		return err
	}
	src, err := o.FromRepo.OpenReader(ctx)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	ids, err := o.selectPoints(ctx, src)
	if err != nil {
		return err
	}
	dst, created, err := o.ToRepo.OpenOrInit(ctx)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer dst.Close()
	start := time.Now()
	rep, err := repo.Copy(ctx, src, dst, ids, repo.CopyOptions{Workers: o.Workers})
	if rep == nil {
		return err
	}
	if o.Output != "table" {
		if perr := printOutput(stdout, o.Output, rep, nil); perr != nil {
			return perr
		}
		return err
	}
	if created {
		fmt.Fprintf(stdout, "created repository %s at %s\n", dst.Config().ID.Short(), o.ToRepo.Repo)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTARGET\tACTION\tBLOBS\tNEW BLOBS\tNEW BYTES\tSTORED")
	for _, p := range rep.Points {
		action := "copied"
		if p.Skipped {
			action = "already there"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Source.Short(), p.Target.Short(), action,
			p.Blobs, p.NewBlobs, units.Bytes(p.NewBytes), units.Bytes(p.StoredBytes))
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	fmt.Fprintf(stdout, "%d copied, %d already there; sent %d blobs (%s), stored %s in %s\n",
		rep.Copied, rep.Skipped, rep.NewBlobs, units.Bytes(rep.NewBytes), units.Bytes(rep.StoredBytes),
		time.Since(start).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("%w (rerun the same command: what is copied stays, the rest is sent)", err)
	}
	return nil
}

// selectPoints resolves --point, --all or --instance to full IDs, oldest
// first.
func (o *RepoCopyOptions) selectPoints(ctx context.Context, src repo.Reader) ([]repo.ID, error) {
	var ids []repo.ID
	if len(o.Points) > 0 {
		seen := map[repo.ID]bool{}
		for _, ref := range o.Points {
			rp, err := src.FindRecoveryPoint(ctx, ref)
			if err != nil {
				return nil, &UsageError{fmt.Errorf("--point %s: %w", ref, err)}
			}
			if !seen[rp.ID] {
				seen[rp.ID] = true
				ids = append(ids, rp.ID)
			}
		}
		return ids, nil
	}
	rps, err := src.ListRecoveryPoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	for _, rp := range rps {
		if o.Instance != "" && (rp.Tags[v1alpha1.TagInstance] != o.Instance || o.Vault != "" && rp.Tags[v1alpha1.TagVault] != o.Vault) {
			continue
		}
		ids = append(ids, rp.ID)
	}
	if len(ids) == 0 && o.Instance != "" {
		return nil, &UsageError{fmt.Errorf("no recovery point of the source is tagged %s=%s: check the instance's name (arca recovery-point list)", v1alpha1.TagInstance, o.Instance)}
	}
	return ids, nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arca-backup/arca/internal/operations"
	"github.com/arca-backup/arca/internal/repo"
)

// volumeBackupFlags are the volume flags of `arca local backup`.
type volumeBackupFlags struct {
	snapshot bool
	classes  []string
	timeout  time.Duration
}

func (f *volumeBackupFlags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.snapshot, "snapshot-volumes", true, "take CSI snapshots of the included PVCs (snapshotVolumes)")
	fs.StringSliceVar(&f.classes, "snapshot-class", nil, "VolumeSnapshotClass(es) to use (the snapshot location); default: the class annotated default for each driver")
	fs.DurationVar(&f.timeout, "snapshot-timeout", 10*time.Minute, "how long to wait for all snapshots to become ready")
}

// afterBackup reports what happened to the volumes: a label that could not
// be set on a retained snapshot content and, for text output, how many
// volumes were snapshotted.
func afterBackup(res *operations.BackupResult, text bool, stderr io.Writer) {
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning %s: %s\n", w.Code, w.Message)
	}
	recs := res.Volumes
	if !text || len(res.RecoveryPoint.Volumes) == 0 {
		return
	}
	fmt.Fprintf(stderr, "%d volume snapshot(s), taken within %d ms; %d volume(s) not snapshotted\n", len(recs.Snapshots), recs.SpreadMillis, len(recs.Skipped))
}

// volumeRestoreFlags are the volume flags of `arca local restore`.
type volumeRestoreFlags struct {
	withoutData         bool
	storageClassMapping []string
}

func (f *volumeRestoreFlags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.withoutData, "without-volume-data", false, "create PVCs empty instead of from their snapshots (RestoreWithoutVolumeData)")
	fs.StringSliceVar(&f.storageClassMapping, "storage-class-mapping", nil, "old=new[,old2=new2]: restore PVCs and PVs of storage class old with class new (storageClassMappings)")
}

func parsePairs(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range in {
		from, to, ok := cutPair(p)
		if !ok {
			return nil, fmt.Errorf("%q is not old=new", p)
		}
		out[from] = to
	}
	return out, nil
}

func cutPair(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			if i == 0 || i == len(s)-1 {
				return "", "", false
			}
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// --- forget ---

// LocalForgetOptions are the flags of `arca local forget`.
type LocalForgetOptions struct {
	RepoOptions
	LocalClusterOptions
	// KeepSnapshots forgets only the repository's manifests.
	KeepSnapshots bool
	Output        string
}

func newLocalForgetCommand() *cobra.Command {
	o := &LocalForgetOptions{}
	cmd := &cobra.Command{
		Use:   "forget RP...",
		Short: "Forget recovery points and delete their retained volume snapshots in the cluster",
		Long: "Deletes the VolumeSnapshotContents (and through the CSI driver the snapshots) that the recovery points\n" +
			"retained, then removes the recovery points from the repository (their data goes at the next `arca repo prune`).\n" +
			"A recovery point whose snapshots could not be deleted is not forgotten.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunLocalForget(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.RepoOptions.AddFlags(cmd.Flags())
	o.LocalClusterOptions.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.KeepSnapshots, "keep-snapshots", false, "forget only in the repository; leave the volume snapshots")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

// ForgetOutput is one recovery point in `arca local forget --output json`.
type ForgetOutput struct {
	ID              string         `json:"id"`
	DeletedContents []string       `json:"deletedContents"`
	Warnings        []repo.Warning `json:"warnings"`
}

// RunLocalForget runs `arca local forget`.
func RunLocalForget(ctx context.Context, o *LocalForgetOptions, refs []string, stdout, stderr io.Writer) error {
	if err := checkTextOutput(o.Output); err != nil {
		return err
	}
	if o.Repo == "" {
		return &UsageError{errors.New("--repo is required")}
	}
	var snaps operations.SnapshotCleaner
	if !o.KeepSnapshots {
		restCfg, err := o.config()
		if err != nil {
			return &UsageError{err}
		}
		if snaps, err = operations.ClusterSnapshots(restCfg); err != nil {
			return err
		}
	}
	r, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	var rps []*repo.RecoveryPoint
	for _, ref := range refs {
		if ref == "latest" {
			return &UsageError{errors.New(`refusing to forget "latest" by name; give its ID`)}
		}
		rp, err := r.FindRecoveryPoint(ctx, ref)
		if err != nil {
			return &UsageError{fmt.Errorf("recovery point %q: %w", ref, err)}
		}
		rps = append(rps, rp)
	}
	out := []ForgetOutput{}
	for _, rp := range rps {
		f, err := operations.Forget(ctx, r, snaps, rp)
		if o.Output == "text" {
			for _, w := range f.Warnings {
				fmt.Fprintf(stderr, "warning %s: %s\n", w.Code, w.Message)
			}
		}
		if err != nil {
			return err
		}
		out = append(out, ForgetOutput{ID: f.ID.String(), DeletedContents: f.DeletedContents, Warnings: f.Warnings})
		if o.Output == "text" {
			fmt.Fprintf(stdout, "forgot %s (%d volume snapshot(s) deleted)\n", rp.ID.Short(), len(f.DeletedContents))
		}
	}
	if o.Output != "text" {
		return printOutput(stdout, o.Output, out, nil)
	}
	return nil
}

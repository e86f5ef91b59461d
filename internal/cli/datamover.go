package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	arcav1 "github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/storage/retry"
	"github.com/arca-backup/arca/internal/volumedata"
)

// `arca datamover` moves one volume's files between a mounted volume and
// the repository: the vault tier. It runs in the extension image, in the
// short-lived pods that mount a volume, and on any machine.

func newDatamoverCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "datamover",
		Short: "Move a volume's files between a mounted volume and the repository (the vault tier)",
	}
	cmd.AddCommand(newDatamoverBackupCommand(), newDatamoverRestoreCommand())
	return cmd
}

// DatamoverBackupOptions are the flags of `arca datamover backup`.
type DatamoverBackupOptions struct {
	RepoOptions
	Source     string
	Volume     string
	Tags       []string
	ResultFile string
	Readers    int
	// ProgressJSON writes progress as JSON lines on stderr (the extension
	// follows a mover pod's log).
	ProgressJSON bool
}

// addStorageRetryFlag registers --storage-retry, the retry budget of one
// storage call: a data-mover pod gives up on an unreachable repository
// after it (RepositoryUnavailable) instead of the storage's default.
func addStorageRetryFlag(fs *pflag.FlagSet, o *RepoOptions) {
	fs.Var((*retryBudget)(&o.retry), "storage-retry", "how long one storage call is retried before the repository counts as unreachable (RepositoryUnavailable); 0: the default, 10 attempts over about 3m")
}

// retryBudget is a flag setting retry.Options.MaxElapsed.
type retryBudget retry.Options

func (b *retryBudget) String() string { return time.Duration(b.MaxElapsed).String() }
func (b *retryBudget) Type() string   { return "duration" }
func (b *retryBudget) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("a duration ≥ 0, such as 30s or 5m")
	}
	b.MaxElapsed = d
	return nil
}

// repositoryUnavailable names the repository a data mover gave up on:
// its storage retries ran out (retry.GaveUpError). The code leads the
// message, which the extension reads from the pod's termination message.
func repositoryUnavailable(err error, url string) error {
	var gu *retry.GaveUpError
	var ue *location.UnreachableError
	if errors.As(err, &gu) || errors.As(err, &ue) {
		return fmt.Errorf("%s: the repository %s cannot be reached: %w", arcav1.CodeRepositoryUnavailable, url, err)
	}
	return err
}

// DatamoverResult is what `arca datamover backup` prints (JSON) and writes
// to --result-file: the recovery point holding the volume and its record.
type DatamoverResult = volumedata.MoverResult

func newDatamoverBackupCommand() *cobra.Command {
	o := &DatamoverBackupOptions{}
	cmd := &cobra.Command{
		Use:   "backup --repo URL --source DIR|DEVICE --volume NAMESPACE/CLAIM",
		Short: "Store a mounted volume's file tree (or a block device) in the repository as a recovery point",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDatamoverBackup(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	o.AddFlags(fs)
	fs.StringVar(&o.Source, "source", "", "the mounted volume: a directory, or a block device for a block-mode volume")
	fs.StringVar(&o.Volume, "volume", "", "the volume's name in the recovery point (namespace/claim)")
	fs.StringArrayVar(&o.Tags, "tag", nil, "tag the recovery point: key=value (repeatable)")
	fs.StringVar(&o.ResultFile, "result-file", "", "also write the JSON result here (a pod's /dev/termination-log)")
	fs.IntVar(&o.Readers, "readers", 0, "files read at once (default 4 per CPU)")
	addStorageRetryFlag(fs, &o.RepoOptions)
	fs.BoolVar(&o.ProgressJSON, "progress-json", false, `report progress as JSON lines on stderr ({"moverProgress":{"files":…,"bytes":…,"totalBytes":…}}), as data-mover pods do`)
	return cmd
}

func parseTags(tags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range tags {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, &UsageError{fmt.Errorf("tag %q: want key=value", t)}
		}
		out[k] = v
	}
	return out, nil
}

func runDatamoverBackup(ctx context.Context, o *DatamoverBackupOptions, stdout, stderr io.Writer) error {
	if o.Source == "" || o.Volume == "" {
		return &UsageError{errors.New("--source and --volume are required")}
	}
	tags, err := parseTags(o.Tags)
	if err != nil {
		return err
	}
	tags[arcav1.TagVolume] = o.Volume
	r, _, err := o.OpenOrInit(ctx)
	if err != nil {
		return repositoryUnavailable(err, o.Repo)
	}
	defer r.Close()
	started := time.Now().UTC()
	w, err := r.NewWriter(ctx)
	if err != nil {
		return err
	}
	pr := NewProgressRenderer(stderr, "datamover backup "+o.Volume)
	progress := func(p volumedata.Progress) { pr.Update(moverProgress("backup", p)) }
	if o.ProgressJSON {
		progress = progressJSON(stderr)
	}
	res, err := volumedata.Backup(ctx, w, o.Source, volumedata.BackupOptions{
		Name: o.Volume, Readers: o.Readers, Progress: progress,
	})
	if err != nil {
		_ = w.Abort(context.WithoutCancel(ctx))
		return repositoryUnavailable(fmt.Errorf("back up %s: %w", o.Source, err), o.Repo)
	}
	if !o.ProgressJSON {
		pr.Done(Progress{Phase: "stored", ItemsDone: res.Volume.Files, BytesDone: res.Volume.Bytes, Elapsed: time.Since(started)})
	}
	host, _ := os.Hostname()
	rp := &repo.RecoveryPoint{
		Name: "volume " + o.Volume, Started: started, Finished: time.Now().UTC(), Tags: tags,
		Source:     repo.Source{Server: host},
		VolumeData: []repo.VolumeData{res.Volume},
		Summary:    repo.Summary{Items: int(res.Volume.Files), Bytes: res.Volume.Bytes},
	}
	for _, wn := range res.Warnings {
		rp.Summary.Warnings = append(rp.Summary.Warnings, repo.Warning{Code: volumedata.WarnFileNotFaithful, Message: wn.Message, Object: wn.Path})
	}
	id, err := w.Commit(ctx, rp)
	if err != nil {
		return repositoryUnavailable(err, o.Repo)
	}
	out := DatamoverResult{RecoveryPoint: id.String(), Volume: res.Volume, Warnings: res.Warnings}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if o.ResultFile != "" {
		fit, err := out.Fit(volumedata.MaxResultBytes)
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.ResultFile, append(fit, '\n'), 0o644); err != nil {
			return fmt.Errorf("result file: %w", err)
		}
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// progressJSON writes progress as JSON lines (--progress-json), which the
// extension reads from a data-mover or restore pod's log.
func progressJSON(w io.Writer) func(volumedata.Progress) {
	enc := json.NewEncoder(w)
	return func(p volumedata.Progress) {
		_ = enc.Encode(volumedata.MoverProgressLine{Progress: &volumedata.MoverProgress{Files: p.Files, Bytes: p.Bytes, TotalBytes: p.TotalBytes}})
	}
}

func moverProgress(phase string, p volumedata.Progress) Progress {
	return Progress{Phase: phase, ItemsDone: p.Files, BytesDone: p.Bytes, BytesTotal: p.TotalBytes, Elapsed: p.Elapsed}
}

// VolumeRef chooses a volume of a recovery point in a repository.
type VolumeRef struct {
	RepoOptions
	RecoveryPoint string
	Volume        string
}

func (v *VolumeRef) addFlags(cmd *cobra.Command) {
	v.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&v.RecoveryPoint, "recovery-point", "", "recovery point ID, unique prefix, or latest")
	cmd.Flags().StringVar(&v.Volume, "volume", "", "the volume (namespace/claim); may be left out when the point holds one volume")
}

// openVolume resolves the repository (read-only), the point and the volume.
func (v *VolumeRef) openVolume(ctx context.Context) (volumedata.Source, error) {
	if v.RecoveryPoint == "" {
		return volumedata.Source{}, &UsageError{errors.New("--recovery-point is required")}
	}
	r, err := v.OpenReader(ctx)
	if err != nil {
		return volumedata.Source{}, err
	}
	rp, err := r.FindRecoveryPoint(ctx, v.RecoveryPoint)
	if err != nil {
		return volumedata.Source{}, err
	}
	var names []string
	for _, vd := range rp.VolumeData {
		names = append(names, vd.Name)
		if vd.Name == v.Volume || (v.Volume == "" && len(rp.VolumeData) == 1) {
			return volumedata.Source{Repo: r, Point: rp.ID.String(), Data: vd}, nil
		}
	}
	sort.Strings(names)
	switch {
	case len(names) == 0:
		return volumedata.Source{}, fmt.Errorf("recovery point %s holds no volume data (only snapshots or resources); back up with the vault tier", rp.ID.Short())
	case v.Volume == "":
		return volumedata.Source{}, &UsageError{fmt.Errorf("recovery point %s holds %d volumes: choose one with --volume (%s)", rp.ID.Short(), len(names), strings.Join(names, ", "))}
	default:
		return volumedata.Source{}, &UsageError{fmt.Errorf("recovery point %s has no volume %q; it holds: %s", rp.ID.Short(), v.Volume, strings.Join(names, ", "))}
	}
}

// DatamoverRestoreOptions are the flags of `arca datamover restore`.
type DatamoverRestoreOptions struct {
	VolumeRef
	Target  string
	Path    string
	Writers int
	// ProgressJSON writes progress as JSON lines on stderr (the extension
	// follows a restore pod's log).
	ProgressJSON bool
	// ResultFile receives the error when the restore fails (a pod's
	// /dev/termination-log, which the extension reads).
	ResultFile string
}

func newDatamoverRestoreCommand() *cobra.Command {
	o := &DatamoverRestoreOptions{}
	cmd := &cobra.Command{
		Use:   "restore --repo URL --recovery-point ID --volume NAMESPACE/CLAIM --target DIR|DEVICE",
		Short: "Write a stored volume (or a path in it) into a mounted volume",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Target == "" {
				return &UsageError{errors.New("--target is required")}
			}
			err := runVolumeRestore(cmd.Context(), &o.VolumeRef, o.Path, o.Target, o.Writers, o.ProgressJSON, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil && o.ResultFile != "" {
				msg := err.Error()
				if max := volumedata.MaxResultBytes - len("…\n"); len(msg) > max {
					msg = msg[:max] + "…"
				}
				if werr := os.WriteFile(o.ResultFile, []byte(msg+"\n"), 0o644); werr != nil {
					return fmt.Errorf("%w (and the result file: %v)", err, werr)
				}
			}
			return err
		},
	}
	o.addFlags(cmd)
	addStorageRetryFlag(cmd.Flags(), &o.RepoOptions)
	cmd.Flags().StringVar(&o.ResultFile, "result-file", "", "write the error here when the restore fails (a pod's /dev/termination-log)")
	cmd.Flags().StringVar(&o.Target, "target", "", "where to write: the mounted volume's directory, or a block device")
	cmd.Flags().StringVar(&o.Path, "path", "", "only this file or directory of the volume")
	cmd.Flags().IntVar(&o.Writers, "writers", 0, "files written at once (default 4 per CPU)")
	cmd.Flags().BoolVar(&o.ProgressJSON, "progress-json", false, `report progress as JSON lines on stderr ({"moverProgress":{"files":…,"bytes":…,"totalBytes":…}}), as restore pods do`)
	return cmd
}

func runVolumeRestore(ctx context.Context, v *VolumeRef, path, target string, writers int, asJSON bool, stdout, stderr io.Writer) error {
	src, err := v.openVolume(ctx)
	if err != nil {
		return repositoryUnavailable(err, v.Repo)
	}
	start := time.Now()
	pr := NewProgressRenderer(stderr, "restore "+src.Data.Name)
	progress := func(p volumedata.Progress) { pr.Update(moverProgress("restore", p)) }
	if asJSON {
		progress = progressJSON(stderr)
	}
	res, err := volumedata.Restore(ctx, src, target, volumedata.RestoreOptions{
		Path: path, Writers: writers, Progress: progress,
		Stop: func(err error) bool {
			var gu *retry.GaveUpError
			return errors.As(err, &gu)
		},
	})
	if err != nil {
		return repositoryUnavailable(err, v.Repo)
	}
	if !asJSON {
		pr.Done(Progress{Phase: "restored", ItemsDone: res.Files, BytesDone: res.Bytes, Elapsed: time.Since(start)})
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s: %s\n", w.Path, w.Message)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return res.Err()
}

// `arca recovery-point files ls|cat|restore`: file-level access to a
// vault-tier recovery point, read from the repository directly. No pod and
// no cluster are needed.

func newRecoveryPointFilesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files",
		Short: "List, print or extract files of a volume in a vault-tier recovery point (through the vault, or the repository with --repo)",
	}
	lo, lv := &VolumeRef{}, &PolicyScope{}
	var recursive bool
	var output string
	ls := &cobra.Command{
		Use:   "ls [PATH]",
		Short: "List a directory of the volume (or one file)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			p := ""
			if len(args) == 1 {
				p = args[0]
			}
			var rows []fileRow
			if lo.Repo == "" {
				var err error
				if rows, err = vaultFilesList(cmd.Context(), lv, lo, p, recursive); err != nil {
					return err
				}
			} else {
				src, err := lo.openVolume(cmd.Context())
				if err != nil {
					return err
				}
				err = volumedata.List(cmd.Context(), src, p, recursive, func(e repo.FileEntry) error {
					rows = append(rows, newFileRow(e))
					return nil
				})
				if err != nil {
					return err
				}
			}
			return printOutput(cmd.OutOrStdout(), output, map[string]any{"items": rows}, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "TYPE\tMODE\tOWNER\tSIZE\tMODIFIED\tPATH")
				for _, r := range rows {
					name := r.Path
					if r.Link != "" {
						name += " -> " + r.Link
					}
					fmt.Fprintf(tw, "%s\t%s\t%d:%d\t%d\t%s\t%s\n", r.Type, r.Mode, r.UID, r.GID, r.Size, r.Modified.Format(time.RFC3339), name)
				}
			})
		},
	}
	lo.addFlags(ls)
	vaultFilesFlags(ls, lv)
	ls.Flags().BoolVarP(&recursive, "recursive", "R", false, "list everything below the path")
	ls.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")

	co, cv := &VolumeRef{}, &PolicyScope{}
	cat := &cobra.Command{
		Use:   "cat PATH",
		Short: "Print a file of the volume",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if co.Repo == "" {
				return vaultFilesCat(cmd.Context(), cv, co, args[0], cmd.OutOrStdout())
			}
			src, err := co.openVolume(cmd.Context())
			if err != nil {
				return err
			}
			return volumedata.Cat(cmd.Context(), src, args[0], cmd.OutOrStdout())
		},
	}
	co.addFlags(cat)
	vaultFilesFlags(cat, cv)

	ro, rv := &VolumeRef{}, &PolicyScope{}
	var writers int
	var maxBytes int64
	restore := &cobra.Command{
		Use:   "restore PATH TARGET",
		Short: "Extract a file or directory of the volume into TARGET (a directory's content goes into TARGET)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ro.Repo == "" {
				return vaultFilesRestore(cmd.Context(), rv, ro, args[0], args[1], maxBytes, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			return runVolumeRestore(cmd.Context(), ro, args[0], args[1], writers, false, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	ro.addFlags(restore)
	vaultFilesFlags(restore, rv)
	restore.Flags().IntVar(&writers, "writers", 0, "files written at once (default 4 per CPU; with --repo)")
	restore.Flags().Int64Var(&maxBytes, "max-bytes", DefaultVaultRestoreMaxBytes, "the most file data a restore through the vault may select (without --repo; larger: use --repo)")
	cmd.AddCommand(ls, cat, restore)
	return cmd
}

type fileRow struct {
	Type     string    `json:"type"`
	Path     string    `json:"path"`
	Mode     string    `json:"mode"`
	UID      uint32    `json:"uid"`
	GID      uint32    `json:"gid"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
	Link     string    `json:"link,omitempty"`
}

func newFileRow(e repo.FileEntry) fileRow {
	return fileRow{Type: e.Type.String(), Path: "/" + e.Path, Mode: fmt.Sprintf("%04o", e.Mode), UID: e.UID, GID: e.GID,
		Size: e.Size, Modified: time.Unix(0, e.MTime).UTC(), Link: e.Link}
}

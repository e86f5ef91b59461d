package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	arcav1 "github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/service"
)

// `arca recovery-point contents|volumes|diff`, and the vault mode of `arca
// recovery-point files ls|cat`: what a recovery point holds, asked through
// the vault's API. The vault asks the extension of the point's cluster,
// which holds the repository's password (docs/vault.md, "What a recovery
// point holds"). Every page of the answer is fetched and printed.

// maxPages bounds how many pages a command fetches (a runaway token).
const maxPages = 10000

func newRecoveryPointContentsCommand() *cobra.Command {
	o := &PolicyScope{}
	var req service.ContentsRequest
	cmd := &cobra.Command{
		Use:   "contents ID [--namespace N [--type T [--name X]]]",
		Short: "Browse a recovery point: its namespaces, a namespace's types, a type's objects, or one object's YAML",
		Long: "Browse what a recovery point holds, through the vault (the cluster's extension reads the repository).\n" +
			"No --namespace lists the namespaces (\"-\" holds the cluster-scoped objects); --namespace lists its types;\n" +
			"--type (resource.group, e.g. deployments.apps, or configmaps) lists its objects; --name prints the object's YAML.\n" +
			"Secrets' values are shown only to callers with storageLocations/data/read at the point's storage location.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return runContents(cmd.Context(), c, o.Vault, args[0], req, o.Output, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&req.Namespace, "namespace", "", `a namespace ("-" for cluster-scoped objects)`)
	cmd.Flags().StringVar(&req.Type, "type", "", "a type: resource.group (deployments.apps), or the resource of the core group (configmaps)")
	cmd.Flags().StringVar(&req.Name, "name", "", "an object's name: print its YAML")
	return cmd
}

func hiddenNote(w io.Writer, hidden int64) {
	if hidden > 0 {
		fmt.Fprintf(w, "note: %d objects are hidden: they are outside what the cluster owner's ClusterTrustPolicy lets this vault see\n", hidden)
	}
}

func runContents(ctx context.Context, c *client.Client, vault, id string, req service.ContentsRequest, output string, stdout, stderr io.Writer) error {
	if req.Name != "" && (req.Namespace == "" || req.Type == "") {
		return &UsageError{errors.New(`--name needs --namespace ("-" for a cluster-scoped object) and --type`)}
	}
	if req.Type != "" && req.Namespace == "" {
		return &UsageError{errors.New(`--type needs --namespace ("-" for cluster-scoped objects)`)}
	}
	all := &arcav1.RecoveryPointQueryResult{}
	for range maxPages {
		res, err := c.RecoveryPointContents(ctx, vault, id, req)
		if err != nil {
			return err
		}
		all.Namespaces = append(all.Namespaces, res.Namespaces...)
		all.Types = append(all.Types, res.Types...)
		all.Objects = append(all.Objects, res.Objects...)
		all.Object, all.Truncated, all.Hidden = res.Object, res.Truncated, res.Hidden
		if res.Continue == "" {
			break
		}
		req.Continue = res.Continue
	}
	all.Continue = ""
	if req.Name != "" && output != "json" {
		_, err := io.WriteString(stdout, all.Object)
		if all.Truncated {
			fmt.Fprintf(stderr, "note: the YAML is cut at %d bytes\n", arcav1.MaxQueryReadBytes)
		}
		return err
	}
	err := printOutput(stdout, output, all, func(tw *tabwriter.Writer) {
		switch {
		case req.Namespace == "":
			fmt.Fprintln(tw, "NAMESPACE\tOBJECTS")
			for _, n := range all.Namespaces {
				fmt.Fprintf(tw, "%s\t%d\n", n.Name, n.Count)
			}
		case req.Type == "":
			fmt.Fprintln(tw, "TYPE\tOBJECTS")
			for _, n := range all.Types {
				fmt.Fprintf(tw, "%s\t%d\n", n.Name, n.Count)
			}
		default:
			fmt.Fprintln(tw, "NAME\tKIND\tSIZE")
			for _, ob := range all.Objects {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", ob.Name, ob.Kind, ob.Size)
			}
		}
	})
	hiddenNote(stderr, all.Hidden)
	return err
}

func newRecoveryPointVolumesCommand() *cobra.Command {
	o := &PolicyScope{}
	cmd := &cobra.Command{
		Use:   "volumes ID",
		Short: "List a recovery point's volumes: their snapshot records and vault-tier data",
		Long: "List the volumes (claims) of a recovery point, through the vault: what each snapshot record says (PV, driver,\n" +
			"storage class, size, snapshot handle), why a claim was skipped, and for vault-tier data its files and bytes.\n" +
			"Browse a vault-tier volume's files with `arca recovery-point files ls --volume NAMESPACE/CLAIM`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return runVolumes(cmd.Context(), c, o.Vault, args[0], o.Output, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runVolumes(ctx context.Context, c *client.Client, vault, id, output string, stdout, stderr io.Writer) error {
	res, err := c.RecoveryPointVolumes(ctx, vault, id)
	if err != nil {
		return err
	}
	err = printOutput(stdout, output, res, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "VOLUME\tPV\tDRIVER\tSTORAGE CLASS\tSIZE\tSNAPSHOT\tVAULT TIER")
		for _, v := range res.Volumes {
			snap, tier := v.SnapshotHandle, "-"
			if v.SkippedCode != "" {
				snap = "skipped: " + v.SkippedCode
			}
			if d := v.Data; d != nil {
				tier = fmt.Sprintf("%d files, %d bytes (%d new)", d.Files, d.Bytes, d.NewBytes)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Name, dash(v.PV), dash(v.Driver), dash(v.StorageClass), v.Size, dash(snap), tier)
		}
	})
	if len(res.Volumes) == 0 && output == "table" {
		fmt.Fprintln(stderr, "note: the recovery point holds no volumes")
	}
	if res.Hidden > 0 {
		fmt.Fprintf(stderr, "note: %d volumes are hidden: their namespaces are outside what the cluster owner's ClusterTrustPolicy lets this vault see\n", res.Hidden)
	}
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newRecoveryPointDiffCommand() *cobra.Command {
	o := &PolicyScope{}
	var req service.DiffRequest
	cmd := &cobra.Command{
		Use:   "diff ID (--against ID | --live)",
		Short: "Compare a recovery point with another one or with the live cluster, object by object and field by field",
		Long: "Compare a recovery point, through the vault, with another recovery point of the same storage location (--against)\n" +
			"or with the cluster as it is now (--live, selected by the point's own backup configuration).\n" +
			"+ added since the point, - removed, ~ changed with its fields; Secrets' data fields are redacted unless you may\n" +
			"read the storage location's data. `arca local diff` does the same against a repository you hold the password of.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Live == (req.Against != "") {
				return &UsageError{errors.New("give --against ID (another recovery point) or --live")}
			}
			out := o.Output
			if out == "table" {
				out = "text"
			}
			if err := checkTextOutput(out); err != nil {
				return err
			}
			o.Output = "table" // the client's check; the output is out
			c, err := o.client()
			if err != nil {
				return err
			}
			return runDiff(cmd.Context(), c, o.Vault, args[0], req, out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := pflag.NewFlagSet("diff", pflag.ContinueOnError)
	o.AddFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "output" {
			f.Usage = "output format: text, json or yaml"
		}
		cmd.Flags().AddFlag(f)
	})
	o.fs = cmd.Flags()
	cmd.Flags().StringVar(&req.Against, "against", "", "the other recovery point (its vault ID)")
	cmd.Flags().BoolVar(&req.Live, "live", false, "compare with the live cluster")
	cmd.Flags().StringVar(&req.Namespace, "namespace", "", "only this namespace")
	cmd.Flags().StringVar(&req.Type, "type", "", "only this type (resource.group)")
	cmd.Flags().StringVar(&req.Name, "name", "", "only objects of this name")
	return cmd
}

func runDiff(ctx context.Context, c *client.Client, vault, id string, req service.DiffRequest, output string, stdout, stderr io.Writer) error {
	all := &arcav1.RecoveryPointQueryResult{}
	for range maxPages {
		res, err := c.RecoveryPointDiff(ctx, vault, id, req)
		if err != nil {
			return err
		}
		all.Changes = append(all.Changes, res.Changes...)
		all.Added, all.Removed, all.Modified, all.Unchanged, all.Hidden = res.Added, res.Removed, res.Modified, res.Unchanged, res.Hidden
		if res.Continue == "" {
			break
		}
		req.Continue = res.Continue
	}
	if output != "text" {
		return printOutput(stdout, output, all, nil)
	}
	for _, ch := range all.Changes {
		switch ch.Type {
		case "Added":
			fmt.Fprintf(stdout, "+ %s\n", ch.Object)
		case "Removed":
			fmt.Fprintf(stdout, "- %s\n", ch.Object)
		default:
			fmt.Fprintf(stdout, "~ %s\n", ch.Object)
			for _, f := range ch.Fields {
				switch {
				case f.Old == "":
					fmt.Fprintf(stdout, "    + %s: %s\n", f.Path, shortValue(f.New))
				case f.New == "":
					fmt.Fprintf(stdout, "    - %s: %s\n", f.Path, shortValue(f.Old))
				default:
					fmt.Fprintf(stdout, "    ~ %s: %s → %s\n", f.Path, shortValue(f.Old), shortValue(f.New))
				}
			}
		}
	}
	fmt.Fprintf(stdout, "%d added, %d removed, %d changed, %d unchanged\n", all.Added, all.Removed, all.Modified, all.Unchanged)
	hiddenNote(stderr, all.Hidden)
	return nil
}

func shortValue(s string) string {
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}

// vaultFilesFlags registers the vault client's flags on a files command
// (whose --output is its own): without --repo, the command goes through
// the vault, and --recovery-point is the vault's recovery point ID.
func vaultFilesFlags(cmd *cobra.Command, o *PolicyScope) {
	fs := pflag.NewFlagSet("vault", pflag.ContinueOnError)
	o.AddFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "output" {
			f.Usage += " (without --repo)"
			cmd.Flags().AddFlag(f)
		}
	})
	o.fs = cmd.Flags()
}

// vaultFilesList lists a directory of a vault-tier volume through the vault.
func vaultFilesList(ctx context.Context, o *PolicyScope, v *VolumeRef, p string, recursive bool) ([]fileRow, error) {
	if v.RecoveryPoint == "" {
		return nil, &UsageError{errors.New("--recovery-point is required (the vault's recovery point ID; or --repo and a repository ID)")}
	}
	if recursive {
		return nil, &UsageError{errors.New("--recursive lists against the repository only (--repo); through the vault, list one directory at a time")}
	}
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	req := service.FilesRequest{Volume: v.Volume, Path: p}
	var rows []fileRow
	for range maxPages {
		res, err := c.RecoveryPointFiles(ctx, o.Vault, v.RecoveryPoint, req)
		if err != nil {
			return nil, err
		}
		for _, f := range res.Files {
			rows = append(rows, fileRow{Type: f.Type, Path: f.Path, Mode: f.Mode, UID: f.UID, GID: f.GID, Size: f.Size, Modified: f.Modified.Time, Link: f.Link})
		}
		if res.Continue == "" {
			break
		}
		req.Continue = res.Continue
	}
	return rows, nil
}

// vaultFilesCat prints a file of a vault-tier volume through the vault,
// window by window.
func vaultFilesCat(ctx context.Context, o *PolicyScope, v *VolumeRef, p string, out io.Writer) error {
	if v.RecoveryPoint == "" {
		return &UsageError{errors.New("--recovery-point is required (the vault's recovery point ID; or --repo and a repository ID)")}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	req := service.FilesRequest{Volume: v.Volume, Path: p, Read: true}
	for {
		res, err := c.RecoveryPointFiles(ctx, o.Vault, v.RecoveryPoint, req)
		if err != nil {
			return err
		}
		if _, err := out.Write(res.Data); err != nil {
			return err
		}
		if res.EOF || len(res.Data) == 0 {
			return nil
		}
		req.Offset += int64(len(res.Data))
	}
}

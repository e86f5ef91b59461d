package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/store"
)

func newVaultCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Run a backup vault and manage its vaults",
	}
	cmd.AddCommand(newVaultServeCommand(), newVaultInitCommand(), newVaultCreateCommand(), newVaultListCommand(),
		newVaultShowCommand(), newVaultDeleteCommand(), newVaultSyncCommand(), newVaultUpdateCommand(), newVaultUsageCommand())
	return cmd
}

// ---- API client flags ----

// VaultClientOptions say how to reach the vault API.
type VaultClientOptions struct {
	URL, Token, CACert string
	Insecure           bool
	Output             string
	fs                 *pflag.FlagSet // to tell flags given from defaults (config.go)
}

// AddFlags registers the client flags; defaults come from the environment.
func (o *VaultClientOptions) AddFlags(fs *pflag.FlagSet) {
	url := os.Getenv("ARCA_VAULT_URL")
	if url == "" {
		url = "https://127.0.0.1:8443"
	}
	fs.StringVar(&o.URL, "vault-url", url, "vault API base URL (env ARCA_VAULT_URL)")
	fs.StringVar(&o.Token, "token", os.Getenv("ARCA_TOKEN"), "API bearer token (env ARCA_TOKEN)")
	fs.StringVar(&o.CACert, "ca-cert", os.Getenv("ARCA_CA_CERT"), "PEM certificate to trust for the vault (env ARCA_CA_CERT); default: the local vault's generated certificate if present")
	fs.BoolVar(&o.Insecure, "insecure-skip-tls-verify", false, "do not verify the vault's certificate (testing only)")
	fs.StringVarP(&o.Output, "output", "o", "table", "output format: table, json or yaml")
	o.fs = fs
}

func (o *VaultClientOptions) client() (*client.Client, error) {
	if err := checkOutput(o.Output); err != nil {
		return nil, err
	}
	o.applyContext()
	if o.Token == "" {
		return nil, &UsageError{errors.New("no API token: pass --token or set ARCA_TOKEN (arca vault init prints the first one)")}
	}
	ca := o.CACert
	if ca == "" && !o.Insecure {
		if def := localVaultCert(); def != "" {
			if _, err := os.Stat(def); err == nil {
				ca = def
			}
		}
	}
	return client.New(o.URL, o.Token, client.TLSOptions{CAFile: ca, InsecureSkipVerify: o.Insecure})
}

func checkOutput(o string) error {
	switch o {
	case "table", "json", "yaml":
		return nil
	}
	return &UsageError{fmt.Errorf("--output %q: want table, json or yaml", o)}
}

// printOutput writes v as JSON or YAML, or calls table for the table form
// (table may be nil when format is known not to be "table").
func printOutput(w io.Writer, format string, v any, table func(tw *tabwriter.Writer)) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func vaultTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// ---- create / list / show / delete ----

func newVaultCreateCommand() *cobra.Command {
	o := &VaultClientOptions{}
	var desc string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a vault",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			v, err := c.CreateVault(cmd.Context(), args[0], desc)
			if err != nil {
				return err
			}
			return printVaults(cmd.OutOrStdout(), o.Output, v, []*store.Vault{v})
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&desc, "description", "", "free text")
	return cmd
}

func newVaultListCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List vaults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			vs, err := c.ListVaults(cmd.Context())
			if err != nil {
				return err
			}
			if vs == nil {
				vs = []*store.Vault{}
			}
			return printVaults(cmd.OutOrStdout(), o.Output, map[string]any{"items": vs}, vs)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newVaultShowCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a vault",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			v, err := c.GetVault(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printVaults(cmd.OutOrStdout(), o.Output, v, []*store.Vault{v})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newVaultDeleteCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an empty vault",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteVault(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "vault %q deleted\n", args[0])
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func printVaults(w io.Writer, format string, v any, vs []*store.Vault) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tDESCRIPTION\tSOFT DELETE\tIMMUTABILITY\tRESOURCE GUARD\tCREATED\tVERSION")
		for _, x := range vs {
			soft, guard := "off", "off"
			if x.SoftDeleteDays > 0 {
				soft = fmt.Sprintf("%d days", x.SoftDeleteDays)
			}
			if x.ResourceGuard {
				guard = "on"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", x.Name, x.Description, soft, x.Immutability, guard, vaultTime(x.CreatedAt), x.Version)
		}
	})
}

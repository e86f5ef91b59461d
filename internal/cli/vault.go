package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
)

func newVaultCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Run a backup vault and manage its vaults",
	}
	cmd.AddCommand(newVaultServeCommand(), newVaultInitCommand(), newVaultCreateCommand(), newVaultListCommand(),
		newVaultShowCommand(), newVaultDeleteCommand(), newVaultSyncCommand())
	return cmd
}

// ---- serve / init ----

// VaultServerOptions are the flags of `vault serve` and `vault init`.
type VaultServerOptions struct {
	Listen, DataDir, DB, TLSCert, TLSKey string
	Jitter                               time.Duration
	LogFormat                            string
}

// AddFlags registers the server flags.
func (o *VaultServerOptions) AddFlags(fs *pflag.FlagSet, serve bool) {
	fs.StringVar(&o.DataDir, "data-dir", server.DefaultDataDir(), "directory for the SQLite database, TLS certificate and keys")
	fs.StringVar(&o.DB, "db", os.Getenv("ARCA_VAULT_DB"), "PostgreSQL URL (postgres://…) instead of the embedded SQLite database (env ARCA_VAULT_DB)")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "TLS certificate (PEM); default: a self-signed one generated under --data-dir")
	fs.StringVar(&o.TLSKey, "tls-key", "", "TLS private key (PEM) for --tls-cert")
	if serve {
		fs.StringVar(&o.Listen, "listen", "127.0.0.1:8443", "address to serve the API on")
		fs.DurationVar(&o.Jitter, "schedule-jitter", 0, "spread scheduled backups sharing a slot over up to this long (max 30m)")
		fs.StringVar(&o.LogFormat, "log-format", "json", "log format: json or text")
	}
}

func (o *VaultServerOptions) options(stderr io.Writer) (server.Options, error) {
	var h slog.Handler
	switch o.LogFormat {
	case "json", "":
		h = slog.NewJSONHandler(stderr, nil)
	case "text":
		h = slog.NewTextHandler(stderr, nil)
	default:
		return server.Options{}, &UsageError{fmt.Errorf("--log-format %q: want json or text", o.LogFormat)}
	}
	if o.Jitter < 0 || o.Jitter > 30*time.Minute {
		return server.Options{}, &UsageError{fmt.Errorf("--schedule-jitter %v: want 0 to 30m", o.Jitter)}
	}
	if o.DB != "" && !strings.HasPrefix(o.DB, "postgres://") && !strings.HasPrefix(o.DB, "postgresql://") {
		return server.Options{}, &UsageError{fmt.Errorf("--db: want a postgres:// URL")}
	}
	return server.Options{Listen: o.Listen, DataDir: o.DataDir, DB: o.DB, TLSCert: o.TLSCert, TLSKey: o.TLSKey,
		Jitter: o.Jitter, Log: slog.New(h)}, nil
}

func newVaultServeCommand() *cobra.Command {
	o := &VaultServerOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the vault API, scheduler, job runner and retention",
		Long: `Serve the vault: HTTPS JSON API under /api/v1 (OpenAPI at /api/v1/openapi.json),
/healthz and /metrics. With no flags everything lives under the data directory:
the SQLite database and a self-signed TLS certificate generated on first start.
Run 'arca vault init' once first to get the admin token.

The vault runs backups and restores in clusters registered with
'arca trusted-access enable' (through the extension installed there); jobs
of a cluster that is not registered fail with ClusterNotConnected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := o.options(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return server.Run(cmd.Context(), opts)
		},
	}
	o.AddFlags(cmd.Flags(), true)
	return cmd
}

func newVaultInitCommand() *cobra.Command {
	o := &VaultServerOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the vault's database, TLS certificate and first admin token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunVaultInit(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd.Flags(), false)
	return cmd
}

// RunVaultInit initialises a vault and prints the admin token once.
func RunVaultInit(ctx context.Context, o *VaultServerOptions, stdout io.Writer) error {
	opts, err := o.options(io.Discard)
	if err != nil {
		return err
	}
	res, err := server.Init(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `Vault initialised in %s

Admin token (shown only this once; store it safely):

  %s

TLS certificate: %s
SHA-256 fingerprint: %s

Then:
  arca vault serve --data-dir %s
  export ARCA_VAULT_URL=https://127.0.0.1:8443 ARCA_TOKEN=<the token above> ARCA_CA_CERT=%s
  arca vault create default
`, res.DataDir, res.Token, res.CertFile, res.Fingerprint, res.DataDir, res.CertFile)
	return nil
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
		def := filepath.Join(server.DefaultDataDir(), "tls", "tls.crt")
		if _, err := os.Stat(def); err == nil {
			ca = def
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
		fmt.Fprintln(tw, "NAME\tDESCRIPTION\tCREATED\tVERSION")
		for _, x := range vs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", x.Name, x.Description, vaultTime(x.CreatedAt), x.Version)
		}
	})
}

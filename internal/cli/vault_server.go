//go:build !extensionimage

package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/server"
)

// This file holds the vault server's commands. The extension image's arca
// is built with the extensionimage tag, which leaves them out (see
// vault_server_omitted.go): the vault runs outside the cluster, and its
// SQLite and PostgreSQL stores are a sixth of the binary.

// localVaultCert is the certificate `arca vault init` generates in the
// default data directory: the client trusts it when no --ca-cert is given.
func localVaultCert() string {
	return filepath.Join(server.DefaultDataDir(), "tls", "tls.crt")
}

// ---- serve / init ----

// VaultServerOptions are the flags of `vault serve` and `vault init`.
type VaultServerOptions struct {
	Listen, DataDir, DB, TLSCert, TLSKey string
	Jitter                               time.Duration
	LogFormat                            string
	// CredentialKeyFile holds the key sealing cluster credentials.
	CredentialKeyFile string
	// ClusterCredentialLifetime bounds the renewal of a cluster's token.
	ClusterCredentialLifetime time.Duration
	// TokenLifetime and TokenMaxLifetime are ISO 8601 durations.
	TokenLifetime, TokenMaxLifetime string
}

// AddFlags registers the server flags.
func (o *VaultServerOptions) AddFlags(fs *pflag.FlagSet, serve bool) {
	fs.StringVar(&o.DataDir, "data-dir", server.DefaultDataDir(), "directory for the SQLite database, TLS certificate and keys")
	fs.StringVar(&o.DB, "db", os.Getenv("ARCA_VAULT_DB"), "PostgreSQL URL (postgres://…) instead of the embedded SQLite database (env ARCA_VAULT_DB)")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "TLS certificate (PEM); default: a self-signed one generated under --data-dir")
	fs.StringVar(&o.TLSKey, "tls-key", "", "TLS private key (PEM) for --tls-cert")
	fs.StringVar(&o.CredentialKeyFile, "credential-key-file", "", "file holding the key (32 bytes, base64) that seals cluster credentials in the database; every replica needs the same one (env ARCA_VAULT_CREDENTIAL_KEY gives the key itself); default: credential.key under --data-dir, generated on first start")
	fs.StringVar(&o.TokenMaxLifetime, "token-max-lifetime", server.DefaultTokenMaxLifetime.String(), "longest lifetime of an API token, ISO 8601 (P90D, P1Y); vault init's admin token gets it")
	if serve {
		fs.StringVar(&o.TokenLifetime, "token-lifetime", server.DefaultTokenLifetime.String(), "lifetime of an API token created without --expires-in, ISO 8601 (P7D, P30D)")
		fs.DurationVar(&o.ClusterCredentialLifetime, "cluster-credential-max-lifetime", clusterdriver.DefaultCredentialLifetime,
			"renew a cluster's token for at most this long after its owner enabled trusted access; then the owner runs arca trusted-access enable again")
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
	opts := server.Options{Listen: o.Listen, DataDir: o.DataDir, DB: o.DB, TLSCert: o.TLSCert, TLSKey: o.TLSKey,
		Jitter: o.Jitter, Log: slog.New(h), Clusters: clusterdriver.NewTrustedAccessRenewingFor(o.ClusterCredentialLifetime),
		CredentialKeyFile: o.CredentialKeyFile, CredentialKey: os.Getenv("ARCA_VAULT_CREDENTIAL_KEY")}
	for _, l := range []struct {
		flag, v string
		to      *policy.Duration
	}{{"--token-lifetime", o.TokenLifetime, &opts.TokenLifetime}, {"--token-max-lifetime", o.TokenMaxLifetime, &opts.TokenMaxLifetime}} {
		if l.v == "" {
			continue
		}
		d, err := policy.ParseDuration(l.v)
		if err != nil {
			return server.Options{}, &UsageError{fmt.Errorf("%s %q: %v", l.flag, l.v, err)}
		}
		*l.to = d
	}
	return opts, nil
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

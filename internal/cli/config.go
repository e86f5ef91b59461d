package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// ConfigEnv overrides the config file's path.
const ConfigEnv = "ARCA_CONFIG"

// Config is ~/.config/arca/config.yaml: named contexts saying how to reach
// a vault server, so that --vault-url, --token, --ca-cert and --vault need
// not be repeated. Flags win over the environment, which wins over the
// current context.
type Config struct {
	CurrentContext string          `json:"currentContext,omitempty"`
	Contexts       []ConfigContext `json:"contexts,omitempty"`
}

// ConfigContext is one vault server and default vault.
type ConfigContext struct {
	Name     string `json:"name"`
	VaultURL string `json:"vaultURL,omitempty"`
	Token    string `json:"token,omitempty"`
	CACert   string `json:"caCert,omitempty"`
	Insecure bool   `json:"insecureSkipTLSVerify,omitempty"`
	Vault    string `json:"vault,omitempty"`
}

// ConfigPath is $ARCA_CONFIG, else <user config dir>/arca/config.yaml.
func ConfigPath() string {
	if p := os.Getenv(ConfigEnv); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "arca", "config.yaml")
}

// LoadConfig reads the config file; a missing file is an empty config.
func LoadConfig() (*Config, error) {
	c := &Config{}
	p := ConfigPath()
	if p == "" {
		return c, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

// Save writes the config file (0600: it holds tokens).
func (c *Config) Save() error {
	p := ConfigPath()
	if p == "" {
		return errors.New("no config directory: set " + ConfigEnv)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o600)
}

// Current is the current context, or nil.
func (c *Config) Current() *ConfigContext {
	return c.find(c.CurrentContext)
}

func (c *Config) find(name string) *ConfigContext {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i]
		}
	}
	return nil
}

// currentContext loads the current context; errors count as none, so that
// a broken config file never blocks commands given all their flags.
func currentContext() *ConfigContext {
	c, err := LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "arca: ignoring config file:", err)
		return nil
	}
	return c.Current()
}

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage contexts in the config file (vault URL, token, CA, default vault)",
		Long: `The config file (` + "`$ARCA_CONFIG`" + `, default ~/.config/arca/config.yaml) holds named
contexts. Commands that talk to a vault take --vault-url, --token, --ca-cert
and --vault from the flags, else the environment (ARCA_VAULT_URL, ARCA_TOKEN,
ARCA_CA_CERT, ARCA_VAULT), else the current context.`,
	}
	cmd.AddCommand(newConfigSetContextCommand(), newConfigUseContextCommand(), newConfigViewCommand(), newConfigDeleteContextCommand())
	return cmd
}

func newConfigSetContextCommand() *cobra.Command {
	var in ConfigContext
	var use bool
	cmd := &cobra.Command{
		Use:   "set-context NAME",
		Short: "Create or change a context (only the flags given change)",
		Example: `  arca config set-context local --vault-url https://127.0.0.1:8443 --token "$ARCA_TOKEN" \
    --ca-cert ~/.local/share/arca/vault/tls/tls.crt --vault default --use
  arca config set-context local --vault prod   # change only the default vault`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := LoadConfig()
			if err != nil {
				return err
			}
			ctx := c.find(args[0])
			if ctx == nil {
				c.Contexts = append(c.Contexts, ConfigContext{Name: args[0]})
				ctx = &c.Contexts[len(c.Contexts)-1]
			}
			fs := cmd.Flags()
			for flag, set := range map[string]func(){
				"vault-url": func() { ctx.VaultURL = in.VaultURL }, "token": func() { ctx.Token = in.Token },
				"ca-cert": func() { ctx.CACert = in.CACert }, "vault": func() { ctx.Vault = in.Vault },
				"insecure-skip-tls-verify": func() { ctx.Insecure = in.Insecure },
			} {
				if fs.Changed(flag) {
					set()
				}
			}
			if ctx.CACert != "" {
				if abs, err := filepath.Abs(ctx.CACert); err == nil {
					ctx.CACert = abs
				}
			}
			if use || c.CurrentContext == "" {
				c.CurrentContext = args[0]
			}
			if err := c.Save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q saved in %s (current: %s)\n", args[0], ConfigPath(), c.CurrentContext)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&in.VaultURL, "vault-url", "", "vault API base URL")
	fs.StringVar(&in.Token, "token", "", "API bearer token")
	fs.StringVar(&in.CACert, "ca-cert", "", "PEM certificate to trust for the vault")
	fs.BoolVar(&in.Insecure, "insecure-skip-tls-verify", false, "do not verify the vault's certificate (testing only)")
	fs.StringVar(&in.Vault, "vault", "", "default vault")
	fs.BoolVar(&use, "use", false, "make it the current context")
	return cmd
}

func newConfigUseContextCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "use-context NAME",
		Short:   "Make a context the current one",
		Example: "  arca config use-context prod",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := LoadConfig()
			if err != nil {
				return err
			}
			if c.find(args[0]) == nil {
				return &UsageError{fmt.Errorf("no context %q in %s (arca config view)", args[0], ConfigPath())}
			}
			c.CurrentContext = args[0]
			if err := c.Save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "current context: %s\n", args[0])
			return nil
		},
	}
}

func newConfigDeleteContextCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete-context NAME",
		Short:   "Remove a context",
		Example: "  arca config delete-context old-lab",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := LoadConfig()
			if err != nil {
				return err
			}
			kept := c.Contexts[:0]
			for _, x := range c.Contexts {
				if x.Name != args[0] {
					kept = append(kept, x)
				}
			}
			if len(kept) == len(c.Contexts) {
				return &UsageError{fmt.Errorf("no context %q", args[0])}
			}
			c.Contexts = kept
			if c.CurrentContext == args[0] {
				c.CurrentContext = ""
			}
			if err := c.Save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q deleted\n", args[0])
			return nil
		},
	}
}

func newConfigViewCommand() *cobra.Command {
	var output string
	var raw bool
	cmd := &cobra.Command{
		Use:     "view",
		Short:   "Show the contexts (tokens redacted unless --raw)",
		Example: "  arca config view\n  arca config view -o yaml --raw",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := LoadConfig()
			if err != nil {
				return err
			}
			return printConfig(cmd.OutOrStdout(), output, c, raw)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().BoolVar(&raw, "raw", false, "show tokens")
	return cmd
}

func printConfig(w io.Writer, format string, c *Config, raw bool) error {
	out := *c
	out.Contexts = append([]ConfigContext(nil), c.Contexts...)
	sort.Slice(out.Contexts, func(i, j int) bool { return out.Contexts[i].Name < out.Contexts[j].Name })
	if !raw {
		for i := range out.Contexts {
			if out.Contexts[i].Token != "" {
				out.Contexts[i].Token = "REDACTED"
			}
		}
	}
	return printOutput(w, format, out, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "CURRENT\tNAME\tVAULT URL\tVAULT\tTOKEN\tCA CERT")
		for _, x := range out.Contexts {
			cur := ""
			if x.Name == c.CurrentContext {
				cur = "*"
			}
			tok := "-"
			if x.Token != "" {
				tok = x.Token
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur, x.Name, x.VaultURL, x.Vault, tok, x.CACert)
		}
	})
}

// applyContext fills in what neither a flag nor the environment gave from
// the current context.
func (o *VaultClientOptions) applyContext() *ConfigContext {
	if o.fs == nil {
		return nil
	}
	ctx := currentContext()
	if ctx == nil {
		return nil
	}
	unset := func(flag, env string) bool { return !o.fs.Changed(flag) && os.Getenv(env) == "" }
	if ctx.VaultURL != "" && unset("vault-url", "ARCA_VAULT_URL") {
		o.URL = ctx.VaultURL
	}
	if ctx.Token != "" && unset("token", "ARCA_TOKEN") {
		o.Token = ctx.Token
	}
	if ctx.CACert != "" && unset("ca-cert", "ARCA_CA_CERT") {
		o.CACert = ctx.CACert
	}
	if ctx.Insecure && !o.fs.Changed("insecure-skip-tls-verify") {
		o.Insecure = true
	}
	return ctx
}

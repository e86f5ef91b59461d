//go:build !extensionimage

package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- arca token ----

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the vault's API tokens (create one for a person or a team, list, revoke)",
		Long: `API tokens authenticate callers of the vault. Each token belongs to a
principal (user:NAME, or a plain NAME); what the principal may do is decided by
its role assignments (arca role assign). Tokens expire: without --expires-in a
token lives the vault's default lifetime (30 days unless the vault was started
with --token-lifetime), and no token may live longer than the vault's maximum
(1 year unless --token-max-lifetime). Creating, listing and revoking tokens
needs Owner at / (actions tokens/write and tokens/read).`,
	}
	cmd.AddCommand(newTokenCreateCommand(), newTokenListCommand(), newTokenRevokeCommand())
	return cmd
}

func newTokenCreateCommand() *cobra.Command {
	o := &VaultClientOptions{}
	var principal, expiresIn string
	cmd := &cobra.Command{
		Use:   "create NAME [--principal P] [--expires-in P30D]",
		Short: "Create an API token for a principal and print it once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if principal != "" {
				if err := rbac.ValidPrincipal(principal); err != nil {
					return &UsageError{fmt.Errorf("--principal: %w", err)}
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), args[0], principal, expiresIn)
			if err != nil {
				return err
			}
			if o.Output != "table" {
				return printOutput(cmd.OutOrStdout(), o.Output, t, nil)
			}
			exp := "never"
			if t.ExpiresAt != nil {
				exp = vaultTime(*t.ExpiresAt)
			}
			fmt.Fprintf(cmd.OutOrStdout(), `Token %s (id %s) for principal %s, expires %s.
Shown only this once; store it safely:

  %s

Give it rights with: arca role assign --principal %s --role ROLE --scope SCOPE
`, t.Name, t.ID, t.Principal, exp, t.Token, t.Principal)
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&principal, "principal", "", "who the token authenticates as (default: NAME), e.g. user:alice")
	cmd.Flags().StringVar(&expiresIn, "expires-in", "", "lifetime as an ISO 8601 duration, e.g. P7D, P3M (default: the vault's default token lifetime)")
	return cmd
}

func newTokenListCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the vault's API tokens (never the tokens themselves)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ts, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), o.Output, map[string]any{"items": ts}, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tNAME\tPRINCIPAL\tCREATED\tEXPIRES")
				for _, t := range ts {
					exp := "never"
					if t.ExpiresAt != nil {
						exp = vaultTime(*t.ExpiresAt)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Principal, vaultTime(t.CreatedAt), exp)
				}
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newTokenRevokeCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke an API token (by ID, or by name when one token has it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ts, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			t, err := pickToken(ts, args[0])
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), t.ID); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s (%s, principal %s) revoked\n", t.ID, t.Name, t.Principal)
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// pickToken finds the token an argument names: its ID, or its name when
// exactly one token has it.
func pickToken(ts []*store.Token, arg string) (*store.Token, error) {
	var byName []*store.Token
	for _, t := range ts {
		if t.ID == arg {
			return t, nil
		}
		if t.Name == arg {
			byName = append(byName, t)
		}
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		return nil, &UsageError{fmt.Errorf("no token has ID or name %q (arca token list)", arg)}
	}
	return nil, &UsageError{errors.New("several tokens are named " + arg + ": revoke one by its ID (arca token list)")}
}

package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- arca role ----

func newRoleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Manage role assignments in the vault (who may do what, where)",
		Long: `Role assignments grant a built-in role to a principal at a scope; a scope
grants to everything below it:

  /                                     everything
  /vaults/V                             a vault, its policies and instances
  /vaults/V/policies/P | /instances/I   one policy or instance
  /clusters/C                           a registered cluster
  /storageLocations/URL                 a storage location (URL escaped; --storage does it)
  /snapshotLocations/S                  a snapshot location

Principals: NAME or user:NAME, vault:NAME, cluster:NAME, extension:NAME.
Roles: Owner, Contributor, Reader, Backup Contributor, Backup Operator,
Backup Reader, Storage Contributor (arca role definitions).`,
	}
	cmd.AddCommand(newRoleAssignCommand(), newRoleListCommand(), newRoleRemoveCommand(), newRoleDefinitionsCommand())
	return cmd
}

// RoleScopeOptions build a scope from friendlier flags.
type RoleScopeOptions struct {
	Scope, Vault, Policy, Instance, Cluster, Storage, Snapshot string
}

// AddFlags registers --scope and its shorthands.
func (o *RoleScopeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Scope, "scope", "", "scope path (/, /vaults/V, /vaults/V/instances/I, …)")
	fs.StringVar(&o.Vault, "scope-vault", "", "scope: this vault (with --scope-policy or --scope-instance: one of its policies or instances)")
	fs.StringVar(&o.Policy, "scope-policy", "", "scope: this policy of --scope-vault")
	fs.StringVar(&o.Instance, "scope-instance", "", "scope: this instance of --scope-vault")
	fs.StringVar(&o.Cluster, "scope-cluster", "", "scope: this cluster")
	fs.StringVar(&o.Storage, "scope-storage", "", "scope: this storage location URL")
	fs.StringVar(&o.Snapshot, "scope-snapshot-location", "", "scope: this snapshot location")
}

// Resolve returns the scope path; def when nothing was given.
func (o *RoleScopeOptions) Resolve(def string) (string, error) {
	var got []string
	switch {
	case o.Vault != "" && o.Policy != "":
		got = append(got, rbac.PolicyScope(o.Vault, o.Policy))
	case o.Vault != "" && o.Instance != "":
		got = append(got, rbac.InstanceScope(o.Vault, o.Instance))
	case o.Vault != "":
		got = append(got, rbac.VaultScope(o.Vault))
	case o.Policy != "" || o.Instance != "":
		return "", &UsageError{errors.New("--scope-policy and --scope-instance need --scope-vault")}
	}
	if o.Scope != "" {
		got = append(got, o.Scope)
	}
	if o.Cluster != "" {
		got = append(got, rbac.ClusterScope(o.Cluster))
	}
	if o.Storage != "" {
		got = append(got, rbac.StorageScope(o.Storage))
	}
	if o.Snapshot != "" {
		got = append(got, rbac.SnapshotScope(o.Snapshot))
	}
	switch len(got) {
	case 0:
		return def, nil
	case 1:
		if err := rbac.ValidScope(got[0]); err != nil {
			return "", &UsageError{err}
		}
		return got[0], nil
	}
	return "", &UsageError{fmt.Errorf("give one scope, got %s", strings.Join(got, " and "))}
}

func newRoleAssignCommand() *cobra.Command {
	o := &VaultClientOptions{}
	so := &RoleScopeOptions{}
	var principal, role string
	cmd := &cobra.Command{
		Use:   "assign --principal P --role R (--scope S | --scope-vault V …)",
		Short: "Assign a role to a principal at a scope (needs Owner there)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if principal == "" || role == "" {
				return &UsageError{errors.New("--principal and --role are required")}
			}
			if _, ok := rbac.FindRole(role); !ok {
				return &UsageError{fmt.Errorf("--role %q: not a built-in role (arca role definitions)", role)}
			}
			if err := rbac.ValidPrincipal(principal); err != nil {
				return &UsageError{err}
			}
			scope, err := so.Resolve("")
			if err != nil {
				return err
			}
			if scope == "" {
				return &UsageError{errors.New("a scope is required: --scope / for everything, or --scope-vault V, --scope-cluster C, …")}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			a, err := c.AssignRole(cmd.Context(), principal, role, scope)
			if err != nil {
				return err
			}
			return printAssignments(cmd.OutOrStdout(), o.Output, a, []*store.RoleAssignment{a})
		},
	}
	o.AddFlags(cmd.Flags())
	so.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&principal, "principal", "", "who: NAME, user:NAME, vault:NAME, cluster:NAME or extension:NAME")
	cmd.Flags().StringVar(&role, "role", "", `built-in role, e.g. "Backup Operator" or backup-operator`)
	return cmd
}

func newRoleListCommand() *cobra.Command {
	o := &VaultClientOptions{}
	so := &RoleScopeOptions{}
	var principal string
	cmd := &cobra.Command{
		Use:   "list [--scope S] [--principal P]",
		Short: "List role assignments effective at a scope (at, above and below it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scope, err := so.Resolve("/")
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			as, err := c.ListRoleAssignments(cmd.Context(), scope, principal)
			if err != nil {
				return err
			}
			return printAssignments(cmd.OutOrStdout(), o.Output, map[string]any{"items": as}, as)
		},
	}
	o.AddFlags(cmd.Flags())
	so.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&principal, "principal", "", "only this principal's assignments")
	return cmd
}

func newRoleRemoveCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a role assignment (needs Owner at its scope)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.RemoveRoleAssignment(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "role assignment %s removed\n", args[0])
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newRoleDefinitionsCommand() *cobra.Command {
	o := &VaultClientOptions{}
	cmd := &cobra.Command{
		Use:   "definitions",
		Short: "Show the vault's built-in roles and their actions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			roles, err := c.Roles(cmd.Context())
			if err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), o.Output, map[string]any{"items": roles}, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ROLE\tDESCRIPTION\tACTIONS")
				for _, r := range roles {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Description, strings.Join(r.Actions, ", "))
				}
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func printAssignments(w io.Writer, format string, v any, as []*store.RoleAssignment) error {
	return printOutput(w, format, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tPRINCIPAL\tROLE\tSCOPE\tCREATED BY\tCREATED")
		for _, a := range as {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Principal, a.Role, a.Scope, a.CreatedBy, vaultTime(a.CreatedAt))
		}
	})
}

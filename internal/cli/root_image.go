//go:build extensionimage

package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// The extension image's arca is built with the extensionimage tag
// (internal/image.BuildArca). It holds what runs in the cluster — `arca
// extension` with every subcommand (run, chown-storage, show…), `arca
// datamover` (the vault tier's mover pods) and `arca version` — and
// leaves out the commands that run on the user's machine or the vault's:
// the vault server with its SQLite and PostgreSQL stores, and the vault's
// client commands. That keeps the image under its 40 MiB budget unpacked
// (docs/benchmarks.md). The left-out commands keep their names so that
// running one says which binary has it instead of "unknown command".

// imageOmits is what a left-out command answers in the extension image.
const imageOmits = "is not in the extension image, whose arca holds only the commands that run in the cluster (extension, datamover, version): " +
	"run the full arca binary (make build: bin/arca) on your machine or the vault's"

// outsideCommandNames are the top-level commands of the full binary's
// outsideCommands (root_full.go); internal/image's test checks that the
// two lists agree.
var outsideCommandNames = []string{
	"repo", "local", "vault", "policy", "instance", "backup", "recovery-point", "restore", "job",
	"role", "token", "trusted-access", "quickstart", "config", "approval", "notification",
}

func outsideCommands() []*cobra.Command {
	cmds := make([]*cobra.Command, 0, len(outsideCommandNames))
	for _, name := range outsideCommandNames {
		cmds = append(cmds, omittedCommand(name))
	}
	return cmds
}

// omittedCommand accepts any arguments and flags, so that the answer is
// always the missing command, never an unknown flag or subcommand.
func omittedCommand(name string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              "Not in the extension image: run the full arca binary",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%q %s", cmd.CommandPath(), imageOmits)
		},
	}
}

// The vault server's commands (vault_server.go) are left out with the
// rest of `arca vault`; these stand in for them so that vault.go builds.

func newVaultServeCommand() *cobra.Command { return omittedCommand("serve") }
func newVaultInitCommand() *cobra.Command  { return omittedCommand("init") }

// localVaultCert is empty: the extension image holds no local vault whose
// certificate a vault client could trust by default.
func localVaultCert() string { return "" }

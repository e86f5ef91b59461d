//go:build !extensionimage

package cli

import "github.com/spf13/cobra"

// outsideCommands are the commands that run outside the cluster: on the
// user's machine or the vault's.
func outsideCommands() []*cobra.Command {
	return []*cobra.Command{
		newRepoCommand(),
		newLocalCommand(),
		newVaultCommand(),
		newPolicyCommand(),
		newInstanceCommand(),
		newBackupCommand(),
		newRecoveryPointCommand(),
		newRestoreCommand(),
		newJobCommand(),
		newRoleCommand(),
		newTokenCommand(),
		newTrustedAccessCommand(),
		newQuickstartCommand(),
		newConfigCommand(),
		newApprovalCommand(),
		newNotificationCommand(),
	}
}

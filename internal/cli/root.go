// Package cli holds Arca's command-line interface: one file per command
// group, each with a newXCommand constructor, an options struct and a plain
// runX function that tests call directly.
package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// NewRootCommand builds the `arca` command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "arca",
		Short:         "Back up and restore Kubernetes clusters",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// What runs in the cluster, in every build.
	root.AddCommand(
		newVersionCommand(),
		newExtensionCommand(),
		newDatamoverCommand(),
	)
	// What runs on the user's or the vault's machine; the extension image
	// leaves it out (root_image.go).
	root.AddCommand(outsideCommands()...)
	applyExamples(root)
	return root
}

// UsageError marks errors caused by what the user typed; they exit with 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode maps an error to the process exit code: 2 for usage errors, 1 for
// everything else.
func ExitCode(err error) int {
	var ue *UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

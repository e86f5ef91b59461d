// Command arca is the single binary of Arca: vault server, extension,
// and every CLI verb. All logic lives under internal/; this file only maps
// errors to exit codes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/arca-backup/arca/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.NewRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "arca:", err)
		os.Exit(cli.ExitCode(err))
	}
}

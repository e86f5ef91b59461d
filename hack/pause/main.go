// Command pause is the pod sandbox ("pause") container of the test node's
// pods: it holds the pod's namespaces open and waits. It exits 0 on SIGTERM
// or SIGINT, which is how the runtime stops a sandbox. As PID 1 it would
// ignore those signals without handlers, so it installs them.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

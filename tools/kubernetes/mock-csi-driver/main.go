// Command mock-csi-driver serves the in-memory CSI driver from the
// Kubernetes e2e tests (Identity, Controller and Node services) on a unix
// socket. Volumes and snapshots live only in this process's memory; the
// test environment talks to it from csi-snapshotter and from its own
// provisioning loop.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service"
)

func main() {
	socket := flag.String("socket", "", "unix socket path to listen on (required)")
	driver := flag.String("driver-name", "mock.csi.arca.local", "CSI driver name reported by GetPluginInfo")
	flag.Parse()
	if err := run(*socket, *driver); err != nil {
		fmt.Fprintln(os.Stderr, "mock-csi-driver:", err)
		os.Exit(1)
	}
}

func run(socket, driver string) error {
	if socket == "" {
		return fmt.Errorf("--socket is required")
	}
	// A stale socket from a killed run would make Listen fail.
	if err := os.Remove(socket); err != nil && !os.IsNotExist(err) {
		return err
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	svc := service.New(service.Config{DisableAttach: true, DriverName: driver})
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, svc)
	csi.RegisterControllerServer(srv, svc)
	csi.RegisterNodeServer(srv, svc)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		srv.Stop()
	}()
	fmt.Printf("mock-csi-driver %s serving on %s\n", driver, socket)
	return srv.Serve(l)
}

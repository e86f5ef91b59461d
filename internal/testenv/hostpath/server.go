package hostpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Server serves a Driver's services on a unix socket: Identity always,
// Controller when Options.Controller is set, Node when Options.NodeID is.
type Server struct {
	Socket string
	Driver *Driver
	srv    *grpc.Server
	done   chan struct{}
}

// Serve listens on socket (replacing a stale one) and serves d until Stop.
// logf, if not nil, receives one line per failed call.
func Serve(socket string, d *Driver, logf func(format string, args ...any)) (*Server, error) {
	l, err := listenUnix(socket)
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(logErrors(d.opts.Name, logf)))
	csi.RegisterIdentityServer(srv, d)
	if d.opts.Controller {
		csi.RegisterControllerServer(srv, d)
	}
	if d.opts.NodeID != "" {
		csi.RegisterNodeServer(srv, d)
	}
	s := &Server{Socket: socket, Driver: d, srv: srv, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = srv.Serve(l)
	}()
	return s, nil
}

// Stop stops serving and removes the socket.
func (s *Server) Stop() {
	s.srv.Stop()
	<-s.done
	_ = os.Remove(s.Socket)
}

func listenUnix(socket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o750); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", socket, err)
	}
	return l, nil
}

func logErrors(name string, logf func(string, ...any)) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		if err != nil && logf != nil {
			logf("%s: %s failed after %s: %v", name, info.FullMethod, time.Since(start).Round(time.Millisecond), err)
		}
		return resp, err
	}
}

// SupportedVersions are the CSI versions announced to the kubelet.
var SupportedVersions = []string{"1.0.0"}

// Registration is the kubelet plugin registration service for one driver
// socket on one node: the kubelet's plugin watcher finds its socket in
// <kubelet root>/plugins_registry, asks GetInfo, connects to the driver's
// endpoint (NodeGetInfo) and reports the outcome through
// NotifyRegistrationStatus. This is what node-driver-registrar does in a
// cluster.
type Registration struct {
	registerapi.UnimplementedRegistrationServer

	// Socket is <kubelet root>/plugins_registry/<driver>-reg.sock.
	Socket   string
	name     string
	endpoint string
	logf     func(string, ...any)
	srv      *grpc.Server
	done     chan struct{}
	status   chan *registerapi.RegistrationStatus
}

// RegistrationSocket is where the kubelet rooted at kubeletRootDir looks
// for driverName's registration socket.
func RegistrationSocket(kubeletRootDir, driverName string) string {
	return filepath.Join(kubeletRootDir, "plugins_registry", driverName+"-reg.sock")
}

// Register serves the registration service for driverName, whose Node
// service listens on the unix socket endpoint, to the kubelet rooted at
// kubeletRootDir.
func Register(kubeletRootDir, driverName, endpoint string, logf func(string, ...any)) (*Registration, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	r := &Registration{
		Socket:   RegistrationSocket(kubeletRootDir, driverName),
		name:     driverName,
		endpoint: endpoint,
		logf:     logf,
		done:     make(chan struct{}),
		status:   make(chan *registerapi.RegistrationStatus, 16),
	}
	l, err := listenUnix(r.Socket)
	if err != nil {
		return nil, fmt.Errorf("registration socket: %w", err)
	}
	r.srv = grpc.NewServer()
	registerapi.RegisterRegistrationServer(r.srv, r)
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(l)
	}()
	return r, nil
}

func (r *Registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.name,
		Endpoint:          r.endpoint,
		SupportedVersions: SupportedVersions,
	}, nil
}

func (r *Registration) NotifyRegistrationStatus(ctx context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.GetPluginRegistered() {
		r.logf("%s: registered with the kubelet (%s)", r.name, r.Socket)
	} else {
		r.logf("%s: kubelet refused the registration (%s): %s", r.name, r.Socket, st.GetError())
	}
	select {
	case r.status <- st:
	default: // nobody waits; the log has it
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Wait returns when the kubelet has reported the registration: nil when it
// registered the driver, its error when it refused.
func (r *Registration) Wait(ctx context.Context) error {
	select {
	case st := <-r.status:
		if !st.GetPluginRegistered() {
			return fmt.Errorf("kubelet refused driver %s: %s", r.name, st.GetError())
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kubelet did not register driver %s through %s: %w", r.name, r.Socket, ctx.Err())
	}
}

// Stop stops serving and removes the socket, which makes the kubelet
// deregister the driver.
func (r *Registration) Stop() {
	r.srv.Stop()
	<-r.done
	_ = os.Remove(r.Socket)
}

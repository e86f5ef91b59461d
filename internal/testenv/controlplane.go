package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ServiceCIDR is the service IP range of the test API server. envtest's
// default /24 runs out after 254 Services, which benchmarks exceed.
const ServiceCIDR = "10.96.0.0/12"

// ControlPlaneOptions selects what StartControlPlane runs.
type ControlPlaneOptions struct {
	// WithoutControllerManager skips kube-controller-manager: starts faster,
	// but namespaces stay Terminating, nothing is garbage-collected and
	// PVCs are bound only by StartCSI's provisioner.
	WithoutControllerManager bool
	// Nodes starts that many real nodes (kubelet, containerd, kube-proxy;
	// see node.go), kube-scheduler and a loopback image registry. The API
	// server then listens on HostIP with a certificate that in-cluster
	// clients accept, and admits pods with service-account tokens.
	Nodes int
	// Name tells the processes of this cluster apart when a test runs two
	// (a backup cluster and a restore target, each with its own node):
	// it prefixes their log headers ("b/kube-apiserver",
	// "b/kubelet/arca-node-0") and the startup line. "" for one cluster.
	Name string
	// PullFrom lists more plain-HTTP registries ("host:port") the nodes
	// pull from besides the cluster's own, e.g. another test cluster's
	// Registry.Addr(): a workload restored from that cluster names its
	// images there, as clusters share an application's registry.
	PullFrom []string
}

// ControlPlane is a running etcd + kube-apiserver (+ kube-controller-manager).
type ControlPlane struct {
	env      *envtest.Environment
	cfg      *rest.Config
	kcm      *Process
	etcdLog  *syncBuffer
	apiLog   *syncBuffer
	stopOnce sync.Once
	stopErr  error

	// Name is ControlPlaneOptions.Name.
	Name string
	// StartupTimes records how long each component took to become ready,
	// by component name ("etcd+kube-apiserver", "kube-controller-manager",
	// "kube-scheduler", "node arca-node-0", …).
	StartupTimes map[string]time.Duration

	// HostIP is the address the API server listens on: 127.0.0.1 without
	// nodes; with nodes, the host's end of the node network, which pods
	// reach too. A service that pods must reach (a registry, MinIO,
	// Azurite) listens there.
	HostIP string
	// Nodes are the running nodes (ControlPlaneOptions.Nodes).
	Nodes []*Node
	// Registry is the plain-HTTP image registry the nodes pull from (nil
	// without nodes).
	Registry *Registry
	caPEM    []byte
}

// StartControlPlane starts etcd and kube-apiserver through envtest and, unless
// opts says otherwise, kube-controller-manager beside them. Everything stops
// when the test ends; component logs are printed if the test failed.
func StartControlPlane(t T, opts ControlPlaneOptions) *ControlPlane {
	t.Helper()
	dir := ToolsDir()
	for _, name := range []string{"etcd", "kube-apiserver"} {
		Binary(t, name)
	}
	if !opts.WithoutControllerManager || opts.Nodes > 0 {
		Binary(t, "kube-controller-manager")
	}
	if opts.Nodes > 0 {
		for _, name := range []string{"kube-scheduler", "kubelet", "kube-proxy"} {
			Binary(t, name)
		}
	}

	cp := &ControlPlane{
		etcdLog:      &syncBuffer{},
		apiLog:       &syncBuffer{},
		StartupTimes: map[string]time.Duration{},
		HostIP:       "127.0.0.1",
		Name:         opts.Name,
	}
	useExisting := false
	cp.env = &envtest.Environment{
		BinaryAssetsDirectory: dir,
		UseExistingCluster:    &useExisting,
		// Two cores shared with other work: envtest's 20 s default is tight.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cp.env.ControlPlane.Etcd = &envtest.Etcd{Out: cp.etcdLog, Err: cp.etcdLog, Path: dieWithParent(t, filepath.Join(dir, "etcd"))}
	cp.env.ControlPlane.APIServer = &envtest.APIServer{Out: cp.apiLog, Err: cp.apiLog, Path: dieWithParent(t, filepath.Join(dir, "kube-apiserver"))}
	cp.env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", ServiceCIDR)
	var nodeNet *nodeNet
	if opts.Nodes > 0 {
		start := time.Now()
		nodeNet = claimNodeNet(t, opts.Nodes)
		cp.StartupTimes["node network"] = time.Since(start)
		cp.HostIP = nodeNet.hostIP
		cp.configureForNodes(t)
	}

	start := time.Now()
	cfg, err := cp.env.Start()
	if err != nil {
		cp.printLogs(t)
		_ = cp.env.Stop()
		t.Fatalf("start etcd + kube-apiserver: %v", err)
	}
	cp.StartupTimes["etcd+kube-apiserver"] = time.Since(start)
	cp.cfg = cfg
	t.Cleanup(func() {
		if t.Failed() {
			cp.printLogs(t)
		}
		if err := cp.Stop(); err != nil {
			t.Logf("stop control plane: %v", err)
		}
	})

	if !opts.WithoutControllerManager || opts.Nodes > 0 {
		start = time.Now()
		cp.startControllerManager(t)
		cp.StartupTimes["kube-controller-manager"] = time.Since(start)
	}
	if opts.Nodes > 0 {
		cp.startNodes(t, nodeNet, opts.PullFrom)
	}
	return cp
}

// configureForNodes makes the API server one that pods can use: it listens
// on HostIP (reachable from the node namespaces) with a certificate naming
// HostIP and the `kubernetes` Service, advertises HostIP as the Service's
// endpoint, admits pods with service-account token volumes (envtest turns
// that admission plugin off), and dials kubelets at their InternalIP.
func (cp *ControlPlane) configureForNodes(t T) {
	t.Helper()
	certDir := tempDir(t, "arca-apiserver-certs-")
	ca, err := writeServingCerts(certDir, []string{cp.HostIP, kubernetesServiceIP})
	if err != nil {
		t.Fatalf("API server certificates: %v", err)
	}
	cp.caPEM = ca
	api := cp.env.ControlPlane.APIServer
	api.CertDir = certDir
	// envtest picks a loopback address unless given both address and port.
	l, err := net.Listen("tcp", net.JoinHostPort(cp.HostIP, "0"))
	if err != nil {
		t.Fatalf("API server port on %s: %v", cp.HostIP, err)
	}
	api.SecureServing.ListenAddr.Address = cp.HostIP
	api.SecureServing.ListenAddr.Port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	api.SecureServing.CA = ca
	args := api.Configure()
	args.Set("disable-admission-plugins", "")
	args.Set("advertise-address", cp.HostIP)
	args.Set("kubelet-preferred-address-types", "InternalIP")
}

// kubernetesServiceIP is the first address of ServiceCIDR: the cluster IP
// of the `kubernetes` Service.
const kubernetesServiceIP = "10.96.0.1"

// startNodes starts the registry the nodes pull from, kube-scheduler and
// the nodes, and logs how long each took.
func (cp *ControlPlane) startNodes(t T, nn *nodeNet, pullFrom []string) {
	t.Helper()
	start := time.Now()
	cp.Registry = StartRegistry(t, cp.HostIP)
	c := &nodeCluster{net: nn, kubeconfig: cp.KubeconfigFile(t), registries: append([]string{cp.Registry.Addr()}, pullFrom...), logPrefix: cp.procName("")}
	c.pauseImage = PauseImage(t, cp.Registry)
	cp.StartupTimes["registry+pause image"] = time.Since(start)
	start = time.Now()
	cp.startScheduler(t, c.kubeconfig)
	cp.StartupTimes["kube-scheduler"] = time.Since(start)
	for i := range nn.nodes {
		start = time.Now()
		n := cp.startNode(t, c, i)
		cp.Nodes = append(cp.Nodes, n)
		cp.StartupTimes["node "+n.Name] = time.Since(start)
	}
	var parts []string
	for _, k := range []string{"etcd+kube-apiserver", "kube-controller-manager", "node network", "registry+pause image", "kube-scheduler"} {
		parts = append(parts, fmt.Sprintf("%s %s", k, cp.StartupTimes[k].Round(time.Millisecond)))
	}
	for _, n := range cp.Nodes {
		parts = append(parts, fmt.Sprintf("node %s %s", n.Name, cp.StartupTimes["node "+n.Name].Round(time.Millisecond)))
	}
	label := "cluster"
	if cp.Name != "" {
		label += " " + cp.Name
	}
	t.Logf("testenv: %s with %d node(s) started: %s", label, len(cp.Nodes), strings.Join(parts, ", "))
}

// dieWithParent returns a launcher for bin that makes the kernel kill it
// when the test process dies. envtest starts etcd and kube-apiserver in their
// own process group without a parent-death signal, so a test binary killed
// by `go test -timeout` or SIGKILL would leave them running; StartProcess
// sets the signal itself for everything else. The launcher is a shell script
// exec'ing util-linux's setpriv, which keeps the PID, so envtest's stop
// signals reach the real process. Without setpriv the launcher only clears
// the proxy variables.
func dieWithParent(t T, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "arca-launch-")
	if err != nil {
		t.Fatalf("launcher dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, filepath.Base(bin))
	// The control plane talks only to loopback and in-cluster addresses
	// (webhooks on *.svc): a proxy inherited from the machine would
	// intercept those calls, so the launcher drops it.
	script := "#!/bin/sh\nunset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy\n"
	if setpriv, err := exec.LookPath("setpriv"); err == nil {
		script += fmt.Sprintf("exec %s --pdeathsig KILL -- %s \"$@\"\n", shellQuote(setpriv), shellQuote(bin))
	} else {
		script += fmt.Sprintf("exec %s \"$@\"\n", shellQuote(bin))
	}
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatalf("write launcher: %v", err)
	}
	return path
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (cp *ControlPlane) printLogs(t T) {
	for _, l := range []struct {
		name string
		log  *syncBuffer
	}{{cp.procName("etcd"), cp.etcdLog}, {cp.procName("kube-apiserver"), cp.apiLog}} {
		t.Logf("---- log of %s ----\n%s\n---- end of %s ----", l.name, l.log.String(), l.name)
	}
}

// procName is the name of one of the cluster's processes in logs:
// component, prefixed with the cluster's Name when it has one.
func (cp *ControlPlane) procName(component string) string {
	if cp.Name == "" {
		return component
	}
	return cp.Name + "/" + component
}

// startControllerManager runs kube-controller-manager with an admin
// kubeconfig and the service-account signing key envtest generated, and
// waits until its service-account controller has created default/default:
// proof that it is connected and reconciling.
func (cp *ControlPlane) startControllerManager(t T) {
	t.Helper()
	certDir := cp.env.ControlPlane.APIServer.CertDir
	kubeconfig := cp.KubeconfigFile(t)
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
		"--root-ca-file=" + cp.rootCAFile(certDir),
		// Fast reactions in tests: the defaults are tuned for large clusters.
		"--namespace-sync-period=10s",
		"--pvclaimbinder-sync-period=1s",
		"--concurrent-gc-syncs=5",
	}
	cp.kcm = StartProcess(t, cp.procName("kube-controller-manager"), Binary(t, "kube-controller-manager"), args, nil, "")
	cs := cp.clientset(t)
	cp.kcm.WaitReady(t, 2*time.Minute, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// rootCAFile is the CA that pods find in their service-account volume.
func (cp *ControlPlane) rootCAFile(certDir string) string {
	if cp.caPEM != nil {
		return filepath.Join(certDir, "ca.crt")
	}
	return filepath.Join(certDir, "apiserver.crt")
}

// Config returns a rest.Config for an admin (group system:masters).
func (cp *ControlPlane) Config() *rest.Config { return rest.CopyConfig(cp.cfg) }

// Clientset returns an admin clientset.
func (cp *ControlPlane) Clientset(t T) kubernetes.Interface {
	t.Helper()
	return cp.clientset(t)
}

func (cp *ControlPlane) clientset(t T) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.Config())
	if err != nil {
		t.Fatalf("admin clientset: %v", err)
	}
	return cs
}

// KubeconfigFile writes the admin kubeconfig to a temporary file that is
// removed when the test ends, and returns its path.
func (cp *ControlPlane) KubeconfigFile(t T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "arca-kubeconfig-")
	if err != nil {
		t.Fatalf("kubeconfig dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, cp.env.KubeConfig, 0o600); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	return path
}

// UserConfig returns a rest.Config authenticating as user (a client
// certificate) in the given groups. It has no rights until RBAC grants some.
func (cp *ControlPlane) UserConfig(t T, user string, groups ...string) *rest.Config {
	t.Helper()
	u, err := cp.env.AddUser(envtest.User{Name: user, Groups: groups}, &rest.Config{QPS: 1000, Burst: 2000})
	if err != nil {
		t.Fatalf("add user %s: %v", user, err)
	}
	return u.Config()
}

// ServiceAccountConfig returns a rest.Config authenticating with a bound
// token (TokenRequest API, valid one hour) of the service account
// namespace/name. The namespace and the service account are created if
// missing.
func (cp *ControlPlane) ServiceAccountConfig(t T, namespace, name string) *rest.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := cp.clientset(t)
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", namespace, err)
	}
	_, err = cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create service account %s/%s: %v", namespace, name, err)
	}
	seconds := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request for %s/%s: %v", namespace, name, err)
	}
	admin := cp.Config()
	return &rest.Config{
		Host:            admin.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData, CAFile: admin.CAFile, ServerName: admin.ServerName},
		BearerToken:     tr.Status.Token,
		QPS:             admin.QPS,
		Burst:           admin.Burst,
	}
}

// Stop stops kube-controller-manager, kube-apiserver and etcd. It is safe to
// call more than once; t.Cleanup calls it too.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		if cp.kcm != nil {
			cp.kcm.Stop()
		}
		if err := cp.env.Stop(); err != nil {
			cp.stopErr = fmt.Errorf("stop envtest: %w", err)
		}
	})
	return cp.stopErr
}

// NewMainT returns a T for TestMain (or a demo), where no *testing.T exists,
// and the function that runs its cleanups, last registered first. Logf
// writes to stderr prefixed with name. Fatalf prints the message, runs the
// cleanups (so no component outlives the run, and component logs are
// printed because Failed is now true) and exits with status 1.
func NewMainT(name string) (T, func()) {
	m := &mainT{name: name}
	return m, m.runCleanups
}

// MarkFailed makes a T from NewMainT report Failed, so that its cleanups
// print the component logs: call it in TestMain when m.Run returned non-zero.
// Other Ts are left alone.
func MarkFailed(t T) {
	if m, ok := t.(*mainT); ok {
		m.mu.Lock()
		m.failed = true
		m.mu.Unlock()
	}
}

type mainT struct {
	name     string
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func (m *mainT) Helper() {}

func (m *mainT) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", m.name, fmt.Sprintf(format, args...))
}

func (m *mainT) Fatalf(format string, args ...any) {
	m.mu.Lock()
	m.failed = true
	m.mu.Unlock()
	fmt.Fprintf(os.Stderr, "%s: FATAL: %s\n", m.name, fmt.Sprintf(format, args...))
	m.runCleanups()
	os.Exit(1)
}

func (m *mainT) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

func (m *mainT) Failed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// runCleanups pops cleanups one at a time so that a cleanup registering
// another, or a Fatalf inside a cleanup, does not run anything twice.
func (m *mainT) runCleanups() {
	for {
		m.mu.Lock()
		n := len(m.cleanups)
		if n == 0 {
			m.mu.Unlock()
			return
		}
		f := m.cleanups[n-1]
		m.cleanups = m.cleanups[:n-1]
		m.mu.Unlock()
		f()
	}
}

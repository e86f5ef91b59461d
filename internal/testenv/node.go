package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/internal/testenv/hostpath"
)

// Node is a real Kubernetes node started by StartControlPlane when
// ControlPlaneOptions.Nodes > 0: containerd with runc and the CNI bridge,
// the kubelet and kube-proxy, all inside the node's own network namespace
// (see nodenet.go), so that several nodes and several test clusters run on
// one machine without sharing ports, iptables rules or pod addresses.
type Node struct {
	// Name is the Node object's name.
	Name string
	// IP is the node's InternalIP; the API server dials the kubelet there.
	IP string
	// PodCIDR is the subnet of the node's pods.
	PodCIDR string
	// Dir holds everything the node writes; RootDir is the kubelet's
	// --root-dir (plugin registration sockets live in
	// RootDir/plugins_registry).
	Dir, RootDir string
	// NetNS is the path of the node's network namespace.
	NetNS string
	// ContainerdSocket is the CRI endpoint (a unix socket path).
	ContainerdSocket string
	// CgroupRoot is the kubelet's --cgroup-root: pods' cgroups live below it
	// in every hierarchy (PodCgroupDir reads them).
	CgroupRoot string

	containerd, kubelet, proxy *Process
	logPrefix                  string
}

// nodeCluster is what every node of a control plane shares.
type nodeCluster struct {
	net        *nodeNet
	kubeconfig string
	pauseImage string
	registries []string // host:port of the plain-HTTP registries the nodes pull from
	logPrefix  string   // the cluster's name and "/", "" without one
}

// startScheduler runs kube-scheduler against the API server; envtest starts
// none, and without it pods stay Pending.
func (cp *ControlPlane) startScheduler(t T, kubeconfig string) {
	t.Helper()
	port := FreePort(t)
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
	}
	p := StartProcess(t, cp.procName("kube-scheduler"), Binary(t, "kube-scheduler"), args, nil, "")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback health probe of a test process
	p.WaitReady(t, 2*time.Minute, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+Addr(port)+"/healthz", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	})
}

// startNode starts containerd, the kubelet and kube-proxy of node i and
// waits until the Node is Ready.
func (cp *ControlPlane) startNode(t T, c *nodeCluster, i int) *Node {
	t.Helper()
	addr := c.net.nodes[i]
	dir, err := os.MkdirTemp("", addr.netns+"-")
	if err != nil {
		t.Fatalf("node dir: %v", err)
	}
	n := &Node{
		Name:             fmt.Sprintf("arca-node-%d", i),
		IP:               addr.ip,
		PodCIDR:          addr.podCIDR,
		Dir:              dir,
		RootDir:          filepath.Join(dir, "kubelet"),
		NetNS:            "/run/netns/" + addr.netns,
		ContainerdSocket: filepath.Join(dir, "containerd.sock"),
		CgroupRoot:       "/" + addr.netns,
		logPrefix:        c.logPrefix,
	}
	// Registered before the processes start, so it runs after they stopped.
	t.Cleanup(func() { n.teardown(t) })
	for _, d := range []string{n.RootDir, filepath.Join(dir, "cni", "net.d"), filepath.Join(dir, "pod-logs"), filepath.Join(dir, "certs.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("node dir: %v", err)
		}
	}
	if err := n.makeCgroupRoot(); err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	files := map[string]string{
		"cni/net.d/10-arca.conflist": n.cniConfig(),
		"containerd.toml":            n.containerdConfig(c),
		"kubelet.yaml":               n.kubeletConfig(),
		"kube-proxy.yaml":            n.proxyConfig(c.kubeconfig),
	}
	for _, r := range c.registries {
		hosts := fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", r)
		if err := os.MkdirAll(filepath.Join(dir, "certs.d", r), 0o755); err != nil {
			t.Fatalf("node dir: %v", err)
		}
		files[filepath.Join("certs.d", r, "hosts.toml")] = hosts
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("node config: %v", err)
		}
	}

	n.containerd = n.startInNetNS(t, "containerd", "containerd", "--config", filepath.Join(dir, "containerd.toml"))
	n.containerd.WaitReady(t, time.Minute, func(ctx context.Context) error {
		conn, err := (&net.Dialer{}).DialContext(ctx, "unix", n.ContainerdSocket)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	n.kubelet = n.startInNetNS(t, "kubelet", Binary(t, "kubelet"),
		"--config="+filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig="+c.kubeconfig,
		"--root-dir="+n.RootDir,
		"--cert-dir="+filepath.Join(dir, "kubelet-pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP,
		"--v=1",
	)
	cs := cp.clientset(t)
	n.kubelet.WaitReady(t, 3*time.Minute, func(ctx context.Context) error {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not Ready: %s", n.Name, cond.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", n.Name)
	})
	n.proxy = n.startInNetNS(t, "kube-proxy", Binary(t, "kube-proxy"), "--config="+filepath.Join(dir, "kube-proxy.yaml"))
	// kube-proxy is ready once it has written the rule for the API server's
	// Service: from then on in-cluster clients reach the API server.
	n.proxy.WaitReady(t, time.Minute, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", filepath.Base(n.NetNS), "iptables-save", "-t", "nat").CombinedOutput()
		if err != nil {
			return fmt.Errorf("iptables-save: %v: %s", err, out)
		}
		if !strings.Contains(string(out), "default/kubernetes:https") {
			return fmt.Errorf("no rule for default/kubernetes yet")
		}
		return nil
	})
	return n
}

// startInNetNS starts bin inside the node's network namespace (nsenter
// enters only the network namespace: the node shares the host's mounts, as
// a real node's kubelet and runtime share theirs).
func (n *Node) startInNetNS(t T, name, bin string, args ...string) *Process {
	t.Helper()
	if !filepath.IsAbs(bin) {
		p, err := exec.LookPath(bin)
		if err != nil {
			t.Fatalf("%s not found: run `make deps` (hack/install-deps.sh installs it)", bin)
		}
		bin = p
	}
	nsArgs := append([]string{"--net=" + n.NetNS, "--", bin}, args...)
	env := []string{"HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy=", "NO_PROXY=", "no_proxy="}
	return StartProcess(t, n.logPrefix+name+"/"+n.Name, "nsenter", nsArgs, env, n.Dir)
}

func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "arca",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR, filepath.Join(n.Dir, "cni", "ipam"))
}

func (n *Node) containerdConfig(c *nodeCluster) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # No CAP_SYS_RESOURCE here: without this runc fails on the sandbox's
  # oom_score_adj of -998 ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[6]q
`, filepath.Join(n.Dir, "containerd", "root"), filepath.Join(n.Dir, "containerd", "state"), n.ContainerdSocket,
		c.pauseImage, filepath.Join(n.Dir, "cni", "net.d"), filepath.Join(n.Dir, "certs.d"))
}

func (n *Node) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1, no systemd for the pods and may have swap.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# The API server's exec and logs calls: anonymous, allowed (tests only).
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: %[4]s
volumePluginDir: %[5]s
resolvConf: /etc/resolv.conf
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
serializeImagePulls: false
# A shared test machine: never evict test pods for disk or memory pressure
# the machine as a whole is under.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.CgroupRoot, n.ContainerdSocket, n.IP, filepath.Join(n.Dir, "pod-logs"), filepath.Join(n.Dir, "volume-plugins"))
}

func (n *Node) proxyConfig(kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
mode: iptables
clusterCIDR: 10.244.0.0/16
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Conntrack sysctls are not per network namespace: leave them alone.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, n.Name)
}

// cgroupHierarchies lists the mounted cgroup v1 hierarchies.
func cgroupHierarchies() ([]string, error) {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "unified" {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return out, nil
}

// makeCgroupRoot creates the kubelet's cgroup root in every hierarchy: the
// kubelet refuses a --cgroup-root that does not exist.
func (n *Node) makeCgroupRoot() error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := os.MkdirAll(filepath.Join(h, n.CgroupRoot), 0o755); err != nil {
			return fmt.Errorf("cgroup root: %w", err)
		}
	}
	return nil
}

// PodCgroupDir returns the directory of pod uid's cgroup in hierarchy
// ("memory", "cpu", …), for reading what the kubelet reads.
func (n *Node) PodCgroupDir(hierarchy, podUID string) (string, error) {
	var found string
	root := filepath.Join("/sys/fs/cgroup", hierarchy, n.CgroupRoot)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		base := filepath.Base(p)
		if base == "pod"+podUID || base == "pod"+strings.ReplaceAll(podUID, "-", "_") {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", fmt.Errorf("no cgroup for pod %s under %s", podUID, root)
	}
	return found, nil
}

// teardown kills what the stopped runtime left running (containers and
// their shims outlive containerd), unmounts everything below the node's
// directory, and removes its cgroups and files.
func (n *Node) teardown(t T) {
	if n.kubelet != nil {
		n.kubelet.Stop()
	}
	if n.proxy != nil {
		n.proxy.Stop()
	}
	if n.containerd != nil {
		n.containerd.Stop()
	}
	killShims(n.ContainerdSocket)
	hs, _ := cgroupHierarchies()
	for round := 0; round < 50; round++ {
		alive := 0
		for _, h := range hs {
			alive += killCgroupTree(filepath.Join(h, n.CgroupRoot))
		}
		if alive == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Loop devices the kubelet attached over block volumes' files
	// (before the unmount, which would leave them holding detached files).
	if err := hostpath.DetachLoops(n.Dir); err != nil {
		t.Logf("node %s: %v", n.Name, err)
	}
	unmountBelow(n.Dir)
	for _, h := range hs {
		removeCgroupTree(filepath.Join(h, n.CgroupRoot))
	}
	if err := os.RemoveAll(n.Dir); err != nil {
		t.Logf("remove node dir %s: %v", n.Dir, err)
	}
}

// removeLeftoverNodeDirs cleans up after a test that was killed while it
// held the network index of netns: its containers' shims, its mounts and
// its directory (named after the namespace, see startNode). Only called
// while holding that index's lock, so no live node uses them.
func removeLeftoverNodeDirs(netns string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), netns+"-*"))
	for _, d := range dirs {
		killShimsBelow(d)
		_ = hostpath.DetachLoops(d)
		unmountBelow(d)
		_ = os.RemoveAll(d)
	}
}

// killShims kills containerd-shim processes of the containerd at socket.
func killShims(socket string) {
	killShimsMatching(func(arg string) bool { return arg == socket })
}

// killShimsBelow kills containerd-shim processes whose containerd socket
// lies below dir.
func killShimsBelow(dir string) {
	killShimsMatching(func(arg string) bool { return strings.HasPrefix(arg, dir+"/") })
}

func killShimsMatching(match func(arg string) bool) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for _, a := range args {
			if match(a) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// killCgroupTree SIGKILLs every process in the tree and returns how many
// it found.
func killCgroupTree(root string) int {
	n := 0
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		f, err := os.Open(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if pid, err := strconv.Atoi(strings.TrimSpace(s.Text())); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				n++
			}
		}
		return nil
	})
	return n
}

// removeCgroupTree removes the (empty) cgroup directories, deepest first.
func removeCgroupTree(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}

// unmountBelow lazily unmounts every mount point at or below dir, deepest
// first.
func unmountBelow(dir string) {
	for round := 0; round < 5; round++ {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return
		}
		var points []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			mp := unescapeMountPath(f[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				points = append(points, mp)
			}
		}
		if len(points) == 0 {
			return
		}
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
}

// unescapeMountPath decodes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
